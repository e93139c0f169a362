"""Detection metrics: matching, AP, precision/recall and the log-average miss rate (hand-computed references)."""

from __future__ import annotations

import numpy as np
import pytest

from downstream.detection.labels import ImageLabels
from downstream.detection.metrics import (
    Detections,
    accumulate,
    average_precision,
    box_iou,
    evaluate_detections,
    log_average_miss_rate,
    match_image,
)


def test_box_iou_values():
    a = np.array([[0, 0, 10, 10]])
    b = np.array([[0, 0, 10, 10], [5, 0, 15, 10], [20, 20, 30, 30], [0, 0, 5, 5]])
    np.testing.assert_allclose(box_iou(a, b), [[1.0, 50 / 150, 0.0, 0.25]])


def test_match_image_greedy_by_score_and_ignore():
    gt = np.array([[0, 0, 10, 10], [100, 100, 110, 110], [200, 200, 300, 300]])
    ignore = np.array([False, False, True])
    dets = np.array([
        [0, 0, 10, 9],        # IoU 0.9 with gt0, lower score
        [0, 0, 10, 10],       # exact gt0, highest score -> takes it
        [100, 100, 104, 110], # IoU 0.4 with gt1: a false positive at 0.5
        [210, 210, 220, 220], # inside the ignore box
        [400, 400, 410, 410], # nothing
    ])  # fmt: skip
    scores = np.array([0.8, 0.9, 0.7, 0.6, 0.5])
    st = match_image(dets, scores, gt, ignore, thresholds=(0.5, 0.35))
    assert st[0].tolist() == [0, 1, 0, -1, 0]
    assert st[1].tolist() == [0, 1, 1, -1, 0]


def test_log_average_miss_rate_hand_computed():
    fppi = np.array([0.005, 0.02, 0.5, 2.0])
    miss = np.array([0.8, 0.5, 0.2, 0.1])
    # refs 10^[-2, -1.75, ..., 0]: last curve point with fppi <= ref.
    sampled = [0.8, 0.8, 0.5, 0.5, 0.5, 0.5, 0.5, 0.2, 0.2]
    assert log_average_miss_rate(fppi, miss) == pytest.approx(np.exp(np.mean(np.log(sampled))), rel=1e-12)
    # A curve that starts beyond 1e-2 FPPI counts as a miss rate of 1 there.
    assert log_average_miss_rate(np.array([0.05, 0.5]), np.array([0.5, 0.25])) == pytest.approx(
        np.exp(np.mean(np.log([1, 1, 1, 0.5, 0.5, 0.5, 0.5, 0.25, 0.25]))), rel=1e-12
    )
    assert log_average_miss_rate(np.zeros(0), np.zeros(0)) == 1.0


def _gt(boxes, w=100, h=100, cls=None):
    boxes = np.array(boxes, dtype=float).reshape(-1, 4)
    return ImageLabels(boxes, np.zeros(len(boxes), int) if cls is None else cls, w, h)


def test_perfect_and_empty_detectors():
    gts = [_gt([[10, 10, 30, 50]]), _gt([[50, 10, 70, 60], [0, 0, 10, 10]]), _gt([])]
    perfect = [Detections(g.boxes, np.full(len(g), 0.9), g.classes) for g in gts]
    m = evaluate_detections(perfect, gts, 1)
    assert m.map50 == pytest.approx(average_precision(np.array([1 / 3, 2 / 3, 1.0]), np.ones(3)))
    assert m.map50 > 0.99 and m.map50_95 == pytest.approx(m.map50)
    assert m.precision == 1.0 and m.recall == 1.0
    assert m.miss_rate < 1e-9 and m.n_gt == 3 and m.n_images == 3
    none = evaluate_detections([Detections.empty()] * 3, gts, 1)
    assert none.map50 == 0.0 and none.recall == 0.0 and none.miss_rate == 1.0


