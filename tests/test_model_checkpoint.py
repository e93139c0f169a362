"""Checkpoint reading/writing, strictness, the old-name map, MAE backbone initialisation and its download."""

from __future__ import annotations

import hashlib
import logging

import pytest
import torch

from fusion.errors import CheckpointError
from fusion.models import (
    create_model,
    is_backbone_key,
    load_checkpoint,
    load_pretrained_backbone,
    read_checkpoint,
    rename_legacy_keys,
    save_checkpoint,
)

SMALL = {"depth": 4, "decoder_depth": 4}


def make(seed: int = 0, **overrides):
    torch.manual_seed(seed)
    kw = dict(SMALL)
    kw.update(overrides)
    model = create_model("tcmoa_tiny", **kw)
    with torch.no_grad():  # non-trivial values everywhere, so that a wrong copy shows
        for name, prm in model.named_parameters():
            if name.endswith(("w_gate", "w_noise", "modal_shifts", "Alpha_encoder")):
                prm.normal_(std=0.1)
    return model


def assert_same_state(m1, m2):
    s1, s2 = m1.state_dict(), m2.state_dict()
    assert s1.keys() == s2.keys()
    for k in s1:
        assert torch.equal(s1[k], s2[k]), k


def legacy(sd: dict) -> dict:
    """The current names mapped back to the pre-release ones, modal shifts stored per row as ``SSF_beta.{j}``."""
    out = {}
    for key, value in sd.items():
        new = key
        if "blocks_MoA" in key:
            new = new.replace("blocks_MoA", "blocks_SSF_rgb").replace(".MoA.", ".mlp.")
            new = new.replace("dimReduction", "SE_en_linear")
            if new.endswith("modal_shifts"):
                for j, row in enumerate(value):
                    out[new.replace("modal_shifts", f"SSF_beta.{j}")] = row.clone()
                continue
        new = new.replace("de_FusionLayer", "de_projAdapter")
        if new.startswith("FusionLayer"):
            new = new.replace("FusionLayer", "en_projAdapter")
        out[new] = value
    return out


@pytest.mark.parametrize("suffix", [".pth", ".safetensors"])
def test_save_load_roundtrip(tmp_path, suffix):
    model = make()
    path = save_checkpoint(model, tmp_path / f"ckpt{suffix}")
    assert path.is_file() and not list(tmp_path.glob(".*tmp*"))
    sd, cfg = read_checkpoint(path)
    assert cfg["depth"] == 4 and cfg["name"] == "tcmoa_tiny"
    # the stored config rebuilds the 4-block variant without repeating the overrides
    loaded = create_model("tcmoa_tiny", checkpoint=path)
    assert loaded.config.depth == 4
    assert_same_state(model, loaded)
    a, b = torch.randn(1, 3, 112, 112), torch.randn(1, 3, 112, 112)
    with torch.no_grad():
        assert torch.equal(model.eval()(a, b, 2), loaded.eval()(a, b, 2))


def test_omit_zeros_stores_zero_tensors_as_metadata_only(tmp_path):
    model = make()
    with torch.no_grad():
        model.blocks[0].mlp.fc1.weight.zero_()  # a large tensor that is all zeros
    full = save_checkpoint(model, tmp_path / "full.safetensors")
    small = save_checkpoint(model, tmp_path / "small.safetensors", omit_zeros=True)
    assert small.stat().st_size < full.stat().st_size - model.blocks[0].mlp.fc1.weight.numel() * 4 + 4096
    from safetensors import safe_open

    with safe_open(str(small), framework="pt") as f:
        assert "blocks.0.mlp.fc1.weight" not in f.keys()
    sd_full, _ = read_checkpoint(full)
    sd_small, _ = read_checkpoint(small)
    assert sd_full.keys() == sd_small.keys()
    for key, value in sd_full.items():
        assert sd_small[key].dtype == value.dtype and torch.equal(sd_small[key], value), key
    assert_same_state(model, create_model("tcmoa_tiny", checkpoint=small))
    with pytest.raises(ValueError, match="omit_zeros needs a .safetensors path"):
        save_checkpoint(model, tmp_path / "x.pth", omit_zeros=True)


def test_official_layout_bare_dict_and_module_prefix(tmp_path):
    model = make()
    sd = model.state_dict()
    torch.save({"model": sd}, tmp_path / "official.pth")
    torch.save({f"module.{k}": v for k, v in sd.items()}, tmp_path / "ddp.pth")
    for name in ("official.pth", "ddp.pth"):
        other = make(seed=1)
        load_checkpoint(other, tmp_path / name)
        assert_same_state(model, other)


