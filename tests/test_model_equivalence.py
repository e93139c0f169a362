"""The model against a literal re-statement of the official forward (docs/tcmoa.md §1), on random weights.

``official_forward`` (``fusion/models/reference.py``) is written from ``docs/tcmoa.md`` independently of the model's
modules and follows the official code's structure step by step (see its docstring). It takes a plain state dict, so it
checks the module names as well.
"""

from __future__ import annotations

import math

import pytest
import torch

from fusion.models import create_model
from fusion.models.reference import official_forward, randomize, rel_index


@pytest.fixture(scope="module")
def tiny():
    torch.manual_seed(0)
    model = create_model("tcmoa_tiny", depth=8)  # 2 encoder + 2 decoder TC-MoA modules: every code path, less time
    randomize(model)
    return model.eval()


@pytest.mark.parametrize(("task", "size"), [(0, (112, 224)), (1, (224, 112)), (2, (112, 224))])
def test_matches_official_forward(tiny, task, size):
    gen = torch.Generator().manual_seed(task)
    a = torch.randn(1, 3, *size, generator=gen)
    b = torch.randn(1, 3, *size, generator=gen)
    sd = {k: v.clone() for k, v in tiny.state_dict().items()}
    with torch.no_grad():
        want, want_aux, want_prompts, want_raw = official_forward(sd, tiny.config, a, b, task)
        got, aux = tiny(a, b, task=task, return_aux=True)
    assert got.shape == (1, 3, *size)
    assert (want - got).abs().max().item() < 1e-5
    assert (want_raw - aux["raw"]).abs().max().item() < 1e-4
    assert torch.allclose(aux["aux_loss"], want_aux.reshape(()), rtol=1e-5, atol=1e-7)
    for key in ("enc_a", "enc_b", "dec_a", "dec_b"):
        assert torch.allclose(aux[f"prompts_{key}"], want_prompts[key], atol=1e-6)
    # the result is far from trivial: sources and tasks matter
    assert got.std().item() > 0.01


def test_square_input_and_sparse_dispatch_agree(tiny):
    gen = torch.Generator().manual_seed(5)
    a = torch.randn(1, 3, 224, 224, generator=gen)
    b = torch.randn(1, 3, 224, 224, generator=gen)
    sd = {k: v.clone() for k, v in tiny.state_dict().items()}
    with torch.no_grad():
        want = official_forward(sd, tiny.config, a, b, 1)[0]
        dense = tiny(a, b, task="mef")
        for mod in tiny.modules():
            if hasattr(mod, "dispatch"):
                mod.dispatch = "sparse"
        try:
            sparse = tiny(a, b, task="mef")
        finally:
            for mod in tiny.modules():
                if hasattr(mod, "dispatch"):
                    mod.dispatch = "dense"
    assert (want - dense).abs().max().item() < 1e-5
    assert (dense - sparse).abs().max().item() < 1e-6


def test_explicit_softmax_equals_sdpa(tiny):
    gen = torch.Generator().manual_seed(9)
    a = torch.randn(1, 3, 112, 112, generator=gen)
    b = torch.randn(1, 3, 112, 112, generator=gen)
    with torch.no_grad():
        fused_sdpa, aux_sdpa = tiny(a, b, 2, return_aux=True)
        tiny.set_fused_attn(False)
        try:
            fused_expl, aux_expl = tiny(a, b, 2, return_aux=True)
        finally:
            tiny.set_fused_attn(True)
    assert (fused_sdpa - fused_expl).abs().max().item() < 1e-5
    assert (aux_sdpa["raw"] - aux_expl["raw"]).abs().max().item() < 1e-4


@pytest.mark.slow
@pytest.mark.parametrize(("name", "task", "size"), [("tcmoa_base", 0, (112, 224)), ("tcmoa_large", 2, (224, 112))])
def test_official_sizes_match_official_forward(name, task, size):
    torch.manual_seed(1)
    model = create_model(name)
    randomize(model, seed=3)
    model.eval()
    gen = torch.Generator().manual_seed(11)
    a = torch.randn(1, 3, *size, generator=gen)
    b = torch.randn(1, 3, *size, generator=gen)
    with torch.no_grad():
        want = official_forward(model.state_dict(), model.config, a, b, task)[0]
        got = model(a, b, task)
    assert (want - got).abs().max().item() < 1e-5


def test_reference_index_formula():
    idx = rel_index(14)
    assert idx[0, 195].item() == 0 and idx[195, 0].item() == 728 and idx[0, 1].item() == 13 * 27 + 12
    assert math.isclose(float(idx.float().mean()), 364.0)
