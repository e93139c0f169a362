"""TC-MoA behind the Fuser interface: specs, shipped weights, checkpoints, batching."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import fusion.fusers.tcmoa as tcmoa_fusers
from fusion.errors import CheckpointError, ConfigError, InputError
from fusion.fusers import create_fuser, list_fusers
from fusion.models import create_model, save_checkpoint


@pytest.fixture(scope="module")
def tiny_ckpt(tmp_path_factory):
    torch.manual_seed(0)
    model = create_model("tcmoa_tiny", depth=4, decoder_depth=4)
    with torch.no_grad():
        for mod in model.modules():
            if hasattr(mod, "w_gate"):
                mod.w_gate.normal_()
    return save_checkpoint(model, tmp_path_factory.mktemp("ckpt") / "tiny.safetensors")


def pair(h, w, seed=0):
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, (h, w, 3), dtype=np.uint8), rng.integers(0, 256, (h, w, 3), dtype=np.uint8)


def test_registered_names():
    assert {"tcmoa_base", "tcmoa_large", "tcmoa_small", "tcmoa_tiny"} <= set(list_fusers())


@pytest.mark.parametrize("name", ["tcmoa_base", "tcmoa_large"])
def test_official_sizes_need_a_checkpoint(name):
    with pytest.raises(CheckpointError, match="YangSun22/TC-MoA") as err:
        create_fuser(name)
    assert f"'{name}:/path/to/checkpoint.pth'" in str(err.value)


def test_tiny_without_shipped_weights(monkeypatch, tmp_path):
    monkeypatch.setitem(tcmoa_fusers.SHIPPED_WEIGHTS, "tcmoa_tiny", tmp_path / "absent.safetensors")
    with pytest.raises(CheckpointError, match="no shipped weights exist yet"):
        create_fuser("tcmoa_tiny")
    with pytest.raises(CheckpointError, match="not found"):
        create_fuser("tcmoa_tiny:" + str(tmp_path / "other.pth"))


def test_first_release_is_kept_as_its_own_fuser():
    v1, current = create_fuser("tcmoa_tiny_v1"), create_fuser("tcmoa_tiny")
    assert v1.settings()["checkpoint"].endswith("tcmoa_tiny_v1.safetensors")
    # v1 was made without a frame margin, the current codec needs one
    assert v1.model.config.frame_margin == 0 and current.model.config.frame_margin == 16
    a, b = pair(48, 64)
    assert not np.array_equal(v1.fuse(a, b, "vif"), current.fuse(a, b, "vif"))
    with pytest.raises(ConfigError, match="fixed weights"):
        create_fuser("tcmoa_tiny_v1:/some/file.safetensors")


def test_tiny_uses_shipped_weights_when_present(monkeypatch, tiny_ckpt):
    monkeypatch.setitem(tcmoa_fusers.SHIPPED_WEIGHTS, "tcmoa_tiny", tiny_ckpt)
    fuser = create_fuser("tcmoa_tiny", device="cpu")
    assert fuser.settings()["checkpoint"] == str(tiny_ckpt)
    a, b = pair(50, 70)
    out = fuser.fuse(a, b, "mef")
    assert out.shape == (50, 70, 3) and out.dtype == np.uint8


def test_spec_with_checkpoint_fuses_and_batches(tiny_ckpt):
    fuser = create_fuser(f"tcmoa_tiny:{tiny_ckpt}", device="cpu", batch_size=2)
    s = fuser.settings()
    assert s["variant"] == "tcmoa_tiny" and s["compat"] == "default" and s["amp_dtype"] is None
    assert s["tile"] is None and s["max_pixels"] == 2_500_000  # whole frames up to 2.5 MP, auto tiles beyond
    assert repr(fuser).startswith("TCMoAFuser(")
    pairs = [pair(40, 60, 1), pair(30, 90, 2), pair(40, 60, 3)]
    batch = fuser.fuse_batch([p[0] for p in pairs], [p[1] for p in pairs], "vif")
    assert [x.shape for x in batch] == [(40, 60, 3), (30, 90, 3), (40, 60, 3)]
    for (a, b), got in zip(pairs, batch):
        assert np.array_equal(got, fuser(a, b, "vif"))
    a, b = pairs[0]
    assert not np.array_equal(fuser(a, b, "vif"), fuser(a, b, "mff"))  # the task selects a router
    with pytest.raises(InputError, match="task"):
        fuser.fuse(a, b, "rgbt")
    with pytest.raises(InputError, match="differ in size"):
        fuser.fuse(a, pairs[1][1])


def test_official_compat_setting(tiny_ckpt):
    fuser = create_fuser(f"tcmoa_tiny:{tiny_ckpt}", device="cpu", compat="official")
    a, b = pair(40, 60)
    out = fuser.fuse(a, b)
    assert out.min() == 0 and out.max() == 255  # the official min-max stretch
    with pytest.raises(InputError, match="compat"):
        create_fuser(f"tcmoa_tiny:{tiny_ckpt}", compat="fastest")
