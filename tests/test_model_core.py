"""TC-MoA architecture: key sets, parameter counts, golden values derived by hand from the design, shapes, modes."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from fusion import create_model as top_level_create_model
from fusion.errors import ConfigError, InputError
from fusion.models import TCMoAConfig, create_model, get_config, is_backbone_key, list_models, prompt_loss
from fusion.models.layers import (
    LOG_ZERO_EPS,
    MMoE,
    relative_position_index,
    resize_pos_embed,
    restandardize,
    sincos_pos_embed_2d,
    window_merge,
    window_partition,
)

IMAGENET_MEAN = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
IMAGENET_STD = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)


def small_model(**overrides):
    """tcmoa_tiny cut to 4 + 4 blocks (one TC-MoA module each side): fast on a CPU."""
    torch.manual_seed(0)
    kw = {"depth": 4, "decoder_depth": 4}
    kw.update(overrides)
    return create_model("tcmoa_tiny", **kw)


def read_key_file(path: Path) -> dict[str, tuple[int, ...]]:
    out = {}
    for line in path.read_text().splitlines():
        if not line or line.startswith("#"):
            continue
        key, shape = line.split("\t")[:2]
        out[key] = tuple(int(s) for s in shape.strip("()").split(",") if s.strip())
    return out


# ---------------------------------------------------------------------------------------------- registry, keys
def test_registry_lists_variants():
    assert list_models() == ["tcmoa_base", "tcmoa_large", "tcmoa_small", "tcmoa_tiny"]
    assert get_config("tcmoa_small").embed_dim == 384 and get_config("tcmoa_small").num_heads == 6
    tiny = get_config("tcmoa_tiny")
    assert (tiny.embed_dim, tiny.num_heads, tiny.depth, tiny.decoder_embed_dim, tiny.decoder_num_heads) == (
        192, 3, 12, 128, 4)
    assert type(get_config("tcmoa_large")).__name__ == "TCMoALargeConfig"


@pytest.mark.parametrize("name", ["tcmoa_base", "tcmoa_large"])
def test_state_dict_keys_equal_official_lists(name, shared_data):
    ref_file = shared_data.parent / "reference" / f"{name.replace('_', '-')}-keys.txt"
    if not ref_file.is_file():
        pytest.skip(f"{ref_file} not found")
    ref = read_key_file(ref_file)
    model = create_model(name, device="meta")
    mine = {k: tuple(v.shape) for k, v in model.state_dict().items() if not k.endswith("modal_shifts")}
    assert set(mine) == set(ref)
    assert list(mine) == list(ref)  # same order as the official state_dict
    assert mine == ref


@pytest.mark.parametrize(("name", "trainable", "total", "shifts"), [
    ("tcmoa_base", 3_865_197, 115_772_525, 3 * 6 * 768 + 2 * 6 * 512),
    ("tcmoa_large", 11_345_544, 340_886_920, 6 * 6 * 1024 + 2 * 6 * 512),
])
def test_parameter_counts_equal_design(name, trainable, total, shifts):
    model = create_model(name, device="meta")
    # the design's counts exclude the modal shifts, which the official code does not register
    assert model.count_parameters(include_modal_shifts=False) == trainable
    assert model.count_parameters(trainable_only=False, include_modal_shifts=False) == total
    assert model.count_parameters() == trainable + shifts
    assert model.blocks_MoA[0].modal_shifts.shape == (6, model.config.embed_dim)
    assert model.decoder_blocks_MoA[1].modal_shifts.shape == (6, 512)


def test_modal_shifts_trainability_is_configurable():
    model = create_model("tcmoa_tiny", device="meta", train_modal_shifts=False)
    assert not model.blocks_MoA[0].modal_shifts.requires_grad
    assert model.count_parameters() == model.count_parameters(include_modal_shifts=False)


def test_frozen_parts_are_the_mae_names():
    model = create_model("tcmoa_tiny", device="meta")
    frozen = {n for n, p in model.named_parameters() if not p.requires_grad}
    assert frozen == {n for n, _ in model.named_parameters() if is_backbone_key(n)}
    assert {"blocks.0.attn.qkv.weight", "decoder_pred.bias", "cls_token", "decoder_pos_embed", "norm.weight",
            "decoder_blocks.7.mlp.fc2.weight", "patch_embed.proj.weight"} <= frozen
    assert not any(n.startswith(("blocks_MoA", "decoder_blocks_MoA", "FusionLayer", "de_", "Alpha", "en_"))
                   for n in frozen)
    trainable = {n for n, _ in model.trainable_named_parameters()}
    assert "decoder_blocks_MoA.1.MoA.w_gate" in trainable and "Alpha_decoder" in trainable
    assert "de_relative_position.3.relative_position_bias_table" in trainable
    groups = model.param_groups(0.05)
    assert sum(len(g["params"]) for g in groups) == len(trainable)
    no_decay = {id(p) for p in groups[0]["params"]}
    assert id(model.Alpha_encoder) in no_decay and id(model.blocks_MoA[0].modal_shifts) in no_decay
    assert id(model.blocks_MoA[0].MoA.w_gate) not in no_decay


def test_config_validation_and_overrides():
    with pytest.raises(ConfigError, match="depth 10"):
        create_model("tcmoa_tiny", depth=10, device="meta")
    with pytest.raises(ConfigError, match="unknown model option"):
        create_model("tcmoa_tiny", widht=3, device="meta")
    with pytest.raises(ConfigError, match="unknown model"):
        create_model("tcmoa_huge")
    with pytest.raises(ConfigError, match="multiple of 32"):
        TCMoAConfig(embed_dim=200, num_heads=4)
    assert TCMoAConfig().input_multiple == 112
    assert [i for i in range(12) if TCMoAConfig().adapter_after(i)] == [1, 5, 9]
    model = top_level_create_model("tcmoa_tiny", device="meta", num_tasks=4, task_names=("vif", "mef", "mff", "med"))
    assert model.blocks_MoA[0].MoA.w_gate.shape == (4, 48, 4)
    assert model.decoder_blocks_MoA[0].modal_shifts.shape == (8, 128)
    assert model.config.task_index("med") == 3 and model.config.task_index(2) == 2


def test_task_resolution():
    cfg = TCMoAConfig()
    assert [cfg.task_index(t) for t in ("vif", "MEF", "mff", 0, 1, 2, "2")] == [0, 1, 2, 0, 1, 2, 2]
    for bad in ("foo", 3, -1, True, 1.5j):
        with pytest.raises(InputError):
            cfg.task_index(bad)


# ---------------------------------------------------------------------------------------------- golden values
def test_relative_position_index_by_hand():
    # tokens (0,0) (0,1) (1,0) (1,1); index = (dy + 1) * 3 + (dx + 1)
    want = torch.tensor([[4, 3, 1, 0], [5, 4, 2, 1], [7, 6, 4, 3], [8, 7, 5, 4]])
    assert torch.equal(relative_position_index(2), want)
    idx = relative_position_index(14)
    assert idx.shape == (196, 196) and idx.dtype == torch.int64
    assert idx[0, 195] == 0 and idx[195, 0] == 728 and idx[0, 1] == 13 * 27 + 12 and idx[14, 0] == 14 * 27 + 13


def test_relative_bias_is_shared_by_block_pairs():
    model = small_model()
    assert len(model.en_relative_position) == 2 and len(model.de_relative_position) == 2
    bias = model.en_relative_position[1]()
    assert bias.shape == (1, 3, 196, 196)
    table = model.en_relative_position[1].relative_position_bias_table
    assert bias[0, 2, 0, 195] == table[0, 2] and bias[0, 1, 195, 0] == table[728, 1]


def test_pos_embed_resize_is_transposed_on_non_square_grids():
    grid = torch.tensor([[1.0, 2.0], [3.0, 4.0]])
    pe = torch.cat([torch.zeros(1), grid.flatten()]).view(1, 5, 1)
    # token grid Hp=1, Wp=2: the map is resized to (rows=Wp=2, cols=Hp=1): each row's columns averaged
    out = resize_pos_embed(pe, 2, hp=1, wp=2)
    assert out.shape == (1, 2, 1)
    assert out.flatten().tolist() == [1.5, 3.5]  # the "natural" (Hp, Wp) resize would give [2.0, 3.0]
    square = resize_pos_embed(pe, 2, hp=2, wp=2)
    assert square.flatten().tolist() == [1.0, 2.0, 3.0, 4.0]


def test_pos_embed_aspect_layout_keeps_rows_and_columns():
    grid = torch.tensor([[1.0, 2.0], [3.0, 4.0]])
    pe = torch.cat([torch.zeros(1), grid.flatten()]).view(1, 5, 1)
    out = resize_pos_embed(pe, 2, hp=1, wp=2, layout="aspect")
    assert out.flatten().tolist() == [2.0, 3.0]  # rows averaged, columns kept: (row, col) of each token
    tall = resize_pos_embed(pe, 2, hp=4, wp=2, layout="aspect").view(4, 2)
    assert tall[:, 0].tolist() == sorted(tall[:, 0].tolist()) and torch.all(tall[:, 1] > tall[:, 0])
    for hp, wp in ((2, 2), (6, 6)):
        assert torch.equal(resize_pos_embed(pe, 2, hp, wp, layout="aspect"), resize_pos_embed(pe, 2, hp, wp))
    with pytest.raises(ValueError, match="layout"):
        resize_pos_embed(pe, 2, 1, 2, layout="square")


def test_forward_pos_embed_layouts_agree_on_square_grids_only():
    model = small_model().eval()
    gen = torch.Generator().manual_seed(5)
    a, b = torch.randn(1, 3, 112, 112, generator=gen), torch.randn(1, 3, 112, 112, generator=gen)
    with torch.no_grad():
        assert torch.equal(model(a, b, 0), model(a, b, 0, pos_embed="aspect"))
        a2, b2 = torch.randn(1, 3, 112, 224, generator=gen), torch.randn(1, 3, 112, 224, generator=gen)
        assert not torch.allclose(model(a2, b2, 0), model(a2, b2, 0, pos_embed="aspect"), atol=1e-4)


def test_decoding_only_the_kept_pixels_equals_the_full_decode():
    """The nearest 2x reduction keeps pixel (2i, 2j): the forward decodes only those rows of decoder_pred."""
    model = small_model().eval()
    gen = torch.Generator().manual_seed(6)
    a, b = torch.randn(2, 3, 112, 224, generator=gen), torch.randn(2, 3, 112, 224, generator=gen)
    with torch.no_grad():
        fast = model(a, b, 1)
        full, aux = model(a, b, 1, return_aux=True)  # decodes every pixel (the raw output is returned)
    assert (fast - full).abs().max() <= 1e-6
    want = torch.clip((aux["raw"][..., ::2, ::2] * IMAGENET_STD + IMAGENET_MEAN) * 255, 0, 255) / 255
    assert (fast - want).abs().max() <= 1e-6


def test_identity_blocks_between_real_blocks_are_skipped_exactly():
    from fusion.models.shortcuts import skip_identity_blocks

    model = small_model(depth=8, decoder_depth=4).eval()
    with torch.no_grad():
        for k in (2, 3, 5):  # identities among computed blocks, including one of a shifted pair
            for t in (model.blocks[k].attn.proj, model.blocks[k].mlp.fc2):
                t.weight.zero_()
                t.bias.zero_()
    gen = torch.Generator().manual_seed(7)
    a, b = torch.randn(1, 3, 112, 224, generator=gen), torch.randn(1, 3, 112, 224, generator=gen)
    with torch.no_grad():
        before = model(a, b, 0)
        assert skip_identity_blocks(model) == 3
        after = model(a, b, 0)
    assert (before - after).abs().max() <= 1e-6


def test_sincos_pos_embed_matches_mae_formula():
    pe = sincos_pos_embed_2d(8, 3)
    assert pe.shape == (1, 10, 8) and pe[0, 0].abs().sum() == 0
    # token (row 1, col 2) -> index 1 + 1*3 + 2; first half encodes the column, second the row
    tok = pe[0, 1 + 3 + 2]
    omega = [1.0, 1.0 / 100.0]
    want = [math.sin(2 * o) for o in omega] + [math.cos(2 * o) for o in omega]
    want += [math.sin(1 * o) for o in omega] + [math.cos(1 * o) for o in omega]
    assert torch.allclose(tok, torch.tensor(want), atol=1e-7)


def _hand_moe(logits: list[float], biases: list[float]) -> MMoE:
    moe = MMoE(dim=4, hidden=2, num_experts=4, top_k=2, num_tasks=2).eval()
    with torch.no_grad():
        moe.w_gate.zero_()
        moe.w_gate[1, 0] = torch.tensor(logits)  # y = e0 selects this row as the logits of task 1
        for e, expert in enumerate(moe.experts):
            expert.fc1.weight.zero_()
            expert.fc1.bias.zero_()
            expert.fc2.weight.zero_()
            expert.fc2.bias.fill_(biases[e])  # E_e(y) = biases[e] for every channel
    return moe


@pytest.mark.parametrize("dispatch", ["dense", "sparse"])
def test_moe_combines_in_log_space(dispatch):
    moe = _hand_moe([1.0, 0.0, -1.0, -2.0], [1.0, 2.0, 5.0, 7.0])
    moe.dispatch = dispatch
    y = torch.tensor([[1.0, 0.0, 0.0, 0.0]])
    z, aux = moe(y, 1)
    g0, g1 = math.e / (math.e + 1), 1 / (math.e + 1)
    want = math.log(g0 * math.exp(1.0) + g1 * math.exp(2.0))  # not g0*1 + g1*2 = 1.269
    assert torch.allclose(z, torch.full((1, 4), want), atol=1e-6)
    # eval load counts tokens per expert: importance (g0, g1, 0, 0), load (1, 1, 0, 0)
    cv = lambda v: torch.tensor(v).var() / (torch.tensor(v).mean() ** 2 + 1e-10)  # noqa: E731
    assert torch.allclose(aux, 1e-3 * (cv([g0, g1, 0.0, 0.0]) + cv([1.0, 1.0, 0.0, 0.0])), rtol=1e-5)


@pytest.mark.parametrize("dispatch", ["dense", "sparse"])
def test_moe_threshold_drops_small_gates_without_renormalising(dispatch):
    moe = _hand_moe([10.0, 0.0, -1.0, -2.0], [1.0, 2.0, 5.0, 7.0])
    moe.dispatch = dispatch
    z, _ = moe(torch.tensor([[1.0, 0.0, 0.0, 0.0]]), 1)
    g0 = 1 / (1 + math.exp(-10.0))  # g1 = 4.5e-5 <= 1e-4 is dropped, g0 is kept as is
    assert torch.allclose(z, torch.full((1, 4), 1.0 + math.log(g0)), atol=1e-7)
    assert z[0, 0].item() < 1.0 - 4e-5


@pytest.mark.parametrize("dispatch", ["dense", "sparse"])
def test_moe_zero_sum_becomes_float_eps(dispatch):
    moe = _hand_moe([1.0, 0.0, -1.0, -2.0], [-200.0, -300.0, 0.0, 0.0])
    moe.dispatch = dispatch
    z, _ = moe(torch.tensor([[1.0, 0.0, 0.0, 0.0]]), 1)
    assert torch.allclose(z, torch.full((1, 4), math.log(LOG_ZERO_EPS)))
    assert math.isclose(math.log(LOG_ZERO_EPS), -36.04365338911715)


def test_moe_training_noise_and_load_estimate():
    moe = _hand_moe([1.0, 0.0, -1.0, -2.0], [1.0, 2.0, 5.0, 7.0]).train()
    y = torch.randn(64, 4, generator=torch.Generator().manual_seed(0))
    torch.manual_seed(0)
    z1, aux1 = moe(y, 1)
    z2, aux2 = moe(y, 1)
    assert not torch.equal(z1, z2)  # noisy gating in training mode
    moe.w_noise.requires_grad_(True)
    aux1.backward()
    assert moe.w_noise.grad is not None and moe.w_noise.grad[1].abs().sum() > 0  # through the normal-CDF load


def test_restandardize_by_hand():
    old = torch.tensor([[[1.0, 2.0], [3.0, 4.0]]])  # mean 2.5, unbiased std sqrt(5/3)
    new = torch.tensor([[[0.0, 0.0], [0.0, 2.0]]])  # mean 0.5, unbiased std 1
    s = math.sqrt(5 / 3)
    want = torch.tensor([[[2.5 - 0.5 * s, 2.5 - 0.5 * s], [2.5 - 0.5 * s, 2.5 + 1.5 * s]]])
    assert torch.allclose(restandardize(new, old), want, atol=1e-6)


def test_window_partition_roundtrip_and_order():
    x = torch.arange(2 * 28 * 14, dtype=torch.float32).view(1, 28 * 14, 2)
    w = window_partition(x, 28, 14, 14, 0)
    assert w.shape == (2, 196, 2)
    assert w[1, 0, 0].item() == 2 * (14 * 14)  # the second window starts at row 14
    ws = window_partition(x, 28, 14, 14, 7)
    assert ws[0, 0, 0].item() == 2 * (7 * 14 + 7)  # rolled by -7 on both axes
    assert torch.equal(window_merge(ws, 28, 14, 14, 7), x)


def test_output_is_nearest_reduction_of_the_unpatchified_decoder():
    model = small_model().eval()
    # decoder channel (row r, col q, colour c) = (16 r + q) / 32 - 4 + offset[c]: normalised space, partly clipped
    rq = torch.arange(16).view(16, 1) * 16 + torch.arange(16).view(1, 16)
    pattern = rq.unsqueeze(-1) / 32.0 - 4.0 + torch.tensor([0.0, 0.3, -0.3])
    with torch.no_grad():
        model.decoder_pred.weight.zero_()
        model.decoder_pred.bias.copy_(pattern.reshape(-1))
        a = torch.randn(1, 3, 112, 224)
        fused, aux = model(a, torch.randn(1, 3, 112, 224), "vif", return_aux=True)
    img = pattern.permute(2, 0, 1)  # (3, 16, 16) per patch
    raw_want = img.repeat(1, 14, 28).unsqueeze(0)
    assert torch.equal(aux["raw"], raw_want)
    even = raw_want[..., ::2, ::2]
    want = torch.clip((even * IMAGENET_STD + IMAGENET_MEAN) * 255, 0, 255) / 255
    assert torch.allclose(fused, want, atol=1e-7)
    assert fused.min().item() == 0.0 and fused.max().item() == 1.0  # the clip is active on this pattern


# ---------------------------------------------------------------------------------------------- forward behaviour
def test_forward_shapes_aux_and_input_checks():
    model = small_model().eval()
    a, b = torch.randn(2, 3, 112, 224), torch.randn(2, 3, 112, 224)
    with torch.no_grad():
        fused, aux = model(a, b, task="mff", return_aux=True)
        square = model(a[..., :112], b[..., :112], task=0)
    assert fused.shape == (2, 3, 112, 224) and square.shape == (2, 3, 112, 112)
    assert 0.0 <= fused.min().item() and fused.max().item() <= 1.0
    n = 14 * 28
    assert aux["aux_loss"].shape == () and aux["aux_terms"].shape == (2,)
    assert aux["prompts_enc_a"].shape == (1, 2, n, 1) and aux["prompts_dec_b"].shape == (1, 2, n, 1)
    assert aux["prompts_enc"].shape == (2, 1, 2, n, 1) and torch.equal(aux["prompts_enc"][1], aux["prompts_enc_b"])
    assert aux["raw"].shape == (2, 3, 224, 448) and aux["grid"] == (14, 28)
    assert ((aux["prompts_enc_a"] > 0) & (aux["prompts_enc_a"] < 1)).all()
    assert prompt_loss(aux).shape == ()
    for bad_a, bad_b in [(torch.randn(1, 3, 100, 112),) * 2, (torch.randn(1, 3, 112, 112), torch.randn(1, 3, 112, 224)),
                         (torch.randn(1, 1, 112, 112),) * 2, (torch.zeros(1, 3, 112, 112, dtype=torch.uint8),) * 2]:
        with pytest.raises(InputError):
            model(bad_a, bad_b)
    with pytest.raises(InputError, match="unknown task"):
        model(a, b, task="rgbt")


def test_sources_and_tasks_change_the_output():
    model = small_model()
    with torch.no_grad():
        for mod in model.modules():
            if hasattr(mod, "w_gate"):
                mod.w_gate.normal_()
        model.blocks_MoA[0].modal_shifts.normal_()
    model.eval()
    a, b = torch.randn(1, 3, 112, 112), torch.randn(1, 3, 112, 112)
    with torch.no_grad():
        out = [model(a, b, t) for t in range(3)]
        swapped = model(b, a, 0)
    assert (out[0] - out[1]).abs().max() > 1e-4 and (out[1] - out[2]).abs().max() > 1e-4
    assert (out[0] - swapped).abs().max() > 1e-4  # only source a is decoded: not symmetric


def test_eval_is_deterministic_train_is_noisy():
    model = small_model().eval()
    a, b = torch.randn(1, 3, 112, 112), torch.randn(1, 3, 112, 112)
    with torch.no_grad():
        assert torch.equal(model(a, b, 1), model(a, b, 1))
        model.train()
        torch.manual_seed(1)
        first = model(a, b, 1)
        second = model(a, b, 1)
    assert not torch.equal(first, second)


def test_gradients_reach_only_trainable_parts():
    model = small_model().train()
    a, b = torch.randn(1, 3, 112, 112), torch.randn(1, 3, 112, 112)
    fused, aux = model(a, b, task=1, return_aux=True)
    assert fused.requires_grad
    loss = (fused - 0.5).abs().mean() + prompt_loss(aux) + aux["aux_loss"]
    loss.backward()
    for name, prm in model.named_parameters():
        if prm.requires_grad:
            assert prm.grad is not None, name
        else:
            assert prm.grad is None, name
    shifts = model.blocks_MoA[0].modal_shifts.grad
    assert shifts[2].abs().sum() > 0 and shifts[3].abs().sum() > 0  # rows of task 1 only
    assert shifts[0].abs().sum() == 0 and shifts[5].abs().sum() == 0
    assert model.FusionLayer[0].conv2.weight.grad.abs().sum() > 0
    assert model.Alpha_decoder.grad.abs().sum() > 0
    assert model.blocks_MoA[0].MoA.w_gate.grad[1].abs().sum() > 0


@pytest.mark.slow
def test_grad_checkpointing_gives_the_same_gradients():
    model = small_model().eval()  # eval: no routing noise, so both passes are identical
    a, b = torch.randn(1, 3, 112, 112), torch.randn(1, 3, 112, 112)
    model(a, b, 0).sum().backward()
    want = model.en_relative_position[0].relative_position_bias_table.grad.clone()
    model.zero_grad()
    model.set_grad_checkpointing(True)
    model.train()
    with torch.no_grad():
        for mod in model.modules():
            if hasattr(mod, "noise_eps"):
                mod.train(False)  # keep routing deterministic while the blocks run in training mode
    model(a, b, 0).sum().backward()
    got = model.en_relative_position[0].relative_position_bias_table.grad
    assert torch.allclose(got, want, atol=1e-6)
