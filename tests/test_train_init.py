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


def test_vif_base_prompts_follow_the_brighter_block_and_sum_to_one(fast_tiny):
    from fusion.training.codec_init import CODEC_GAINS

    codec_tiny = fast_tiny
    a, b = _pair(3)
    gray = torch.tensor([0.299, 0.587, 0.114]).view(1, 3, 1, 1)
    shares = []
    for gain in (1.0, 0.2):
        dark_a = a * gain
        with torch.no_grad():
            _, aux = codec_tiny(normalize(dark_a), normalize(b), task="vif", return_aux=True)
        pa, pb = aux["prompts_enc_a"][0], aux["prompts_enc_b"][0]
        assert torch.allclose(pa + pb, torch.ones_like(pa), atol=1e-5)
        # p_a = sigmoid(slope d + bias - hot_slope relu(-d - hot_margin) - dark_slope relu(dark_level - mean_a))
        mean_a = torch.nn.functional.avg_pool2d((dark_a * gray).sum(1, keepdim=True), 8).flatten()
        mean_b = torch.nn.functional.avg_pool2d((b * gray).sum(1, keepdim=True), 8).flatten()
        d = mean_a - mean_b
        g = CODEC_GAINS
        expected = torch.sigmoid(g["slope"] * d + g["bias"] - g["hot_slope"] * torch.relu(-d - g["hot_margin"])
                                 - g["dark_slope"] * torch.relu(g["dark_level"] - mean_a))
        assert torch.allclose(pa.flatten(), expected, atol=2e-3)
        shares.append(pb.mean().item())
    assert shares[1] > shares[0] + 0.1  # darker visible blocks hand the base to the infrared
    with torch.no_grad():
        _, aux_mef = codec_tiny(normalize(a), normalize(b), task="mef", return_aux=True)
    assert torch.allclose(aux_mef["prompts_enc_a"][0], torch.full_like(aux_mef["prompts_enc_a"][0], 0.5), atol=1e-5)
    # the detail and low-frequency modules use constant prompts for every task
    assert torch.allclose(aux_mef["prompts_enc_a"][1], torch.full_like(aux_mef["prompts_enc_a"][1], 0.5), atol=1e-5)
    assert torch.allclose(aux_mef["prompts_enc_a"][2], torch.full_like(aux_mef["prompts_enc_a"][2], 0.45), atol=1e-5)


def test_codec_base_is_smooth_across_token_borders(fast_tiny):
    """A step in the infrared brightness inside one token does not become a jump at the 8-pixel grid."""
    a = torch.full((1, 3, 112, 112), 0.3)
    b = torch.full((1, 3, 112, 112), 0.2)
    b[..., :, 52:] = 0.9  # an edge at x = 52, inside token 6 (pixels 48..55)
    with torch.no_grad():
        fused = fast_tiny(normalize(a), normalize(b), task="vif")
    row = fused[0, 1, 56, 16:-16]  # away from the frame border
    steps = (row[1:] - row[:-1]).abs()
    grid = torch.tensor([i for i in range(len(steps)) if (i + 16) % 8 == 7])
    other = torch.tensor([i for i in range(len(steps)) if (i + 16) % 8 != 7 and abs(i + 16 - 51) > 1])
    assert steps[grid].max() < 0.03 and steps[other].max() < 0.03
    assert steps.max() > 0.3  # the edge itself is kept sharp


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


def test_shipped_weights_are_the_codec_initialisation(tmp_path):
    """fusion/weights/tcmoa_tiny.safetensors is what `python -m fusion.training.codec_init` writes, tensor for
    tensor (the safetensors header may list its metadata in another order)."""
    from safetensors import safe_open

    from fusion.training.codec_init import write_codec_weights
    from fusion.weights import SHIPPED_WEIGHTS

    out = write_codec_weights(str(tmp_path / "codec.safetensors"))
    with safe_open(out, "pt") as new, safe_open(str(SHIPPED_WEIGHTS["tcmoa_tiny"]), "pt") as shipped:
        assert new.metadata() == shipped.metadata()
        assert set(new.keys()) == set(shipped.keys())
        for key in new.keys():
            # float64 QR and products rounded to float32: allow another BLAS's last bit
            assert torch.allclose(new.get_tensor(key).double(), shipped.get_tensor(key).double(), rtol=1e-6,
                                  atol=1e-7), key


@pytest.mark.parametrize("task", ["mef", "mff"])
def test_two_colour_sources_keep_their_colour(fast_tiny, task):
    """mef/mff: stream a carries a's chroma plus b's; the decoder colour module averages them back."""
    g = torch.Generator().manual_seed(7)
    img = torch.nn.functional.interpolate(torch.rand(1, 3, 14, 14, generator=g), size=(112, 112), mode="bilinear")
    gray = torch.tensor([0.299, 0.587, 0.114]).view(1, 3, 1, 1)

    def chroma(x: torch.Tensor) -> float:
        return float((x - (x * gray).sum(1, keepdim=True))[..., 16:-16, 16:-16].abs().mean())

    with torch.no_grad():
        fused = fast_tiny(normalize(img), normalize(img), task=task)
        vif = fast_tiny(normalize(img), normalize(img), task="vif")
    assert chroma(fused) == pytest.approx(chroma(img), rel=0.05)
    assert chroma(vif) > 1.6 * chroma(img)  # vif expects a grey infrared: colours add (clipped where saturated)


def test_tiny_recipe_leaves_vif_bit_identical(shared_data, repo_root, tmp_path):
    """configs/fusion/tcmoa_tiny_cpu.py trains the mef/mff routers only: vif output does not move."""
    import os
    import subprocess
    import sys

    env = {**os.environ, "TCMOA_SHARED_DATA": str(shared_data)}
    proc = subprocess.run([sys.executable, str(repo_root / "pipelines" / "train_fusion.py"), "--config",
                           str(repo_root / "configs" / "fusion" / "tcmoa_tiny_cpu.py"), "train.max_iters=3",
                           "ema.enabled=False", "log.tensorboard=False", "log.samples_every_iters=0",
                           f"output_dir={tmp_path / 'run'}"], capture_output=True, text=True, timeout=600,
                          check=False, env=env, cwd=repo_root)
    assert proc.returncode == 0, proc.stderr[-2000:]
    start = fusion.create_model("tcmoa_tiny", checkpoint=str(repo_root / "fusion/weights/tcmoa_tiny.safetensors"))
    trained = fusion.create_model("tcmoa_tiny", checkpoint=str(tmp_path / "run" / "model_final.safetensors"))
    a, b = _pair(6)
    with torch.no_grad():
        same = torch.equal(start.eval()(normalize(a), normalize(b), task="vif"),
                           trained.eval()(normalize(a), normalize(b), task="vif"))
        moved = not torch.equal(start(normalize(a), normalize(b), task="mef"),
                                trained(normalize(a), normalize(b), task="mef"))
    assert same and moved