def test_miss_rate_counts_fppi_over_all_images():
    # 10 images, one pedestrian each; 5 found with high scores, then 20 false positives with lower scores.
    gts = [_gt([[10, 10, 20, 40]]) for _ in range(10)]
    preds = []
    for i in range(10):
        boxes, scores = [], []
        if i < 5:
            boxes.append([10, 10, 20, 40])
            scores.append(0.9 - 0.01 * i)
        boxes += [[60, 60, 70, 90], [70, 0, 80, 30]]
        scores += [0.5 - 0.01 * i, 0.4 - 0.01 * i]
        preds.append(Detections(np.array(boxes, float), np.array(scores), np.zeros(len(scores), int)))
    m = evaluate_detections(preds, gts, 1)
    # FPPI 0 -> miss 0.5 until FPPI reaches 1e-2..1 range: every FP adds 0.1 FPPI, recall stays 0.5.
    assert m.miss_rate == pytest.approx(0.5)
    assert m.recall == pytest.approx(0.5) and m.precision == pytest.approx(1.0)
    recall = np.concatenate([np.linspace(0.1, 0.5, 5), np.full(20, 0.5)])
    precision = np.concatenate([np.ones(5), 5 / (5 + np.arange(1, 21))])
    assert m.map50 == pytest.approx(average_precision(recall, precision))
    assert 0.49 < m.map50 <= 0.51  # precision 1 up to recall 0.5, nothing beyond


def test_classes_are_separate_and_map_averages_present_classes():
    gts = [_gt([[0, 0, 10, 10], [50, 50, 60, 60]], cls=np.array([0, 1]))]
    # Class 0 found; class 1 predicted with the wrong class id only.
    preds = [Detections(np.array([[0, 0, 10, 10], [50, 50, 60, 60]]), np.array([0.9, 0.8]), np.array([0, 0]))]
    m = evaluate_detections(preds, gts, 3)
    assert set(m.ap50_per_class) == {0, 1}  # class 2 has no ground truth: skipped
    assert m.ap50_per_class[1] == 0.0 and m.ap50_per_class[0] == pytest.approx(average_precision(
        np.array([1.0, 1.0]), np.array([1.0, 0.5])))  # fmt: skip
    assert m.map50 == pytest.approx(m.ap50_per_class[0] / 2)


def test_ignored_detections_leave_the_curve():
    gt = ImageLabels(np.array([[0, 0, 10, 10], [50, 50, 90, 90]]), [0, 0], 100, 100, ignore=[False, True])
    dets = Detections(np.array([[60, 60, 70, 70], [0, 0, 10, 10]]), np.array([0.9, 0.8]), np.array([0, 0]))
    cv = accumulate([dets], [gt], 0)
    assert cv.n_gt == 1 and cv.tp[0].tolist() == [True]  # the detection in the ignore region is gone
    assert evaluate_detections([dets], [gt], 1).precision == 1.0


def test_ap_matches_ultralytics_integration(tmp_path, monkeypatch):
    """Our AP integration equals ultralytics' ap_per_class on the same true-positive matrix."""
    monkeypatch.setenv("YOLO_CONFIG_DIR", str(tmp_path / "ycfg"))
    from downstream._compat import setup_ultralytics_offline

    setup_ultralytics_offline()
    from ultralytics.utils.metrics import ap_per_class

    rng = np.random.default_rng(0)
    gts, preds = [], []
    for _ in range(12):
        n = rng.integers(1, 5)
        xy = rng.uniform(0, 200, (n, 2))
        boxes = np.hstack([xy, xy + rng.uniform(10, 60, (n, 2))])
        gts.append(_gt(boxes, 300, 300))
        jitter = boxes + rng.normal(0, 4, boxes.shape)
        fp = rng.uniform(0, 250, (2, 2))
        dboxes = np.vstack([jitter, np.hstack([fp, fp + 30])])
        preds.append(Detections(dboxes, rng.uniform(0, 1, len(dboxes)), np.zeros(len(dboxes), int)))
    cv = accumulate(preds, gts, 0)
    ours = evaluate_detections(preds, gts, 1)
    tp = np.stack(cv.tp, axis=1)
    conf = cv.scores[0]
    res = ap_per_class(tp, conf, np.zeros(len(conf)), np.zeros(cv.n_gt))
    ap = res[5]  # (nc, 10)
    assert ours.map50 == pytest.approx(float(ap[0, 0]), abs=1e-9)
    assert ours.map50_95 == pytest.approx(float(ap[0].mean()), abs=1e-9)
    assert 0.2 < ours.map50 < 1.0
