"""Classical baselines: each checked on a case where its behaviour is known."""

from __future__ import annotations

import time

import cv2
import numpy as np
import pytest

from fusion.errors import ConfigError, InputError
from fusion.fusers import create_fuser, list_fusers
from fusion.fusers.baselines import FocusFuser, guided_filter

NAMES = ("average", "maximum", "laplacian", "dwt", "gff", "mertens", "focus")


def _texture(h: int = 96, w: int = 128, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    base = rng.integers(0, 256, (h // 4, w // 4, 3), dtype=np.uint8)
    img = cv2.resize(base, (w, h), interpolation=cv2.INTER_CUBIC)
    noise = rng.integers(-20, 21, img.shape)
    return np.clip(img.astype(int) + noise, 0, 255).astype(np.uint8)


def test_all_registered():
    assert set(NAMES) <= set(list_fusers())


def test_average_of_constants():
    a = np.full((7, 9, 3), 100, np.uint8)
    b = np.full((7, 9, 3), 201, np.uint8)
    out = create_fuser("average").fuse(a, b)
    assert out.dtype == np.uint8 and out.shape == (7, 9, 3)
    assert np.all(out == 151)  # 150.5 rounds up
    assert np.all(create_fuser("average").fuse(a, a) == 100)


def test_maximum_picks_brighter():
    a = np.zeros((4, 6, 3), np.uint8)
    b = np.zeros((4, 6, 3), np.uint8)
    a[:, :3] = 200
    b[:, :3] = 10
    a[:, 3:] = 30
    b[:, 3:] = 250
    out = create_fuser("maximum").fuse(a, b)
    assert np.all(out[:, :3] == 200) and np.all(out[:, 3:] == 250)


@pytest.mark.parametrize("name", ["laplacian", "dwt", "gff"])
def test_identical_inputs_give_input(name):
    img = _texture(61, 83)  # odd sizes exercise the pyramid / wavelet padding
    out = create_fuser(name).fuse(img, img)
    assert out.shape == img.shape
    tol = 1 if name == "gff" else 0  # gff re-normalises weights in float32
    assert np.abs(out.astype(int) - img.astype(int)).max() <= tol


@pytest.mark.parametrize("name", ["laplacian", "dwt"])
def test_multiscale_keeps_strong_detail(name):
    # a is flat grey, b has a strong edge pattern: detail is selected from b, the mean stays between the two.
    a = np.full((64, 64, 3), 128, np.uint8)
    b = np.full((64, 64, 3), 128, np.uint8)
    b[:, ::8] = 255
    out = create_fuser(name).fuse(a, b).astype(float)
    assert np.corrcoef(out[..., 0].ravel(), b[..., 0].ravel())[0, 1] > 0.9


def test_gff_prefers_salient_source():
    # Left half: a textured, b flat; right half the reverse. The fused texture must follow the textured source.
    tex = _texture(96, 128, seed=3)
    flat = np.full_like(tex, 120)
    a = flat.copy()
    b = flat.copy()
    a[:, :64] = tex[:, :64]
    b[:, 64:] = tex[:, 64:]
    out = create_fuser("gff").fuse(a, b).astype(float)
    err = np.abs(out - tex.astype(float))[:, 16:-16]  # away from the seam
    assert err[:, :32].mean() < 12 and err[:, -32:].mean() < 12
    assert np.abs(out - flat).mean() > 15


def test_guided_filter_preserves_constant_and_follows_edges():
    g = np.zeros((40, 40), np.float32)
    g[:, 20:] = 1.0
    const = np.full((40, 40), 0.3, np.float32)
    assert np.allclose(guided_filter(g, const, 4, 1e-3), 0.3, atol=1e-5)
    # A step in the source aligned with the guide's step survives small eps.
    out = guided_filter(g, g, 4, 1e-6)
    assert np.abs(out - g).max() < 1e-2


def test_mertens_prefers_well_exposed():
    scene = _texture(64, 64, seed=1)
    under = (scene.astype(float) * 0.15).astype(np.uint8)  # nearly black
    well = scene
    out = create_fuser("mertens").fuse(well, under, task="mef").astype(float)
    d_well = np.abs(out - well).mean()
    d_under = np.abs(out - under).mean()
    assert d_well < d_under / 2


def test_focus_picks_sharp_half():
    sharp = _texture(96, 128, seed=2)
    blur = cv2.GaussianBlur(sharp, (0, 0), 3)
    a = sharp.copy()
    b = sharp.copy()
    a[:, 64:] = blur[:, 64:]  # a sharp on the left
    b[:, :64] = blur[:, :64]  # b sharp on the right
    fuser = FocusFuser()
    dmap = fuser.decision_map(a, b)
    assert dmap[:, :56].mean() > 0.98 and dmap[:, 72:].mean() < 0.02
    out = fuser.fuse(a, b, task="mff")
    assert np.abs(out.astype(int) - sharp.astype(int))[:, 8:-8].mean() < 1.0


def test_bad_inputs_and_settings():
    a = np.zeros((8, 8, 3), np.uint8)
    with pytest.raises(InputError, match="differ in size"):
        create_fuser("average").fuse(a, np.zeros((8, 9, 3), np.uint8))
    with pytest.raises(InputError, match=r"\(H, W, 3\)"):
        create_fuser("maximum").fuse(a, np.zeros((8, 8), np.uint8))
    with pytest.raises(InputError, match="task"):
        create_fuser("average").fuse(a, a, task="xyz")
    with pytest.raises(ConfigError):
        create_fuser("dwt", wavelet="nope")
    with pytest.raises(ConfigError):
        create_fuser("focus", majority=4)


def test_640x480_speed():
    rng = np.random.default_rng(0)
    a = rng.integers(0, 256, (480, 640, 3), dtype=np.uint8)
    b = rng.integers(0, 256, (480, 640, 3), dtype=np.uint8)
    for name in NAMES:
        fuser = create_fuser(name)
        t = time.perf_counter()
        out = fuser.fuse(a, b)
        dt = time.perf_counter() - t
        assert out.shape == (480, 640, 3) and out.dtype == np.uint8
        assert dt < 2.0, f"{name} took {dt:.2f}s on 640x480"


def test_baseline_lookup_does_not_import_the_model_stack():
    """Providers load in order until the name is found: a baseline never pays for TC-MoA or training imports."""
    import subprocess
    import sys

    code = (
        "import sys\n"
        "from fusion.fusers import create_fuser\n"
        "create_fuser('average')\n"
        "print('fusion.models' in sys.modules, 'fusion.training' in sys.modules)\n"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == ["False", "False"]


def test_unknown_method_lists_every_provider():
    with pytest.raises(ConfigError, match=r"unknown fusion method 'nope' \(known: .*average.*tcmoa_e2e.*tcmoa_tiny"):
        create_fuser("nope")
