"""End-to-end finetuning (downstream.e2e): the differentiable segmenter bridge, gradients reaching the TC-MoA
adapters and never the frozen backbone, schedules, checkpoints (+ exact resumption), the ``tcmoa_e2e`` fuser, the
YOLO loss bridge and the command line. Everything runs on 112x112 synthetic scenes with a 4+4-block tcmoa_tiny."""

from __future__ import annotations

import copy
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from _e2e_common import CODEC, assert_resume_is_exact, e2e_config, one_thread  # noqa: F401  (autouse fixture)

from fusion.errors import CheckpointError, ConfigError
from fusion.utils.io import read_image

ROOT = Path(__file__).resolve().parents[1]
SMALL = {"depth": 4, "decoder_depth": 4}  # one encoder + one decoder TC-MoA module, real (random) frozen blocks


@pytest.fixture(scope="module")
def mfnet_root(tmp_path_factory) -> Path:
    from fusion.data.synthetic import write_mfnet

    return write_mfnet(tmp_path_factory.mktemp("e2e") / "mfnet", n=10, height=112, width=112,
                       split=(0.6, 0.2, 0.2))


def _cfg(root: Path, out: Path, **sections) -> dict:
    return e2e_config(root, out, iters=2, base={"model": {"init": "random", "overrides": dict(SMALL)}}, **sections)


# ---------------------------------------------------------------------------------------------------- config
def test_defaults_are_the_shipped_defaults_file():
    from downstream.e2e.config import DEFAULTS, load_config
    from fusion.utils.config import config_path, read_config_file

    assert DEFAULTS == read_config_file(config_path("e2e/defaults.py"))
    demo = load_config(ROOT / "configs" / "e2e" / "tcmoa-tiny_fcn-slim_mfnet-synthetic.py")
    assert demo["schedule"]["mode"] == "joint" and demo["train"]["iters"] > demo["train"]["seg_warmup_iters"]


@pytest.mark.parametrize("override, match", [
    ({"train": {"itrs": 5}}, "unknown config key 'train.itrs'"),
    ({"data": {"crop_size": [100, 112]}}, "multiples of 112"),
    ({"schedule": {"mode": "sometimes"}}, "schedule.mode"),
    ({"train": {"iters": 5, "seg_warmup_iters": 6}}, "exceeds"),
    ({"data": {"synthetic": {"thermal_crossover": 1.5}}}, r"thermal_crossover=1.5: expected a probability"),
])
def test_config_errors_name_the_key(override, match):
    from downstream.e2e.config import load_config

    with pytest.raises(ConfigError, match=match):
        load_config(None, override)


def test_schedule_phases():
    from downstream.e2e.config import load_config
    from downstream.e2e.trainer import lambda_seg_at, phase_at

    cfg = load_config(None, {"train": {"iters": 20, "seg_warmup_iters": 2},
                             "schedule": {"mode": "alternating", "seg_iters": 2, "fusion_iters": 3,
                                          "lambda_seg_growth": 1.0}})
    assert [phase_at(cfg, i) for i in range(9)] == ["frozen", "frozen", "seg", "seg", "fusion", "fusion", "fusion",
                                                    "seg", "seg"]
    assert lambda_seg_at(cfg, 3) == 1.0 and lambda_seg_at(cfg, 7) == 2.0
    cfg["schedule"]["mode"] = "joint"
    assert [phase_at(cfg, i) for i in range(4)] == ["frozen", "frozen", "joint", "joint"]


# ---------------------------------------------------------------------------------------------------- bridge
@pytest.fixture(scope="module")
def segmenter():
    from downstream.e2e.model import build_seg_model

    torch.manual_seed(0)
    seg, _ = build_seg_model("configs/seg/fcn_r18-slim_mfnet-synthetic.py", crop_size=(112, 112))
    return seg


def test_segmenter_inputs_equal_the_data_preprocessor(segmenter):
    from downstream.e2e.bridge import segmenter_inputs

    rng = np.random.default_rng(0)
    img = rng.integers(0, 256, (112, 112, 3), dtype=np.uint8)
    bgr = torch.from_numpy(img[:, :, ::-1].copy()).permute(2, 0, 1)  # what mmseg's pipeline hands over
    ref = segmenter.data_preprocessor({"inputs": [bgr], "data_samples": None}, training=False)["inputs"]
    ours = segmenter_inputs(segmenter, torch.from_numpy(img).permute(2, 0, 1)[None].float() / 255)
    assert ours.shape == ref.shape == (1, 3, 112, 112)
    assert torch.allclose(ours, ref, atol=1e-4)
    # a smaller image is padded like stack_batch: pad_val after normalisation, to the preprocessor's size
    small = segmenter_inputs(segmenter, torch.rand(1, 3, 100, 104))
    assert small.shape == (1, 3, 112, 112) and torch.all(small[..., 100:, :] == 0)


