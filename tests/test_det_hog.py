"""OpenCV's HOG people detector as a given detector (``det_eval.py --detector opencv-hog``) on real labelled pairs."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

from downstream.detection.datasets import detect_layout, load_llvip
from downstream.detection.detectors import create_detector, list_detectors
from downstream.detection.hog import HOG_DEFAULTS, HOGPeopleDetector, nms, window_to_person
from downstream.detection.labels import ImageLabels
from downstream.detection.metrics import box_iou, recall_at_fppi
from fusion.errors import ConfigError, DatasetError
from pipelines import det_eval

GOLDEN = Path(__file__).parent / "golden" / "hog_llvip_010001_ir.json"


def test_registry_and_settings():
    assert "opencv-hog" in list_detectors()
    det = create_detector("opencv-hog", upscale=2)
    assert isinstance(det, HOGPeopleDetector) and det.settings.upscale == 2
    assert det.record()["hit_threshold"] == HOG_DEFAULTS["hit_threshold"]
    with pytest.raises(ConfigError, match="unknown setting 'thresh'"):
        create_detector("opencv-hog", thresh=1)
    for bad in ({"scale": 1.0}, {"win_stride": 4}, {"nms_iou": 0}, {"upscale": 20}, {"max_det": 0}):
        with pytest.raises(ConfigError, match="opencv-hog: invalid"):
            HOGPeopleDetector(**bad)
    with pytest.raises(ConfigError, match="unknown detector"):
        create_detector("haar")
    with pytest.raises(ConfigError, match="win_stride=8.0 must be an integer"):
        HOGPeopleDetector(win_stride=8.0)
    with pytest.raises(ConfigError, match="upscale='2x' must be a number"):
        HOGPeopleDetector(upscale="2x")


def test_window_to_person_is_the_inria_margin():
    # a 64x128 window at (10, 20) holds a 32x96 person 16 px inside every side
    np.testing.assert_array_equal(window_to_person([[10, 20, 64, 128]]), [[26, 36, 58, 132]])
    assert window_to_person(np.zeros((0, 4))).shape == (0, 4)


def test_nms():
    boxes = np.array([[0, 0, 10, 10], [1, 1, 11, 11], [20, 20, 30, 30], [0, 0, 10, 10.5]], dtype=float)
    scores = np.array([0.5, 0.9, 0.3, 0.9])
    # the two 0.9 boxes tie: the one with the smaller x1 (box 3) wins whatever the input order; it overlaps
    # box 1 by 0.72 and box 0 by 0.95 (> 0.45), which are dropped
    np.testing.assert_array_equal(nms(boxes, scores, 0.45), [3, 2])
    np.testing.assert_array_equal(nms(boxes, scores, 0.99), [3, 1, 0, 2])
    perm = np.array([3, 2, 1, 0])
    np.testing.assert_array_equal(perm[nms(boxes[perm], scores[perm], 0.45)], [3, 2])  # order-independent
    assert nms(np.zeros((0, 4)), np.zeros(0), 0.5).shape == (0,)
    with pytest.raises(ValueError, match="3 boxes but 2 scores"):
        nms(boxes[:3], scores[:2], 0.5)


def test_recall_at_fppi():
    fppi = np.array([0.0, 0.5, 1.0, 2.0])
    miss = np.array([0.8, 0.6, 0.4, 0.1])
    assert recall_at_fppi(fppi, miss, 1.0) == pytest.approx(0.6)
    assert recall_at_fppi(fppi, miss, 0.7) == pytest.approx(0.4)
    assert recall_at_fppi(np.array([2.0]), np.array([0.0]), 1.0) == 0.0  # curve starts beyond 1 FPPI


def test_detect_input_checks_and_small_frames():
    det = HOGPeopleDetector()
    with pytest.raises(ValueError, match=r"\(H, W, 3\) or \(H, W\) uint8"):
        det.detect(np.zeros((10, 10, 3), np.float32))
    assert len(det.detect(np.zeros((100, 50), np.uint8))) == 0  # smaller than one window


def test_golden_boxes_on_a_real_llvip_frame(shared_data):
    """The detector's boxes on one real infrared frame equal the values computed once (tests/golden)."""
    ref = json.loads(GOLDEN.read_text())
    det = HOGPeopleDetector().predict([shared_data / ref["image"]])[0]
    assert len(det) == ref["n_boxes"]
    top = np.argsort(-det.scores, kind="stable")[: len(ref["scores"])]
    np.testing.assert_allclose(det.scores[top], ref["scores"], atol=2e-5)
    np.testing.assert_allclose(det.boxes[top], ref["boxes"], atol=1e-3)
    # behaviour, not only numbers: the two best boxes are annotated people
    from downstream.detection.labels import read_voc_xml

    gt = read_voc_xml(shared_data / "llvip" / "label" / "010001.xml")
    assert (box_iou(det.boxes[top[:2]], gt.boxes).max(axis=1) > 0.5).all()


def test_only_class():
    lab = ImageLabels(np.array([[0, 0, 5, 5], [1, 1, 6, 6], [2, 2, 9, 9]]), [2, 0, 2], 10, 10, [False, False, True])
    p = lab.only_class(2)
    assert p.classes.tolist() == [0, 0] and p.ignore.tolist() == [False, True] and p.boxes[1, 2] == 9


