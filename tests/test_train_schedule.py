"""fusion.training.schedule, .ema and .checkpoint: learning rate, weight-decay groups, EMA, RNG and checkpoint files."""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch
from torch import nn

from fusion.errors import CheckpointError
from fusion.training.checkpoint import (
    capture_rng,
    find_resume_checkpoint,
    list_checkpoints,
    load_training_checkpoint,
    restore_rng,
    save_training_checkpoint,
)
from fusion.training.ema import ModelEMA
from fusion.training.schedule import build_optimizer, lr_at, param_groups, set_lr


def test_lr_schedule_official_values():
    kw = dict(lr=3e-4, min_lr=1e-5, warmup_epochs=2, epochs=20)
    assert lr_at(0.0, **kw) == 0.0
    assert lr_at(1.0, **kw) == pytest.approx(1.5e-4)
    assert lr_at(2.0, **kw) == pytest.approx(3e-4)
    assert lr_at(11.0, **kw) == pytest.approx(1e-5 + (3e-4 - 1e-5) * 0.5)  # half-way down the half cosine
    assert lr_at(20.0, **kw) == pytest.approx(1e-5)
    assert lr_at(25.0, **kw) == pytest.approx(1e-5)
    lrs = [lr_at(e / 10, **kw) for e in range(0, 200)]
    peak = lrs.index(max(lrs))
    assert all(x <= y for x, y in zip(lrs[:peak], lrs[1:peak + 1]))
    assert all(x >= y for x, y in zip(lrs[peak:], lrs[peak + 1:]))


class _Toy(nn.Module):
    def __init__(self):
        super().__init__()
        self.blocks = nn.Linear(4, 4)  # "backbone"
        self.FusionLayer = nn.Conv2d(4, 4, 3)
        self.Alpha_encoder = nn.Parameter(torch.ones(2))
        self.modal_shifts = nn.Parameter(torch.zeros(6, 4))
        self.frozen = nn.Parameter(torch.ones(3, 3), requires_grad=False)


def test_param_groups_follow_official_weight_decay_rule():
    groups = param_groups(_Toy().named_parameters(), 0.05, backbone_lr_scale=0.1,
                          is_backbone=lambda n: n.startswith("blocks"))
    by_name = {n: (g["weight_decay"], g["lr_scale"]) for g in groups for n in g["names"]}
    assert by_name == {
        "blocks.weight": (0.05, 0.1),
        "blocks.bias": (0.0, 0.1),
        "FusionLayer.weight": (0.05, 1.0),
        "FusionLayer.bias": (0.0, 1.0),
        "Alpha_encoder": (0.0, 1.0),
        "modal_shifts": (0.0, 1.0),
    }
    opt = build_optimizer(groups, 1e-3)
    assert opt.defaults["betas"] == (0.9, 0.95)
    set_lr(opt, 2e-3)
    assert sorted(g["lr"] for g in opt.param_groups) == pytest.approx([2e-4, 2e-4, 2e-3, 2e-3])


def test_ema_really_averages():
    model = nn.Linear(2, 1, bias=False)
    nn.init.zeros_(model.weight)
    ema = ModelEMA(model, decay=0.5)
    with torch.no_grad():
        model.weight.fill_(1.0)
    ema.update(model)  # d = min(0.5, 1/10) = 0.1 -> 0.9
    assert ema.shadow["weight"][0, 0].item() == pytest.approx(0.9)
    with torch.no_grad():
        model.weight.fill_(3.0)
    ema.update(model)  # d = min(0.5, 2/11) -> 0.9 * 2/11 + 3 * 9/11
    assert ema.shadow["weight"][0, 0].item() == pytest.approx(0.9 * 2 / 11 + 3 * 9 / 11)
    avg = ema.averaged_state_dict(model)
    assert avg["weight"][0, 0].item() == pytest.approx(ema.shadow["weight"][0, 0].item())
    assert model.weight[0, 0].item() == 3.0  # the model itself is untouched
    other = ModelEMA(model, decay=0.5)
    other.load_state_dict(ema.state_dict())
    assert other.updates == 2 and torch.equal(other.shadow["weight"], ema.shadow["weight"])


def test_rng_states_roundtrip_through_weights_only_checkpoint(tmp_path):
    random.seed(1)
    np.random.seed(2)
    torch.manual_seed(3)
    random.random()
    np.random.standard_normal()  # leaves a cached gaussian in numpy's state
    state = capture_rng()
    want = (random.random(), np.random.standard_normal(3).tolist(), torch.rand(3))
    path = save_training_checkpoint({"model": {}, "optimizer": {}, "progress": {}, "streams": {}, "rng": state},
                                    tmp_path, 7, keep_last=2)
    loaded = load_training_checkpoint(path)  # weights_only=True inside
    random.seed(99)
    np.random.seed(99)
    torch.manual_seed(99)
    restore_rng(loaded["rng"])
    got = (random.random(), np.random.standard_normal(3).tolist(), torch.rand(3))
    assert got[0] == want[0] and got[1] == want[1] and torch.equal(got[2], want[2])


def test_checkpoint_rotation_and_resume_lookup(tmp_path):
    minimal = {"model": {"w": torch.ones(1)}, "optimizer": {}, "progress": {}, "streams": {}, "rng": {}}
    for it in (2, 4, 6, 8):
        save_training_checkpoint(minimal, tmp_path / "checkpoints", it, keep_last=2)
    assert [i for i, _ in list_checkpoints(tmp_path / "checkpoints")] == [6, 8]
    assert not [p for p in (tmp_path / "checkpoints").iterdir() if p.name.startswith(".")]  # no temp files
    assert find_resume_checkpoint(tmp_path).name == "iter_00000008.pth"
    assert find_resume_checkpoint(tmp_path / "checkpoints" / "iter_00000006.pth").name == "iter_00000006.pth"
    with pytest.raises(CheckpointError, match="no training checkpoint"):
        find_resume_checkpoint(tmp_path / "nothing")
    bare = tmp_path / "model.pth"
    torch.save({"model": {"w": torch.ones(1)}}, bare)
    with pytest.raises(CheckpointError, match="not a training checkpoint"):
        load_training_checkpoint(bare)
    junk = tmp_path / "junk.pth"
    junk.write_bytes(b"not a zip")
    with pytest.raises(CheckpointError, match="cannot read"):
        load_training_checkpoint(junk)
