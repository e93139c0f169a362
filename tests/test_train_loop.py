"""The training loop end to end on a micro TC-MoA and tiny synthetic image folders: the loss falls, outputs appear,
a run killed with SIGKILL and resumed ends bit-identical to an uninterrupted one, and two torchrun processes match
one process with the same global batch."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from fusion.training.checkpoint import list_checkpoints, load_training_checkpoint
from fusion.training.config import load_config
from fusion.training.trainer import Trainer
from fusion.utils.io import write_image

ROOT = Path(__file__).resolve().parents[1]
MICRO = {"embed_dim": 64, "num_heads": 2, "decoder_embed_dim": 64, "decoder_num_heads": 2, "depth": 4,
         "decoder_depth": 4}

RUNNER = """
import json, os, signal, sys
sys.path.insert(0, {root!r})
from fusion.training.trainer import Trainer
cfg = json.load(open(sys.argv[1]))
kill_at = int(sys.argv[2])
resume = sys.argv[3] if len(sys.argv) > 3 else None

def killer(trainer):
    if trainer.iteration == kill_at:
        os.kill(os.getpid(), signal.SIGKILL)

t = Trainer(cfg, resume=resume, callbacks=[killer])
t.fit()
t.close()
"""


@pytest.fixture(scope="module")
def data_root(tmp_path_factory) -> Path:
    """Smooth random scenes: 4 vif pairs (vi/, ir/), 2 mef and 2 mff scenes (input/<scene>/<scene>_A|B)."""
    root = tmp_path_factory.mktemp("train_data")
    rng = np.random.default_rng(0)

    def scene(h=120, w=128):
        coarse = rng.random((h // 8 + 1, w // 8 + 1, 3))
        img = np.kron(coarse, np.ones((8, 8, 1)))[:h, :w]
        return (np.clip(0.8 * img + 0.2 * rng.random((h, w, 3)), 0, 1) * 255).astype(np.uint8)

    for i in range(4):
        vis = scene()
        write_image(root / "vif" / "vi" / f"{i:02d}.png", vis)
        write_image(root / "vif" / "ir" / f"{i:02d}.png", (255 - vis.mean(2)).astype(np.uint8))
    for task in ("mef", "mff"):
        for i in range(2):
            img = scene()
            folder = root / task / "input" / f"s{i}"
            dark = (img * 0.4).astype(np.uint8)
            write_image(folder / f"s{i}_A.png", dark)
            write_image(folder / f"s{i}_B.png", np.clip(img.astype(int) + 60, 0, 255).astype(np.uint8))
    return root


def micro_config(data_root: Path, out: Path, **train) -> dict:
    tasks = {
        "vif": {"datasets": [str(data_root / "vif")], "batch_size": 2, "crop_scale": [0.3, 1.0]},
        "mef": {"datasets": [{"root": str(data_root / "mef"), "layout": "mefb"}], "batch_size": 1},
        "mff": {"datasets": [{"root": str(data_root / "mff"), "layout": "mfifb"}], "batch_size": 1},
    }
    cfg = {
        "model": {"name": "tcmoa_tiny", "overrides": dict(MICRO)},
        "data": {"tasks": tasks, "crop_size": 112, "num_workers": 0},
        "train": {"epochs": 3, "warmup_epochs": 0, "lr": 1e-3, "device": "cpu", "deterministic": True,
                  "threads": 1, **train},
        "loss": {"warmup_epochs": 0},
        "checkpoint": {"every_iters": 2, "keep_last": 5},
        "log": {"every_iters": 1, "tensorboard": False, "progress": False, "samples_every_iters": 0},
        "output_dir": str(out),
    }
    return load_config(None, cfg)


def _csv(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as fh:
        return list(csv.DictReader(fh))


def test_loss_falls_on_a_fixed_batch(data_root, tmp_path):
    """Same crop every step (one pair, whole image, no flip): the optimiser must reduce the loss."""
    cfg = micro_config(data_root, tmp_path / "run", epochs=8, lr=2e-3)
    cfg["data"]["tasks"] = {"vif": {"datasets": [{"root": str(data_root / "vif"), "include": ["01"]}],
                                    "batch_size": 1, "crop_scale": [1.0, 1.0]}}
    cfg["data"]["crop_ratio"] = [128 / 120, 128 / 120]
    cfg["data"]["hflip"] = 0.0
    cfg["model"]["router_noise"] = False
    cfg["log"]["samples_every_iters"] = 4
    cfg["log"]["tensorboard"] = True
    trainer = Trainer(cfg)
    out = trainer.fit()
    trainer.close()
    losses = [float(r["vif/loss"]) for r in _csv(tmp_path / "run" / "metrics.csv")]
    assert len(losses) == 8
    assert all(b < a for a, b in zip(losses, losses[1:])), losses  # deterministic batch: every step helps
    assert losses[-1] < 0.97 * losses[0], losses
    assert out is not None and out.name == "model_final.safetensors"
    import fusion

    model = fusion.create_model("tcmoa_tiny", checkpoint=out)  # the exported weights load strictly
    assert model.config.embed_dim == 64
    assert sorted(p.name for p in (tmp_path / "run" / "samples").iterdir()) == ["iter_00000004.png",
                                                                               "iter_00000008.png"]
    assert any((tmp_path / "run" / "tensorboard").iterdir())


@pytest.mark.slow
def test_kill_and_resume_equals_uninterrupted(data_root, tmp_path):
    runner = tmp_path / "runner.py"
    runner.write_text(RUNNER.format(root=str(ROOT)))
    env = {**os.environ, "OMP_NUM_THREADS": "1"}

    def run(cfg: dict, kill_at: int, resume: str | None = None) -> int:
        path = tmp_path / f"cfg_{Path(cfg['output_dir']).name}.json"
        path.write_text(json.dumps(cfg))
        args = [sys.executable, str(runner), str(path), str(kill_at)] + ([resume] if resume else [])
        return subprocess.run(args, env=env, capture_output=True, text=True, timeout=900).returncode

    # 2 iterations per epoch (vif: 4 pairs / batch 2), 3 epochs, checkpoints every 2 iterations and at the end
    full = micro_config(data_root, tmp_path / "full", epochs=3)
    full["ema"] = {"enabled": True, "decay": 0.9, "export": True}
    assert run(full, kill_at=0) == 0
    broken = json.loads(json.dumps(full))
    broken["output_dir"] = str(tmp_path / "broken")
    assert run(broken, kill_at=3) == -9  # killed after iteration 3; the newest checkpoint is iteration 2
    assert [i for i, _ in list_checkpoints(tmp_path / "broken" / "checkpoints")] == [2]
    assert run(broken, kill_at=0, resume="auto") == 0

    a = load_training_checkpoint(tmp_path / "full" / "checkpoints" / "iter_00000006.pth")
    b = load_training_checkpoint(tmp_path / "broken" / "checkpoints" / "iter_00000006.pth")
    assert a["model"].keys() == b["model"].keys()
    for k in a["model"]:
        assert torch.equal(a["model"][k], b["model"][k]), k
    for k, v in a["ema"]["shadow"].items():
        assert torch.equal(v, b["ema"]["shadow"][k]), k
    sa, sb = a["optimizer"]["state"], b["optimizer"]["state"]
    assert all(torch.equal(sa[i]["exp_avg"], sb[i]["exp_avg"]) for i in sa)
    assert a["streams"] == b["streams"]
    rows_a, rows_b = _csv(tmp_path / "full" / "metrics.csv"), _csv(tmp_path / "broken" / "metrics.csv")
    assert [r["iteration"] for r in rows_b] == [str(i) for i in range(1, 7)]  # no duplicated rows after resuming
    assert [r["vif/loss"] for r in rows_a] == [r["vif/loss"] for r in rows_b]


@pytest.mark.slow
def test_torchrun_two_processes_match_one(data_root, tmp_path):
    """Same global batch (2 x 1 per task vs 1 x 2), routing without noise, decomposable losses (warm-up phase,
    no aux): the weights after 3 steps agree to float tolerance."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}

    def cfg_for(name: str, per_process: int) -> Path:
        cfg = micro_config(data_root, tmp_path / name, epochs=3, lr=1e-3, max_iters=3)
        cfg["model"]["router_noise"] = False
        cfg["model"]["overrides"]["aux_loss_coef"] = 0.0
        cfg["loss"]["warmup_epochs"] = 10
        for task in ("vif", "mef", "mff"):
            cfg["data"]["tasks"][task]["batch_size"] = per_process
        cfg["checkpoint"]["every_iters"] = 3
        path = tmp_path / f"{name}.yaml"
        path.write_text(json.dumps(cfg))  # JSON is YAML
        return path

    script = str(ROOT / "pipelines" / "train_fusion.py")
    one = subprocess.run([sys.executable, script, "--config", str(cfg_for("one", 2))], env=env,
                         capture_output=True, text=True, timeout=900)
    assert one.returncode == 0, one.stderr[-2000:]
    two = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                          script, "--config", str(cfg_for("two", 1))], env=env, capture_output=True, text=True,
                         timeout=900)
    assert two.returncode == 0, two.stderr[-3000:]
    a = load_training_checkpoint(tmp_path / "one" / "checkpoints" / "iter_00000003.pth")
    b = load_training_checkpoint(tmp_path / "two" / "checkpoints" / "iter_00000003.pth")
    assert b["rng"]["world_size"] == 2 and len(b["rng"]["per_rank"]) == 2
    for k, va in a["model"].items():
        vb = b["model"][k]
        assert torch.allclose(va, vb, atol=2e-5, rtol=1e-4), (k, (va - vb).abs().max().item())
    import fusion

    torch.manual_seed(0)  # the trainer builds its model right after seeding with train.seed
    init = fusion.create_model("tcmoa_tiny", **MICRO).state_dict()
    key = "FusionLayer.0.conv1.weight"
    assert (a["model"][key] - init[key]).abs().max() > 1e-4  # training moved the weights (the test can fail)
    la = [float(r["vif/loss"]) for r in _csv(tmp_path / "one" / "metrics.csv")]
    lb = [float(r["vif/loss"]) for r in _csv(tmp_path / "two" / "metrics.csv")]
    assert len(la) == 3 and la == pytest.approx(lb, rel=1e-4)