def _flat_llvip(root: Path, shared: Path, ids: list[str], unlabelled: list[str] = ()) -> Path:
    for mod in ("vis", "ir"):
        (root / mod).mkdir(parents=True)
        for i in [*ids, *unlabelled]:
            os.symlink(shared / "llvip" / mod / f"{i}.jpg", root / mod / f"{i}.jpg")
    (root / "label").mkdir()
    for i in ids:
        os.symlink(shared / "llvip" / "label" / f"{i}.xml", root / "label" / f"{i}.xml")
    return root


def test_flat_llvip_sample_layout(shared_data, tmp_path, caplog):
    root = _flat_llvip(tmp_path / "sample", shared_data, ["010001", "010002"], ["190001"])
    assert detect_layout(root) == "llvip"
    ds = load_llvip(root)
    assert [s.ident for s in ds.split("test")] == ["010001", "010002"] and len(ds.split("test")[0].labels) == 6
    assert "left out: 190001" in caplog.text
    empty = _flat_llvip(tmp_path / "none", shared_data, [], ["190001"])
    with pytest.raises(DatasetError, match="no XML annotation for any pair"):
        load_llvip(empty)


def test_det_eval_hog_on_real_llvip_and_msrs(shared_data, tmp_path, capsys):
    """End to end on the real samples: a flat LLVIP sample and the MSRS tree, person class only, no training."""
    root = _flat_llvip(tmp_path / "llvip", shared_data, ["010001", "010004", "010009"])
    out = tmp_path / "run"
    assert det_eval.main([str(root), "--detector", "opencv-hog", "--inputs", "ir,vis,average", "--out", str(out),
                          "--qualitative", "2"]) == 0  # fmt: skip
    rows = {r.split(",")[0]: r.split(",") for r in (out / "results.csv").read_text().splitlines()}
    assert rows["input"] == ["input", "mAP50", "mAP50-95", "precision", "recall", "recall_1fppi", "miss_rate"]
    ap = {k: float(v[1]) for k, v in rows.items() if k != "input"}
    assert ap["ir"] > ap["vis"] + 0.2  # night frames: the infrared frame shows the people the visible one hides
    md = (out / "results.md").read_text()
    assert "20 scored boxes" in md and "opencv-hog (given, not trained" in md and "classes scored: person" in md
    assert (out / "qualitative.png").stat().st_size > 10_000 and not (out / "train").exists()
    preds = json.loads((out / "predictions" / "ir.json").read_text())["images"]
    assert [p["id"] for p in preds] == ["010001", "010004", "010009"]
    assert len(preds[0]["boxes"]) == len(preds[0]["scores"]) > 0 and set(preds[0]["classes"]) == {0}
    run = json.loads((out / "run.json").read_text())
    assert run["detector"]["detector"] == "opencv-hog" and run["settings"]["eval_split"] == "test"

    out2 = tmp_path / "msrs"
    assert det_eval.main([str(shared_data / "msrs"), "--detector", "opencv-hog", "detector.upscale=2", "--inputs",
                          "ir,vis", "--max-test", "3", "--out", str(out2), "--qualitative", "0"]) == 0  # fmt: skip
    md = (out2 / "results.md").read_text()
    assert "upscale 2" in md and "classes scored: person" in md  # bicycles and cars are not scored


def test_det_eval_hog_refusals(shared_data, tmp_path):
    with pytest.raises(DatasetError, match="no People box in the 1 scored image"):
        det_eval.main([str(shared_data / "m3fd"), "--detector", "opencv-hog", "--eval-split", "all", "--inputs",
                       "ir", "--out", str(tmp_path / "m3fd")])  # fmt: skip
    with pytest.raises(ConfigError, match="test split is empty"):
        det_eval.main([str(shared_data / "m3fd"), "--detector", "opencv-hog", "--inputs", "ir", "--out",
                       str(tmp_path / "m3fd2")])  # fmt: skip
    with pytest.raises(ConfigError, match="no --detector given"):
        det_eval.main(["detector.upscale=2", "--out", str(tmp_path / "x")])
    with pytest.raises(ConfigError, match="give one"):
        det_eval.main(["--detector", "opencv-hog", "--det-checkpoint", str(tmp_path / "y.pt"), "--out",
                       str(tmp_path / "y")])  # fmt: skip
    with pytest.raises(ConfigError, match="only for a given detector"):
        det_eval.main(["--eval-split", "all", "--out", str(tmp_path / "z")])


def test_det_eval_hog_needs_a_person_class(shared_data, tmp_path):
    root = tmp_path / "cars"
    for mod in ("ir", "vis"):
        (root / mod).mkdir(parents=True)
        os.symlink(shared_data / "msrs" / mod / "00004N.png", root / mod / "00004N.png")
    (root / "label_det" / "fusion").mkdir(parents=True)
    (root / "label_det" / "classes.txt").write_text("car\nbus\n")
    (root / "label_det" / "fusion" / "00004N.txt").write_text("0 0.5 0.5 0.2 0.2\n")
    with pytest.raises(ConfigError, match="no person class among car, bus"):
        det_eval.main([str(root), "--detector", "opencv-hog", "--inputs", "ir", "--out", str(tmp_path / "o")])