def test_missing_and_unexpected_keys_are_named(tmp_path):
    model = make()
    sd = dict(model.state_dict())
    del sd["FusionLayer.0.conv2.weight"]
    sd["blocks_MoA.0.extra_thing"] = torch.zeros(3)
    torch.save({"model": sd}, tmp_path / "bad.pth")
    with pytest.raises(CheckpointError) as err:
        create_model("tcmoa_tiny", checkpoint=tmp_path / "bad.pth")
    msg = str(err.value)
    assert "FusionLayer.0.conv2.weight" in msg and "blocks_MoA.0.extra_thing" in msg and "bad.pth" in msg
    assert "\n" not in msg
    # non-strict: loads the rest and reports
    other = make(seed=1)
    report = load_checkpoint(other, tmp_path / "bad.pth", strict=False)
    assert report["missing"] == ["FusionLayer.0.conv2.weight"]
    assert report["unexpected"] == ["blocks_MoA.0.extra_thing"]
    assert torch.equal(other.FusionLayer[0].conv1.weight, model.FusionLayer[0].conv1.weight)


def test_shape_mismatch_is_an_error(tmp_path):
    model = make()
    sd = dict(model.state_dict())
    sd["decoder_pred.bias"] = torch.zeros(10)
    with pytest.raises(CheckpointError, match=r"decoder_pred.bias \(10,\)"):
        load_checkpoint(make(), sd)
    path = save_checkpoint(model, tmp_path / "t.pth")
    with pytest.raises(CheckpointError, match="saved from tcmoa_tiny"):
        create_model("tcmoa_small", checkpoint=path)
    torch.save({"model": model.state_dict()}, path)  # official layout: no stored config, shapes decide
    with pytest.raises(CheckpointError, match="shape mismatch for tcmoa_small"):
        create_model("tcmoa_small", checkpoint=path, depth=4, decoder_depth=4)


def test_constant_buffers_checked_not_loaded():
    model = make()
    sd = dict(model.state_dict())
    for k in [k for k in sd if k.endswith(("relative_position_index", "MoA.mean", "MoA.std"))]:
        del sd[k]
    report = load_checkpoint(make(seed=2), sd)  # missing constants are fine
    assert report["checked"] == []
    sd = dict(model.state_dict())
    report = load_checkpoint(make(seed=2), sd)
    assert len(report["checked"]) == 4 + 2 * 2  # 4 tables, 2 adapters x (mean, std)
    sd["en_relative_position.1.relative_position_index"] = sd["en_relative_position.1.relative_position_index"] + 1
    with pytest.raises(CheckpointError, match="en_relative_position.1.relative_position_index"):
        load_checkpoint(make(), sd)
    sd = dict(model.state_dict())
    sd["decoder_blocks_MoA.0.MoA.std"] = torch.tensor([2.0])
    with pytest.raises(CheckpointError, match="MoA.std"):
        load_checkpoint(make(), sd)


def test_missing_modal_shifts_become_zeros(caplog):
    model = make()
    sd = {k: v for k, v in model.state_dict().items() if not k.endswith("modal_shifts")}
    other = make(seed=3)
    assert other.blocks_MoA[0].modal_shifts.abs().sum() > 0
    with caplog.at_level(logging.INFO, logger="fusion.models.checkpoint"):
        report = load_checkpoint(other, sd)
    assert sorted(report["zero_filled"]) == ["blocks_MoA.0.modal_shifts", "decoder_blocks_MoA.0.modal_shifts"]
    assert other.blocks_MoA[0].modal_shifts.abs().sum() == 0
    assert "modal shifts" in caplog.text


def test_legacy_names_load(tmp_path):
    model = make()
    old = legacy(model.state_dict())
    assert "blocks_SSF_rgb.0.mlp.w_gate" in old and "decoder_blocks_SSF_rgb.0.SSF_beta.5" in old
    assert "en_projAdapter.0.conv1.weight" in old and "de_projAdapter.0.conv3.weight" in old
    torch.save({"model": old}, tmp_path / "old.pth")
    other = make(seed=4)
    load_checkpoint(other, tmp_path / "old.pth")
    assert_same_state(model, other)


def test_rename_legacy_keys_strings():
    sd = {k: torch.zeros(1) for k in (
        "blocks_SSF_rgb.2.SE_en_linear.weight", "decoder_blocks_SSF_rgb.1.mlp.experts.3.fc2.bias",
        "blocks_SSF_rgb.0.SSF_beta", "en_projAdapter.1.conv2.weight", "de_projAdapter.0.conv1.weight",
        "blocks.3.mlp.fc1.weight")}
    assert sorted(rename_legacy_keys(sd)) == sorted([
        "blocks_MoA.2.dimReduction.weight", "decoder_blocks_MoA.1.MoA.experts.3.fc2.bias",
        "blocks_MoA.0.modal_shifts", "FusionLayer.1.conv2.weight", "de_FusionLayer.0.conv1.weight",
        "blocks.3.mlp.fc1.weight"])


class Payload:
    """Stands for an arbitrary pickled object, which weights_only loading must refuse."""