def test_segmentation_loss_is_differentiable_and_ignores_255(segmenter):
    from downstream.e2e.bridge import segmentation_logits, segmentation_loss
    from downstream.e2e.model import build_seg_model

    torch.manual_seed(0)
    fused = torch.rand(2, 3, 112, 112, requires_grad=True)
    labels = torch.randint(0, 9, (2, 112, 112))
    loss, logs = segmentation_loss(segmenter, fused, labels)
    loss.backward()
    assert "decode.loss_ce" in logs and abs(loss.item() - logs["decode.loss_ce"]) < 1e-5
    assert fused.grad is not None and fused.grad.abs().sum() > 0
    # the class-weighted demo loss accepts void pixels (downstream._compat patches mmseg 1.2.2's cross-entropy)
    ignored, _ = segmentation_loss(segmenter, fused.detach(), torch.full((2, 112, 112), 255))
    assert float(ignored) == 0.0
    plain, _ = build_seg_model("configs/seg/fcn_r18-slim_mfnet-synthetic.py", crop_size=(112, 112),
                               cfg_options={"model.decode_head.loss_decode.class_weight": None})
    ignored, _ = segmentation_loss(plain, fused.detach(), torch.full((2, 112, 112), 255))
    assert float(ignored) == 0.0
    half = labels.clone()
    half[:, 56:] = 255
    plain.eval()  # no dropout, fixed BN statistics: the loss is a function of the logits alone
    with torch.no_grad():
        got, _ = segmentation_loss(plain, fused.detach(), half)
        expected = torch.nn.functional.cross_entropy(segmentation_logits(plain, fused.detach()), half,
                                                     ignore_index=255)  # mean over the valid pixels
    assert float(got) > 0 and abs(float(got) - float(expected)) < 1e-4
    segmenter.eval()
    with torch.no_grad():
        assert segmentation_logits(segmenter, fused[:1]).shape == (1, 9, 112, 112)
    segmenter.train()
    with pytest.raises(ValueError, match=r"\(B, 3, H, W\)"):
        segmentation_loss(segmenter, torch.rand(2, 112, 112), labels)


# ---------------------------------------------------------------------------------------------------- training
def _is_backbone(name: str) -> bool:
    from fusion.models import is_backbone_key

    return is_backbone_key(name)


def test_joint_iterations_train_adapters_and_segmenter_never_the_backbone(mfnet_root, tmp_path):
    from downstream.e2e.trainer import E2ETrainer

    trainer = E2ETrainer(_cfg(mfnet_root, tmp_path / "run", train={"iters": 2, "seg_warmup_iters": 0}))
    try:
        fuser, seg = trainer.fuser, trainer.segmenter
        assert trainer.fusion_init == "random"
        assert all(not p.requires_grad for n, p in fuser.named_parameters() if _is_backbone(n))

        # one joint forward/backward: gradients reach the encoder adapter through the frozen blocks behind it
        batch = trainer.stream.dataset[(0, 0)], trainer.stream.dataset[(1, 0)]
        a, b = torch.stack([x["a"] for x in batch]), torch.stack([x["b"] for x in batch])
        labels = torch.stack([x["label"] for x in batch])
        trainer.module.set_modes(fuser_train=True, seg_train=True)
        out = trainer.module(a, b, labels, fusion_grad=True)
        out["loss"].backward()
        grads = {n: p.grad for n, p in fuser.named_parameters()}
        assert all(g is None for n, g in grads.items() if _is_backbone(n))
        for module in ("blocks_MoA.0.", "FusionLayer.0.", "decoder_blocks_MoA.0.", "de_FusionLayer.0.",
                       "Alpha_encoder", "blocks_MoA.0.MoA.w_gate"):
            norm = sum(float(g.abs().sum()) for n, g in grads.items() if n.startswith(module) and g is not None)
            assert norm > 0, module
        assert sum(float(p.grad.abs().sum()) for p in seg.parameters() if p.grad is not None) > 0
        trainer.optimizer.zero_grad(set_to_none=True)

        before_f = copy.deepcopy(fuser.state_dict())
        before_s = copy.deepcopy(seg.state_dict())
        trainer.fit()
        after_f = fuser.state_dict()
        for k, v in before_f.items():
            if _is_backbone(k):
                assert torch.equal(v, after_f[k]), k
        changed = [k for k, v in before_f.items() if not _is_backbone(k) and not torch.equal(v, after_f[k])]
        assert any(k.startswith("blocks_MoA.0.") for k in changed)
        assert any(k.startswith("FusionLayer.0.") for k in changed)
        assert any(k.startswith("decoder_blocks_MoA.0.") for k in changed)
        assert any(not torch.equal(v, seg.state_dict()[k]) for k, v in before_s.items() if v.is_floating_point())
    finally:
        trainer.close()
    rows = (tmp_path / "run" / "metrics.csv").read_text().splitlines()
    assert rows[0].startswith("iteration,epoch,lr,seconds,train/loss") and len(rows) == 3
    assert float(rows[-1].split(",")[rows[0].split(",").index("train/fusion_step")]) == 1.0


