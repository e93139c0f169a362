"""fusion.training.codec_init: the codec initialisation computes the fusion it documents, and the identity-block skip is
exact."""

from __future__ import annotations

import pytest
import torch

import fusion
from fusion.errors import ConfigError
from fusion.models.tcmoa import normalize
from fusion.training.codec_init import decode_patches, encode_patches, reference_fusion
from fusion.training.trainer import skip_identity_blocks


def _pair(seed: int = 0, size: int = 112) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    # smooth structure plus texture, so that both frequency bands matter
    base = torch.nn.functional.interpolate(torch.rand(1, 3, 8, 8, generator=g), size=(size, size), mode="bilinear")
    a = (0.7 * base + 0.3 * torch.rand(1, 3, size, size, generator=g)).clamp(0, 1)
    b = (0.5 * base.mean(1, keepdim=True) + 0.4 * torch.rand(1, 1, size, size, generator=g)).expand(1, 3, size, size)
    return a, b.clamp(0, 1).contiguous()


def test_codec_roundtrip_is_exact_for_luma_and_block_chroma():
    a, _ = _pair(1)
    rec = decode_patches(encode_patches(a))
    gray = torch.tensor([0.299, 0.587, 0.114], dtype=torch.float64).view(1, 3, 1, 1)
    assert torch.allclose((rec * gray).sum(1), (a.double() * gray).sum(1), atol=1e-9)  # luma kept exactly
    # colour differences are kept at half resolution: exact when they are constant on 2x2 cells
    g = torch.Generator().manual_seed(5)
    colour = torch.rand(1, 3, 16, 16, generator=g, dtype=torch.float64).repeat_interleave(2, 2).repeat_interleave(2, 3)
    img = 0.5 * torch.rand(1, 1, 32, 32, generator=g, dtype=torch.float64) + 0.5 * colour
    assert torch.allclose(decode_patches(encode_patches(img)), img, atol=1e-9)


@pytest.fixture(scope="module")
def codec_tiny():
    from fusion.training.codec_init import codec_init

    model = fusion.create_model("tcmoa_tiny")
    codec_init(model)
    return model.eval()


@pytest.fixture(scope="module")
def fast_tiny(codec_tiny):
    import copy

    model = copy.deepcopy(codec_tiny)
    skip_identity_blocks(model)  # bit-exact (test_identity_block_skip_is_bit_exact), ~10x faster
    return model


@pytest.mark.parametrize("task", ["vif", "mef", "mff"])
def test_codec_model_computes_the_reference_fusion(fast_tiny, task):
    codec_tiny = fast_tiny
    a, b = _pair(2)
    with torch.no_grad():
        fused = codec_tiny(normalize(a), normalize(b), task=task)
    ref = reference_fusion(a, b, task)
    assert (fused - ref).abs().mean() < 5e-4
    assert (fused - ref).abs().max() < 5e-3
    # a real fusion: both sources contribute, neither is copied
    assert (fused - a).abs().mean() > 0.02 and (fused - b).abs().mean() > 0.02


def test_vif_prefers_the_brighter_block_and_prompts_sum_to_one(fast_tiny):
    codec_tiny = fast_tiny
    a, b = _pair(3)
    dark_a = a * 0.2
    with torch.no_grad():
        fused, aux = codec_tiny(normalize(dark_a), normalize(b), task="vif", return_aux=True)
    pa, pb = aux["prompts_enc_a"][0], aux["prompts_enc_b"][0]
    assert torch.allclose(pa + pb, torch.ones_like(pa), atol=1e-5)
    assert pb.mean() > 0.8  # infrared (b) is brighter almost everywhere
    gray = torch.tensor([0.299, 0.587, 0.114]).view(1, 3, 1, 1)
    assert (fused * gray).sum(1).mean() > 0.8 * (b * gray).sum(1).mean()
    with torch.no_grad():
        _, aux_mef = codec_tiny(normalize(dark_a), normalize(b), task="mef", return_aux=True)
    assert torch.allclose(aux_mef["prompts_enc_a"], torch.full_like(aux_mef["prompts_enc_a"], 0.5), atol=1e-5)


def test_identity_block_skip_is_bit_exact(codec_tiny):
    import copy

    from fusion.training.codec_init import zero_dead_weights

    model = copy.deepcopy(codec_tiny)
    a, b = _pair(4)
    with torch.no_grad():
        for blk in model.blocks:  # what a run that did not zero them would hold: random, but without effect
            torch.nn.init.normal_(blk.attn.qkv.weight)
            torch.nn.init.normal_(blk.mlp.fc1.weight)
        before = model(normalize(a), normalize(b), task="vif")
        assert zero_dead_weights(model) > 40
        assert not torch.any(model.blocks[3].attn.qkv.weight)
        zeroed = model(normalize(a), normalize(b), task="vif")
        assert skip_identity_blocks(model) == 20
        after = model(normalize(a), normalize(b), task="vif")
    assert torch.equal(before, zeroed) and torch.equal(before, after)
    assert set(model.state_dict()) == set(codec_tiny.state_dict())
    fresh = fusion.create_model("tcmoa_tiny", depth=4, decoder_depth=4)
    assert skip_identity_blocks(fresh) == 0  # random blocks are never skipped


def test_codec_init_rejects_narrow_models():
    from fusion.training.codec_init import codec_init

    with pytest.raises(ConfigError, match="embed_dim >= 192"):
        codec_init(fusion.create_model("tcmoa_tiny", embed_dim=64, num_heads=2, depth=4, decoder_depth=4))
