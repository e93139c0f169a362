"""The ``tang`` profile against the current Tang toolbox (commit 0e87153): MI, Nabf, SSIM and FMI.

MI and Nabf: golden values from the toolbox's own MATLAB files run in GNU Octave (``tests/golden/tang_toolbox_tno.csv``,
provenance in its first line). SSIM: the toolbox calls MATLAB's built-in ``ssim``, which is not available here (nor in
Octave), so it is checked against an independent re-statement of MATLAB's documented algorithm with SciPy.
"""

from __future__ import annotations

import contextlib
import csv
from pathlib import Path

import numpy as np
import pytest
import torch

from fusion.metrics import evaluate
from fusion.metrics.gradient import nabf
from fusion.utils.io import read_image

GOLDEN = Path(__file__).parent / "golden" / "tang_toolbox_tno.csv"


@pytest.mark.shared_data
def test_tang_mi_and_nabf_equal_the_toolbox_on_tno(shared_data):
    lines = GOLDEN.read_text().splitlines()
    assert lines[0].startswith("# Linfeng-Tang")
    rows = list(csv.DictReader(lines[1:]))
    assert len(rows) == 12
    tno = shared_data / "tno"
    for r in rows:
        f = read_image(tno / "fused" / r["method"] / f"{r['name']}.png", mode="gray")
        ir = read_image(tno / "ir" / f"{r['name']}.png", mode="gray")
        vis = read_image(tno / "vis" / f"{r['name']}.png", mode="gray")
        got = evaluate(f, ir, vis, profile="tang", metrics=["MI", "Nabf", "Nabf_fixed"])
        assert got["MI"] == pytest.approx(float(r["MI"]), rel=1e-10), r
        assert got["Nabf"] == pytest.approx(float(r["Nabf"]), rel=1e-10), r
        assert abs(got["Nabf_fixed"] / got["Nabf"] - 1) > 0.05  # the quirk changes the number


def test_tang_nabf_is_the_toolbox_call_order_and_nabf_fixed_the_correct_one():
    rng = np.random.default_rng(3)
    ir, vis, fused = (rng.integers(0, 256, (40, 50), dtype=np.uint8) for _ in range(3))
    got = evaluate(fused, ir, vis, profile="tang", metrics=["Nabf", "Nabf_fixed"])
    t = [torch.from_numpy(x.astype(np.float64))[None] for x in (fused, ir, vis)]
    assert got["Nabf"] == pytest.approx(nabf(t[1], t[2], t[0]).item(), rel=1e-12)  # analysis_nabf(ir, vis, F)
    assert got["Nabf_fixed"] == pytest.approx(nabf(t[0], t[1], t[2]).item(), rel=1e-12)


def test_tang_mi_merges_levels_254_and_255_in_the_joint_histogram():
    ir = np.zeros((20, 20), np.uint8)
    ir[:, 10:] = 254
    ir[:10, 10:] = 255  # 254 and 255 distinguish two halves of the right side
    vis = np.full((20, 20), 7, np.uint8)
    fused = ir.copy()
    got = evaluate(fused, ir, vis, profile="tang", metrics=["MI"])["MI"]
    # H(ir) = H(F) = 1.5 bits, H(vis) = 0. With 254/255 merged, the joint (F, ir) has 2 bins of 1/2: 1 bit, so
    # MI(ir, F) = 1.5 + 1.5 - 1 = 2; the joint (F, vis) has 2 bins too: MI(vis, F) = 0 + 1.5 - 1 = 0.5. Unmerged the
    # sum would be 1.5 + 1.5 = 3.
    assert got == pytest.approx(2.5, abs=1e-12)


