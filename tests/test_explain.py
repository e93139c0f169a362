"""Prompt maps and expert usage (fusion.models.explain, pipelines/explain.py)."""

from __future__ import annotations

import csv
import subprocess
import sys

import numpy as np
import pytest
import torch

from fusion.models import create_model
from fusion.models.explain import expert_usage, module_names, prompt_maps
from fusion.models.reference import randomize
from fusion.utils.io import write_image


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    m = create_model("tcmoa_tiny", depth=8, decoder_depth=4).eval()
    randomize(m, seed=1)
    return m


def _pair(h=100, w=150, seed=0):
    rng = np.random.default_rng(seed)
    return (rng.integers(0, 256, (h, w, 3), dtype=np.uint8), rng.integers(0, 256, (h, w, 3), dtype=np.uint8))


def test_prompt_maps_shapes_and_values(model):
    a, b = _pair()
    maps = prompt_maps(model, a, b, "vif")
    assert maps.names == module_names(model) == ["enc0", "enc1", "dec0"]
    assert maps.a.shape == maps.b.shape == (3, 100, 150)
    # 100x150 is padded to 112x224: a (14, 28) token grid (8 pixels per token)
    assert maps.tokens_a.shape == (3, 14, 28) and maps.fused.shape == (100, 150, 3)
    assert 0 < maps.a.min() and maps.a.max() < 1 and 0 < maps.b.min() and maps.b.max() < 1
    assert np.array_equal(maps.a[:, ::8, ::8], maps.tokens_a[:, :13, :19])  # each token's value on its 8x8 pixels
    assert maps.scale == 1.0


def test_prompts_are_the_weights_the_model_sums_the_streams_with(model):
    """x̃ + t̃ = p_a·x + p_b·t + μ_a + μ_b at every TC-MoA module: the maps are the combination weights."""
    a, b = _pair(112, 112, seed=2)
    seen = []

    def hook(mod, inputs, outputs):
        seen.append((inputs[0].detach(), inputs[1].detach(), outputs[0].detach(), outputs[1].detach(), inputs[2]))

    handles = [m.register_forward_hook(hook) for m in [*model.blocks_MoA, *model.decoder_blocks_MoA]]
    try:
        maps = prompt_maps(model, a, b, "mef")
    finally:
        for h in handles:
            h.remove()
    assert len(seen) == 3
    for k, (x, t, x_out, t_out, task) in enumerate(seen):
        mod = [*model.blocks_MoA, *model.decoder_blocks_MoA][k]
        pa = torch.from_numpy(maps.tokens_a[k]).reshape(1, -1, 1)
        pb = torch.from_numpy(maps.tokens_b[k]).reshape(1, -1, 1)
        want = pa * x + pb * t + mod.modal_shifts[2 * task] + mod.modal_shifts[2 * task + 1]
        assert torch.allclose(x_out + t_out, want, atol=1e-5)


def test_large_frames_are_resized_to_fit_the_budget(model):
    a, b = _pair(300, 400, seed=3)
    maps = prompt_maps(model, a, b, "vif", max_pixels=112 * 224)
    assert maps.scale < 1 and maps.a.shape == (3, 300, 400) and maps.fused.shape == (300, 400, 3)


def test_a_router_that_always_picks_expert_0_shows_up_as_such(model):
    import copy

    m = copy.deepcopy(model)
    with torch.no_grad():
        for adapter in [*m.blocks_MoA, *m.decoder_blocks_MoA]:
            adapter.norm2.weight.zero_()  # every token's router input becomes the constant norm2.bias
            adapter.norm2.bias.fill_(1.0)
            w = adapter.MoA.w_gate
            w.zero_()
            r = w.shape[1]
            w[1, :, 0] = 2.0 / r  # task mef: logits 2 (expert 0), 1 (expert 3), 0, 0 for every token
            w[1, :, 3] = 1.0 / r
    usage = expert_usage(m, [_pair(seed=4), _pair(seed=5)], ["vif", "mef", "mff"])
    assert usage["share"].shape == (3, 3, 4) and usage["gate"].shape == (3, 3, 4)
    assert np.allclose(usage["share"][:, 1, 0], 1.0) and np.allclose(usage["share"][:, 1, 3], 1.0)
    assert np.allclose(usage["share"][:, 1, 1:3], 0.0)
    assert np.all(usage["gate"][:, 1, 0] > usage["gate"][:, 1, 3])  # the larger logit gets the larger gate
    assert np.allclose(usage["share"].sum(2), 2.0)  # top-2: every token goes to two experts
    assert all(mix.record_gates is False for mix in m.modules() if hasattr(mix, "record_gates"))


def test_explain_cli_writes_figures_and_csv(tmp_path, repo_root):
    src = tmp_path / "src"
    for i in range(2):
        a, b = _pair(60, 90, seed=10 + i)
        write_image(src / "vis" / f"{i}.png", a)
        write_image(src / "ir" / f"{i}.png", b)
    out = tmp_path / "out"
    proc = subprocess.run([sys.executable, str(repo_root / "pipelines" / "explain.py"), "--a-dir", str(src / "vis"),
                           "--b-dir", str(src / "ir"), "--task", "vif", "--out", str(out)],
                          capture_output=True, text=True, timeout=300, check=False)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert (out / "prompts_0_vif.png").stat().st_size > 10_000 and (out / "expert_usage.png").is_file()
    rows = list(csv.DictReader((out / "expert_usage.csv").open()))
    assert len(rows) == 5 * 3 * 4  # shipped tcmoa_tiny: 3 encoder + 2 decoder modules, 3 tasks, 4 experts
    for mod in {r["module"] for r in rows}:
        for task in ("vif", "mef", "mff"):
            shares = [float(r["share_of_tokens"]) for r in rows if r["module"] == mod and r["task"] == task]
            assert abs(sum(shares) - 2.0) < 2.5e-6  # four values written with 6 decimals
    bad = subprocess.run([sys.executable, str(repo_root / "pipelines" / "explain.py"), "--a", str(src / "vis/0.png"),
                          "--out", str(out)], capture_output=True, text=True, timeout=120, check=False)
    assert bad.returncode == 2 and "--a needs --b" in bad.stderr and "Traceback" not in bad.stderr