def test_frozen_schedule_and_freeze_patterns_keep_the_fuser(mfnet_root, tmp_path):
    from downstream.e2e.trainer import E2ETrainer

    cfg = _cfg(mfnet_root, tmp_path / "frozen", model=CODEC, schedule={"mode": "frozen"})
    trainer = E2ETrainer(cfg)
    try:
        before = copy.deepcopy(trainer.fuser.state_dict())
        trainer.fit()
        assert all(torch.equal(v, trainer.fuser.state_dict()[k]) for k, v in before.items())
        assert len(trainer._frozen_cache) == 4  # 2 iterations x 2 crops, each fused once
    finally:
        trainer.close()
    with pytest.raises(ConfigError, match="matches no parameter"):
        E2ETrainer(_cfg(mfnet_root, tmp_path / "bad", model={"freeze": ["nothing.*"]}))


def test_resume_is_exact_and_export_feeds_the_fuser(mfnet_root, tmp_path):
    from downstream.e2e.checkpoint import export_parts, load_e2e_checkpoint
    from downstream.e2e.trainer import E2ETrainer

    full = E2ETrainer(_cfg(mfnet_root, tmp_path / "full", model=CODEC))
    try:
        final = full.fit()
    finally:
        full.close()

    cfg = _cfg(mfnet_root, tmp_path / "cut", model=CODEC, checkpoint={"every_iters": 1, "keep_last": 2})
    assert_resume_is_exact(full, cfg, stop_at=1)  # killed after the frozen-fusion iteration

    # the exported pair: safetensors, both parts, readable as a fuser spec
    ck = load_e2e_checkpoint(final)
    assert ck.meta["schedule"] == "joint" and ck.meta["iterations"] == 2 and ck.meta["fusion_init"] == "codec"
    assert set(ck.segmenter) == set(full.segmenter.state_dict())
    import downstream.e2e.fuser  # noqa: F401  (registered by fusion.fusers' providers once the lead lists it)
    from fusion.fusers import create_fuser
    from fusion.models import fuse_arrays

    fuser = create_fuser(f"tcmoa_e2e:{final}", device="cpu")
    assert fuser.name == "tcmoa_e2e" and fuser.settings()["e2e_schedule"] == "joint"
    rng = np.random.default_rng(1)
    a = rng.integers(0, 256, (90, 130, 3), dtype=np.uint8)
    b = rng.integers(0, 256, (90, 130, 3), dtype=np.uint8)
    assert np.array_equal(fuser.fuse(a, b), fuse_arrays(full.fuser.eval(), a, b, "vif"))

    parts = export_parts(final, tmp_path / "parts")
    import fusion

    plain = fusion.create_model("tcmoa_tiny", checkpoint=parts["fusion"])
    assert all(torch.equal(v, plain.state_dict()[k]) for k, v in ck.fusion.items())
    from downstream.segmentation.engine import build_segmenter, load_config

    seg = build_segmenter(load_config(parts["segmenter_config"]), parts["segmenter"])
    assert all(torch.equal(v, seg.state_dict()[k]) for k, v in ck.segmenter.items())

    with pytest.raises(CheckpointError, match="not an end-to-end checkpoint"):
        create_fuser(f"tcmoa_e2e:{parts['fusion']}")
    with pytest.raises(CheckpointError, match="no checkpoint given"):
        create_fuser("tcmoa_e2e")


def test_pth_checkpoint_is_weights_only_loadable(tmp_path):
    from downstream.e2e.checkpoint import load_e2e_checkpoint, save_e2e_checkpoint

    path = save_e2e_checkpoint(tmp_path / "pair.pth", {"w": torch.ones(2)}, {"s": torch.zeros(3)}, {"name": "x"},
                               meta={"schedule": "joint"})
    obj = torch.load(path, weights_only=True)
    assert torch.equal(obj["fusion"]["w"], torch.ones(2))
    ck = load_e2e_checkpoint(path)
    assert ck.meta["schedule"] == "joint" and torch.equal(ck.segmenter["s"], torch.zeros(3))