@pytest.mark.parametrize("amp", ["bf16", "fp16"])
def test_amp_sum_step_clip_unfreeze_ema(data_root, tmp_path, amp):
    cfg = micro_config(data_root, tmp_path / "run", epochs=1, amp=amp, step_mode="sum", grad_clip=1.0,
                       unfreeze=True, backbone_lr_scale=0.1, freeze=[r"^decoder_pred\."])
    cfg["ema"] = {"enabled": True, "decay": 0.9, "export": True}
    cfg["checkpoint"]["every_iters"] = None
    trainer = Trainer(cfg)
    names = set(trainer.param_names)
    assert "blocks.0.attn.qkv.weight" in names and "pos_embed" not in names and "decoder_pred.weight" not in names
    scales = sorted({g["lr_scale"] for g in trainer.optimizer.param_groups})
    assert scales == [0.1, 1.0]
    assert (trainer.scaler is not None) == (amp == "fp16")
    before = trainer.module.blocks[0].attn.qkv.weight.detach().clone()
    trainer.fit()
    trainer.close()
    assert not torch.equal(before, trainer.module.blocks[0].attn.qkv.weight)  # the backbone trained
    assert [i for i, _ in list_checkpoints(tmp_path / "run" / "checkpoints")] == [2]  # epoch end only
    ck = load_training_checkpoint(tmp_path / "run" / "checkpoints" / "iter_00000002.pth")
    assert ck["ema"]["updates"] == 2 and (ck["scaler"] is not None) == (amp == "fp16")
