"""Training + evaluation of mmseg segmenters per input, and ``pipelines/seg_eval.py`` on a reduced setting."""

from __future__ import annotations

import csv
import importlib.util
import json
import logging
import sys
from pathlib import Path

import numpy as np
import pytest

import downstream.segmentation  # noqa: F401
from downstream.segmentation.classes import MFNET_CLASSES
from downstream.segmentation.inputs import parse_input, parse_inputs
from fusion.errors import ConfigError

ROOT = Path(__file__).resolve().parents[1]


def _script():
    spec = importlib.util.spec_from_file_location("seg_eval_script", ROOT / "pipelines" / "seg_eval.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_parse_inputs():
    assert parse_input("ir").label == "ir" and parse_input("ir").modality == "ir"
    s = parse_input("tcmoa_base:/ckpt/base.pth")
    assert (s.label, s.kind, s.source, s.modality) == ("tcmoa_base-base", "fuser", "tcmoa_base:/ckpt/base.pth", "fused")
    s = parse_input("ours=tcmoa_base:/x.pth")
    assert (s.label, s.source) == ("ours", "tcmoa_base:/x.pth")
    s = parse_input("folder:/data/fused/SeAFusion")
    assert (s.label, s.kind, s.source) == ("folder-SeAFusion", "folder", "/data/fused/SeAFusion")
    assert [x.label for x in parse_inputs(["ir,vis", "gff"])] == ["ir", "vis", "gff"]
    with pytest.raises(ConfigError, match="used twice"):
        parse_inputs(["gff", "gff"])


@pytest.fixture(scope="module")
def tiny_mfnet(tmp_path_factory) -> Path:
    from fusion.data.synthetic import write_mfnet

    return write_mfnet(tmp_path_factory.mktemp("syn") / "mfnet", n=10, height=64, width=96)


def test_two_iteration_train_and_evaluate(tiny_mfnet, tmp_path):
    import torch

    from downstream.segmentation.engine import (
        build_segmenter,
        evaluate_segmenter,
        load_config,
        prepare_training,
        set_data_root,
        set_input,
        train_segmenter,
    )

    torch.set_num_threads(1)
    cfg = load_config(ROOT / "configs" / "seg" / "fcn_r18-slim_mfnet-synthetic.py",
                      {"model.data_preprocessor.size": (64, 96)})
    set_data_root(cfg, tiny_mfnet)
    set_input(cfg, "fused", fuser="maximum")
    tcfg = prepare_training(cfg, tmp_path / "work", max_iters=2, batch_size=2, progress=False, name="t")
    assert tcfg.val_cfg is None and tcfg.default_hooks.checkpoint.interval == 2
    assert tcfg.param_scheduler[0]["end"] == 2  # the LR schedule shrinks with the iterations
    ckpt = train_segmenter(tcfg)
    assert ckpt.name == "iter_2.pth" and ckpt.is_file()
    assert train_segmenter(tcfg) == ckpt  # finished runs are not trained again
    model = build_segmenter(cfg, ckpt, "cpu")
    res = evaluate_segmenter(model, cfg.test_dataloader.dataset, batch_size=2, keep=1, progress=False)
    assert res.confusion.shape == (9, 9)
    assert res.confusion.sum() == 2 * 64 * 96  # 2 test images, every pixel counted once
    assert res.scores.classes == MFNET_CLASSES
    assert 0.0 <= res.scores.miou <= res.scores.miou_present <= 1.0
    assert res.metrics["mIoU"] == pytest.approx(100 * res.scores.miou, abs=0.01)
    (name, pred), = res.predictions.items()
    assert pred.shape == (64, 96) and pred.dtype == np.uint8 and pred.max() < 9


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory):
    """The no-argument command on a reduced setting: tiny synthetic set, 2 iterations, default inputs."""
    out = tmp_path_factory.mktemp("seg_eval")
    argv = ["seg_eval.py", "--out", str(out), "--synthetic-n", "10", "--synthetic-size", "64x96", "--iters", "2",
            "--threads", "1", "--no-progress"]
    mp = pytest.MonkeyPatch()
    mp.setattr(sys, "argv", argv)
    try:
        code = _script().main()
    finally:
        mp.undo()
    return out, code


@pytest.mark.slow
def test_default_run_reduced(demo_run, capsys):
    from downstream.segmentation.compare import default_inputs

    out, code = demo_run
    assert code == 0
    inputs, _ = default_inputs()
    with open(out / "results.csv", newline="") as f:
        rows = list(csv.reader(f))
    assert rows[0] == ["input", "mIoU", "mAcc", *MFNET_CLASSES]
    assert [r[0] for r in rows[1:]] == inputs
    for r in rows[1:]:
        assert 0.0 <= float(r[1]) <= 100.0
    md = (out / "results.md").read_text()
    assert "| input | mIoU | mIoU_present | mAcc |" in md
    for name in ("results.png", "qualitative.png"):
        assert (out / name).stat().st_size > 1000
    assert (out / "data").is_dir() and any((out / "fused").iterdir())
    summary = json.loads((out / "results.json").read_text())
    assert summary["inputs"] == inputs


@pytest.mark.slow
def test_rerun_skips_finished_inputs_and_seg_checkpoint_mode(demo_run, caplog, capsys):
    out, _ = demo_run
    mod = _script()
    mp = pytest.MonkeyPatch()
    try:
        caplog.set_level(logging.INFO, logger="downstream.segmentation.compare")
        mp.setattr(sys, "argv", ["seg_eval.py", "--out", str(out), "--synthetic-n", "10", "--synthetic-size",
                                 "64x96", "--iters", "2", "--threads", "1", "--no-progress"])
        assert mod.main() == 0
        assert caplog.text.count("done before") >= 4
        ckpt = next((out / "runs").glob("vis-*/train/iter_2.pth"))
        out2 = out / "with_ckpt"
        mp.setattr(sys, "argv", ["seg_eval.py", "--out", str(out2), "--synthetic-n", "10", "--synthetic-size",
                                 "64x96", "--threads", "1", "--no-progress", "--inputs", "ir", "vis",
                                 "--seg-checkpoint", str(ckpt)])
        assert mod.main() == 0
    finally:
        mp.undo()
    with open(out2 / "results.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert [r["input"] for r in rows] == ["ir", "vis"]
    with open(out / "results.csv", newline="") as f:
        trained_vis = next(r for r in csv.DictReader(f) if r["input"] == "vis")
    # Same weights, same test images: the given checkpoint reproduces the trained model's score.
    assert float(rows[1]["mIoU"]) == pytest.approx(float(trained_vis["mIoU"]), abs=0.01)
    assert not list(out2.glob("runs/*/train"))


@pytest.mark.parametrize("argv, message", [
    (["--inputs", "no_such_fuser"], "unknown fusion method"),
    (["--synthetic-size", "40x40"], "at least 48x64"),
    (["--iters", "0"], "--iters must be >= 1"),
])
def test_bad_arguments_exit_2_with_one_line(argv, message, tmp_path, monkeypatch, capsys):
    mod = _script()
    monkeypatch.setattr(sys, "argv", ["seg_eval.py", "--out", str(tmp_path), "--synthetic-n", "10",
                                      "--synthetic-size", "64x96", "--threads", "1", *argv])
    with pytest.raises(SystemExit) as exc:
        mod.run_cli(mod.main)
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and message in err and "\n" not in err