def test_comparison_reports_both_arms(mfnet_root, tmp_path):
    from downstream.e2e.evaluate import run_comparison

    cfg = _cfg(mfnet_root, tmp_path / "cmp", model=CODEC, data={"max_test": 2})
    result = run_comparison(cfg, tmp_path / "cmp", progress=False)
    frozen, e2e = result["arms"]["frozen"], result["arms"]["e2e"]
    assert frozen["n"] == e2e["n"] == 2 and 0 <= frozen["seg"]["mIoU"] <= 1
    assert set(frozen["fusion"]) == {"EN", "SD", "Qabf"} and 0 < frozen["fusion"]["EN"] <= 8
    assert result["miou_gain"] == pytest.approx(e2e["seg"]["mIoU"] - frozen["seg"]["mIoU"])
    assert set(result["band"]) == {"EN", "SD", "Qabf"}
    md = (tmp_path / "cmp" / "results.md").read_text()
    assert "frozen fusion + segmenter" in md and "e2e (joint)" in md
    grid = read_image(tmp_path / "cmp" / "qualitative.png")
    assert grid.shape[0] > 4 * 112 and grid.shape[1] > 5 * 112  # 2 samples x 2 arms, 5 columns (tiles >= 112 px)
    assert (tmp_path / "cmp" / "e2e" / "e2e_final.safetensors").is_file()


# ---------------------------------------------------------------------------------------------------- detection
def test_yolo_detection_loss_reaches_the_adapters():
    from downstream.e2e.detection import build_yolo, detection_loss
    from fusion.models import create_model, normalize

    torch.manual_seed(0)
    fuser = create_model("tcmoa_tiny", **SMALL).train()
    yolo = build_yolo("yolov8n.yaml", nc=1)
    a, b = torch.rand(2, 3, 112, 112), torch.rand(2, 3, 112, 112)
    fused = fuser(normalize(a), normalize(b), task="vif")
    boxes = [torch.tensor([[0, 10.0, 20.0, 40.0, 90.0]]), torch.zeros(0, 5)]
    loss, logs = detection_loss(yolo, fused, boxes)
    loss.backward()
    assert float(loss) > 0 and {"box_loss", "cls_loss", "dfl_loss"} <= set(logs)
    grad = sum(float(p.grad.abs().sum()) for n, p in fuser.named_parameters()
               if n.startswith("blocks_MoA.0.") and p.grad is not None)
    assert grad > 0
    assert all(p.grad is None for n, p in fuser.named_parameters() if _is_backbone(n))


# ---------------------------------------------------------------------------------------------------- CLI
def test_cli_bad_option_is_one_line_exit_2(tmp_path):
    proc = subprocess.run([sys.executable, str(ROOT / "pipelines" / "finetune_e2e.py"), "train.iterz=3",
                           "--out", str(tmp_path / "cli")], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines()[-1].startswith("error: unknown config key 'train.iterz'")
    assert "Traceback" not in proc.stderr


def test_fusion_band_symmetric_and_one_sided():
    from downstream.e2e.evaluate import band_limits, comparison_markdown, fusion_band

    assert band_limits(0.05) == (-0.05, 0.05)
    assert band_limits([-0.1, None]) == (-0.1, math.inf)
    ref = {"EN": 6.0, "SD": 30.0, "Qabf": 0.40}
    new = {"EN": 6.6, "SD": 27.0, "Qabf": 0.52}  # +10 %, -10 %, +30 %
    out = fusion_band(new, ref, {"EN": 0.05, "SD": [-0.15, 0.05], "Qabf": [-0.10, None]})
    assert out["EN"]["change"] == pytest.approx(0.10) and not out["EN"]["ok"]  # outside ±5 %
    assert out["SD"]["ok"] and out["Qabf"]["ok"] and out["Qabf"]["band"] == [-0.10, None]
    drop = fusion_band({"Qabf": 0.35}, ref, {"Qabf": [-0.10, None]})["Qabf"]
    assert drop["change"] == pytest.approx(-0.125) and not drop["ok"]  # a rise is free, a drop is not
    arm = {"seg": {"mIoU": 0.3, "mIoU_present": 0.3, "mAcc": 0.4}, "fusion": ref, "train_seconds": 1.0}
    md = comparison_markdown({"mode": "joint", "arms": {"frozen": arm, "e2e": arm}, "band": out, "band_ok": False,
                              "miou_gain": 0.0})
    assert "EN +10.0% (±5%, OUT)" in md and "Qabf +30.0% (-10% … no upper limit)" in md


@pytest.mark.parametrize("band", [{"Qabf": -0.1}, {"Qabf": [0.1, 0.2]}, {"Qabf": [-0.1]}, {"Qabf": "10%"}])
def test_fusion_band_config_errors(band):
    from downstream.e2e.config import load_config

    with pytest.raises(ConfigError, match="eval.band.Qabf"):
        load_config(None, {"eval": {"band": band}})