def test_untrusted_pickles_are_refused(tmp_path):
    torch.save({"model": {"x": torch.zeros(1)}, "payload": Payload()}, tmp_path / "evil.pth")
    with pytest.raises(CheckpointError, match="could run code"):
        create_model("tcmoa_tiny", checkpoint=tmp_path / "evil.pth")
    (tmp_path / "junk.safetensors").write_bytes(b"not a safetensors file")
    with pytest.raises(CheckpointError, match="junk.safetensors"):
        read_checkpoint(tmp_path / "junk.safetensors")
    with pytest.raises(CheckpointError, match="not found"):
        create_model("tcmoa_tiny", checkpoint=tmp_path / "nope.pth")


def test_trainable_only_checkpoint_over_pretrained_backbone(tmp_path):
    model = make()
    path = save_checkpoint(model, tmp_path / "adapters.safetensors", trainable_only=True)
    sd, _ = read_checkpoint(path)
    assert sd and not any(is_backbone_key(k) for k in sd)
    mae = {k: v for k, v in model.state_dict().items() if is_backbone_key(k)}
    other = create_model("tcmoa_tiny", checkpoint=path, pretrained_backbone={"model": mae}, strict=False)
    assert_same_state(model, other)


def test_new_task_rows_from_a_three_task_checkpoint():
    model = make()
    bigger = make(seed=5, num_tasks=4)
    with pytest.raises(CheckpointError, match="w_gate"):
        load_checkpoint(bigger, model.state_dict())
    load_checkpoint(bigger, model.state_dict(), allow_new_tasks=True)
    assert torch.equal(bigger.blocks_MoA[0].MoA.w_gate[:3], model.blocks_MoA[0].MoA.w_gate)
    assert torch.equal(bigger.blocks_MoA[0].modal_shifts[:6], model.blocks_MoA[0].modal_shifts)


def mae_state(model) -> dict:
    sd = {k: v.clone() + 0.01 for k, v in model.state_dict().items() if is_backbone_key(k)}
    sd["mask_token"] = torch.zeros(1, 1, model.config.decoder_embed_dim)
    return {"model": sd}


def test_pretrained_backbone_from_file(tmp_path):
    src = make()
    mae = mae_state(src)
    torch.save(mae, tmp_path / "mae_visualize_tiny.pth")
    model = create_model("tcmoa_tiny", pretrained_backbone=tmp_path / "mae_visualize_tiny.pth", **SMALL)
    assert torch.equal(model.blocks[2].attn.qkv.weight, mae["model"]["blocks.2.attn.qkv.weight"])
    assert torch.equal(model.decoder_pos_embed, mae["model"]["decoder_pos_embed"])
    assert not model.blocks[2].attn.qkv.weight.requires_grad
    # TC-MoA parts keep their initialisation: routers zero, alpha 0.5
    assert model.blocks_MoA[0].MoA.w_gate.abs().sum() == 0 and model.Alpha_encoder[0] == 0.5
    broken = dict(mae["model"])
    del broken["decoder_pred.weight"]
    with pytest.raises(CheckpointError, match="decoder_pred.weight"):
        load_pretrained_backbone(model, {"model": broken})
    with pytest.raises(CheckpointError, match="no public MAE weights"):
        create_model("tcmoa_tiny", pretrained_backbone=True)


def test_pretrained_backbone_download_with_hash(tmp_path):
    src = make()
    mae = mae_state(src)
    served = tmp_path / "served" / "mae_visualize_vit_tiny.pth"
    served.parent.mkdir()
    torch.save(mae, served)
    digest = hashlib.sha256(served.read_bytes()).hexdigest()
    cache = tmp_path / "cache"
    url = served.as_uri()
    model = create_model("tcmoa_tiny", pretrained_backbone=True, mae_url=url, mae_sha256=digest[:12],
                         cache_dir=cache, **SMALL)
    assert (cache / "mae_visualize_vit_tiny.pth").is_file()
    assert torch.equal(model.norm.weight, mae["model"]["norm.weight"])
    with pytest.raises(CheckpointError, match="SHA-256"):
        create_model("tcmoa_tiny", pretrained_backbone=url, mae_sha256="0123456789abcdef", cache_dir=cache, **SMALL)
    with pytest.raises(CheckpointError, match="cannot download"):
        create_model("tcmoa_tiny", pretrained_backbone=(tmp_path / "absent.pth").as_uri(), cache_dir=cache, **SMALL)


def test_official_mae_urls_are_configured():
    assert create_model("tcmoa_base", device="meta").config.mae_url == (
        "https://dl.fbaipublicfiles.com/mae/visualize/mae_visualize_vit_base.pth")
    assert create_model("tcmoa_large", device="meta").config.mae_url.endswith("mae_visualize_vit_large_ganloss.pth")
