"""Detection-driven end-to-end finetuning: TC-MoA adapters + a YOLO detector trained through ultralytics' loss on
synthetic LLVIP-layout scenes (joint and alternating), exact resumption, the comparison and the multi-seed table."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from _e2e_common import CODEC, assert_resume_is_exact, e2e_config, one_thread  # noqa: F401  (autouse fixture)

from fusion.errors import ConfigError

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def llvip_root(tmp_path_factory) -> Path:
    from fusion.data.synthetic import write_llvip

    return write_llvip(tmp_path_factory.mktemp("e2e_det") / "llvip", n_train=6, n_test=3, height=112, width=224,
                       thermal_crossover=0.75)


def _cfg(root: Path, out: Path, **sections) -> dict:
    base = {"downstream": "detection", "model": dict(CODEC), "detector": {"model": "yolov8n.yaml"},
            "data": {"crop_size": [112, 224]}}
    return e2e_config(root, out, iters=3, base=base, **sections)


def test_crop_boxes_clip_drop_and_flip(llvip_root):
    from downstream.detection.datasets import load_llvip
    from downstream.e2e.data import MAX_BOXES, DetPairDataset, unpad_boxes

    ds = DetPairDataset(load_llvip(llvip_root).split("train"), (112, 112), seed=0)
    boxes = np.array([[0, 10, 10, 50, 90], [0, 100, 20, 140, 100], [0, 105, 0, 125, 40]], np.float32)
    # crop at left 0: box 0 whole; box 1 keeps 12/40 of its width (< half): dropped; box 2 keeps 7/20: dropped
    np.testing.assert_array_equal(ds.crop_boxes(boxes, 0, 0, False), [[0, 10, 10, 50, 90]])
    # crop at left 20 / top 5, flipped: box 1 keeps 32/40 of its width and is mirrored inside the 112-px crop
    got = ds.crop_boxes(boxes, 5, 20, True)
    np.testing.assert_allclose(got, [[0, 112 - 30, 5, 112 - 0, 85], [0, 112 - 112, 15, 112 - 80, 95],
                                     [0, 112 - 105, 0, 112 - 85, 35]])
    item = ds[(0, 0)]
    assert item["a"].shape == (3, 112, 112) and item["boxes"].shape == (MAX_BOXES, 5)
    n = item["n_boxes"]
    assert (item["boxes"][n:, 0] == -1).all() and (item["boxes"][:n, 0] == 0).all()
    batch = torch.stack([item["boxes"], item["boxes"]])
    assert [len(b) for b in unpad_boxes(batch, torch.tensor([n, 0]))] == [n, 0]


@pytest.mark.parametrize("override, match", [
    ({"detector": {"model": ""}}, "detector.model"),
    ({"detector": {"classes": []}}, "detector.classes"),
    ({"detector": {"conf": 2}}, "detector.conf"),
    ({"detector": {"classes": ["person", "Person"]}}, "distinct class names"),
    ({"detector": {"hyp": [1]}}, "detector.hyp"),
    ({"downstream": "tracking"}, "downstream"),
])  # fmt: skip
def test_detection_config_errors(override, match, tmp_path):
    with pytest.raises(ConfigError, match=match):
        _cfg(tmp_path, tmp_path / "o", **override)


@pytest.mark.parametrize("mode", ["joint", "alternating"])
def test_detection_e2e_trains_and_resumes_bit_identically(llvip_root, tmp_path, mode):
    from downstream.e2e.checkpoint import load_e2e_checkpoint
    from downstream.e2e.trainer import E2ETrainer

    sched = {"mode": mode, "seg_iters": 1, "fusion_iters": 1}
    full = E2ETrainer(_cfg(llvip_root, tmp_path / "full", schedule=sched))
    start = {k: v.clone() for k, v in full.fuser.state_dict().items()}
    det_start = {k: v.clone() for k, v in full.task_net.state_dict().items()}
    try:
        final = full.fit()
    finally:
        full.close()
    moved = [k for k, v in full.fuser.state_dict().items() if not torch.equal(v, start[k])]
    assert moved and all(not k.startswith(("blocks.", "decoder_blocks.", "patch_embed")) for k in moved)
    assert any(not torch.equal(v, det_start[k]) for k, v in full.task_net.state_dict().items())

    cfg = _cfg(llvip_root, tmp_path / "cut", schedule=sched, checkpoint={"every_iters": 1, "keep_last": 2})
    assert_resume_is_exact(full, cfg, stop_at=2)  # killed after a frozen and one trained iteration

    ck = load_e2e_checkpoint(final)
    assert ck.part == "detector" and ck.meta["downstream"] == "detection" and ck.meta["schedule"] == mode
    assert set(ck.segmenter) == set(full.task_net.state_dict())
    assert json.loads(ck.segmenter_config) == {"model": "yolov8n.yaml", "classes": ["person"]}
    from fusion.fusers import create_fuser

    fuser = create_fuser(f"tcmoa_e2e:{final}", device="cpu")  # the finetuned fuser is one more det_eval input
    a = np.random.default_rng(0).integers(0, 256, (112, 112, 3), dtype=np.uint8)
    assert fuser.fuse(a, a).shape == (112, 112, 3)


def test_resume_refuses_a_segmentation_checkpoint(llvip_root, tmp_path):
    from downstream.e2e.trainer import E2ETrainer
    from fusion.errors import CheckpointError
    from fusion.training.checkpoint import load_training_checkpoint

    trainer = E2ETrainer(_cfg(llvip_root, tmp_path / "a", checkpoint={"every_iters": 1, "keep_last": 1},
                              train={"iters": 1}))
    try:
        trainer.fit()
        path = trainer.last_checkpoint
    finally:
        trainer.close()
    ck = load_training_checkpoint(path)
    ck["segmenter"] = ck.pop("detector")
    torch.save(ck, tmp_path / "seg.pth")
    with pytest.raises(CheckpointError, match="holds a segmenter, this run trains a detector"):
        E2ETrainer(_cfg(llvip_root, tmp_path / "b"), resume=tmp_path / "seg.pth")


def test_detection_comparison_and_seed_table(llvip_root, tmp_path):
    from downstream.e2e.evaluate import run_seeds

    cfg = _cfg(llvip_root, tmp_path / "cmp", detector={"classes": ["person"]})
    results = run_seeds(cfg, tmp_path / "cmp", [0, 3], progress=False, command="finetune_e2e.py x --seeds 0,3")
    for seed, r in results.items():
        fz, ee = r["arms"]["frozen"], r["arms"]["e2e"]
        assert fz["n"] == ee["n"] == 3 and 0 <= fz["det"]["mAP50"] <= 1 and 0 <= ee["det"]["miss_rate"] <= 1
        assert r["map50_gain"] == pytest.approx(ee["det"]["mAP50"] - fz["det"]["mAP50"])
        assert r["config"]["train"]["seed"] == seed and (tmp_path / "cmp" / f"seed_{seed}" / "results.md").is_file()
        assert (tmp_path / "cmp" / f"seed_{seed}" / "qualitative.png").stat().st_size > 5000
    md = (tmp_path / "cmp" / "seeds.md").read_text()
    assert md.startswith("`finetune_e2e.py x --seeds 0,3` (2 seeds") and "| mean |" in md and "MR-2 gain" in md
    rows = (tmp_path / "cmp" / "seeds.csv").read_text().splitlines()
    assert rows[0].startswith("seed,mAP50 frozen,mAP50 e2e,mAP50 gain") and [r.split(",")[0] for r in rows[1:]] == \
        ["0", "3", "mean"]
    with pytest.raises(ConfigError, match="distinct"):
        run_seeds(cfg, tmp_path / "x", [1, 1])


def test_detection_class_filter(llvip_root, tmp_path):
    from downstream.e2e.model import build_det_model
    from downstream.e2e.trainer import detection_samples

    with pytest.raises(ConfigError, match="'boxx' is not an ultralytics training setting"):
        build_det_model("yolov8n.yaml", num_classes=1, hyp={"boxx": 1.0})
    flat = tmp_path / "flat"  # a sample without a train split: the same pairs would train and be scored
    for mod in ("vis", "ir", "label"):
        (flat / mod).mkdir(parents=True)
    for xml in sorted((llvip_root / "Annotations").glob("*.xml"))[:2]:
        for mod, sub in (("vis", "visible"), ("ir", "infrared")):
            src = next((llvip_root / sub).glob(f"*/{xml.stem}.jpg"))
            os.symlink(src, flat / mod / src.name)
        os.symlink(xml, flat / "label" / xml.name)
    with pytest.raises(ConfigError, match="in both the train and the test split"):
        detection_samples(_cfg(flat, tmp_path / "o"))

    train, test, classes = detection_samples(_cfg(llvip_root, tmp_path, detector={"classes": ["Person"]}))
    assert classes == ("person",) and len(train) == 6 and len(test) == 3
    with pytest.raises(ConfigError, match="'car' is not a class"):
        detection_samples(_cfg(llvip_root, tmp_path, detector={"classes": ["car"]}))


def test_cli_seeds_needs_compare(tmp_path):
    from pipelines import finetune_e2e

    with pytest.raises(ConfigError, match="add --compare"):
        finetune_e2e.main(["--seeds", "0,1", "--out", str(tmp_path)])
    with pytest.raises(ConfigError, match="comma list of integers"):
        finetune_e2e.main(["--compare", "--seeds", "0,x", "--out", str(tmp_path)])


@pytest.mark.slow
def test_torchrun_detection_e2e(llvip_root, tmp_path):
    """Two torchrun processes (gloo, CPU) train fuser + detector in one DDP wrapper and checkpoint both ranks."""
    from fusion.training.checkpoint import load_training_checkpoint

    cfg = _cfg(llvip_root, tmp_path / "ddp", checkpoint={"every_iters": 3, "keep_last": 1}, data={"batch_size": 1})
    path = tmp_path / "cfg.yaml"
    path.write_text(json.dumps(cfg))  # JSON is YAML
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    run = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                          str(ROOT / "pipelines" / "finetune_e2e.py"), str(path)], env=env, capture_output=True,
                         text=True, timeout=900)  # fmt: skip
    assert run.returncode == 0, run.stderr[-3000:]
    ck = load_training_checkpoint(tmp_path / "ddp" / "checkpoints" / "iter_00000003.pth")
    assert ck["rng"]["world_size"] == 2 and "detector" in ck and (tmp_path / "ddp" / "e2e_final.safetensors").is_file()