def _matlab_ssim_reference(a: np.ndarray, b: np.ndarray, dynamic_range: float) -> float:
    """MATLAB ``ssim`` as documented: Gaussian sigma 1.5 on an 11x11 support, 'replicate' borders, C1 = (0.01 L)^2,
    C2 = (0.03 L)^2, mean of the whole map; written with SciPy, independently of the project."""
    from scipy.ndimage import correlate

    ax = np.arange(-5, 6, dtype=np.float64)
    k = np.exp(-(ax[:, None] ** 2 + ax[None] ** 2) / (2 * 1.5**2))
    k /= k.sum()

    def blur(x: np.ndarray) -> np.ndarray:
        return correlate(x, k, mode="nearest")

    c1, c2 = (0.01 * dynamic_range) ** 2, (0.03 * dynamic_range) ** 2
    mx, my = blur(a), blur(b)
    vx, vy, cxy = blur(a * a) - mx**2, blur(b * b) - my**2, blur(a * b) - mx * my
    smap = (2 * mx * my + c1) * (2 * cxy + c2) / ((mx**2 + my**2 + c1) * (vx + vy + c2))
    return float(smap.mean())


def test_tang_ssim_is_matlab_ssim_with_its_default_dynamic_range_of_one():
    rng = np.random.default_rng(5)
    base = rng.integers(0, 256, (48, 40)).astype(np.float64)
    from scipy.ndimage import gaussian_filter

    ir = np.clip(gaussian_filter(base, 2), 0, 255).round().astype(np.uint8)
    vis = np.clip(base * 0.5 + 60, 0, 255).round().astype(np.uint8)
    fused = ((ir.astype(int) + vis) // 2).astype(np.uint8)
    got = evaluate(fused, ir, vis, profile="tang", metrics=["SSIM", "SSIM_wang"])
    f, a, b = (x.astype(np.float64) for x in (fused, ir, vis))
    want = (_matlab_ssim_reference(f, a, 1.0) + _matlab_ssim_reference(f, b, 1.0)) / 2
    assert got["SSIM"] == pytest.approx(want, rel=1e-10)
    # the toolbox's number differs from the L = 255 one a reader might expect
    assert abs(want - (_matlab_ssim_reference(f, a, 255.0) + _matlab_ssim_reference(f, b, 255.0)) / 2) > 0.01


def test_tang_default_set_reports_nabf():
    rng = np.random.default_rng(0)
    ir, vis, fused = (rng.integers(0, 256, (48, 48), dtype=np.uint8) for _ in range(3))
    got = evaluate(fused, ir, vis, profile="tang")
    assert list(got) == ["EN", "SD", "SF", "MI", "SCD", "VIF", "Qabf", "Nabf", "SSIM", "AG", "CC", "PSNR", "MSE"]


def _fmi_images(seed: int) -> np.ndarray:
    """20x24 grey images with flat blocks and scattered zeros (windows where both patches are flat)."""
    r = np.random.default_rng(seed)
    x = np.round(r.random((20, 24)) * 255)
    x[:8, :9] = 0
    x[12:, 15:] = 200
    x[r.random((20, 24)) < 0.15] = 0
    return x


@pytest.mark.parametrize("compiled", [True, False])
def test_fmi_equals_the_toolbox_with_flat_windows(compiled):
    # Golden values: analysis_fmi(a, b, f, 'none', 3) of the toolbox (commit 0e87153) run unmodified in GNU Octave
    # 7.3.0 with the image package, on these images (written with numpy.savetxt). A flat patch against a flat
    # (normalised) patch scores 1 there: MATLAB's mean is a sequential sum, whose rounding residues correlate.
    from fusion.metrics import _ops
    from fusion.metrics.fmi import fmi

    a, b, f = (torch.from_numpy(_fmi_images(s))[None] for s in (1, 2, 3))
    with _ops.torch_reference() if not compiled else contextlib.nullcontext():
        assert fmi(a, b, f, feature="none").item() == pytest.approx(0.2225820647923285, rel=1e-13)
        assert fmi(a, b, a, feature="none").item() == pytest.approx(0.60137489425249746, rel=1e-13)
