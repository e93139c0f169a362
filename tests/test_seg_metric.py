"""Segmentation scores: hand-made label maps with known IoU, both mIoU variants, and the mmseg metric class."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from downstream.segmentation.confusion import (
    accuracy_per_class,
    confusion_matrix,
    iou_per_class,
    mean_accuracy,
    mean_iou,
    segmentation_scores,
)

# 4 classes; class 3 never occurs in the ground truth (like FMB's bicycle in its test split).
GT = np.array([[0, 0, 1, 1],
               [0, 2, 2, 1],
               [0, 0, 2, 2]])
PRED = np.array([[0, 1, 1, 1],
                 [0, 2, 1, 1],
                 [0, 0, 2, 0]])
# Per class: TP, FP, FN
#   0: TP 4 (gt 5: one predicted 1), FP 1 (the last pixel, gt 2) -> IoU 4/6
#   1: TP 3 (gt 3), FP 2 (gt0 at (0,1), gt2 at (1,2)) -> IoU 3/5
#   2: TP 2 (gt 4), FP 0 -> IoU 2/4
#   3: absent, never predicted -> NaN
IOU = [4 / 6, 3 / 5, 2 / 4, float("nan")]
ACC = [4 / 5, 3 / 3, 2 / 4, float("nan")]


def test_confusion_matrix_counts():
    conf = confusion_matrix(PRED, GT, 4)
    assert conf.shape == (4, 4)
    assert conf.sum() == GT.size
    assert conf[0].tolist() == [4, 1, 0, 0]  # row = ground truth 0
    assert conf[2].tolist() == [1, 1, 2, 0]
    assert conf[:, 1].sum() == 5  # predicted as class 1


def test_iou_and_both_means_on_known_maps():
    conf = confusion_matrix(PRED, GT, 4)
    np.testing.assert_allclose(iou_per_class(conf), IOU, equal_nan=True)
    np.testing.assert_allclose(accuracy_per_class(conf), ACC, equal_nan=True)
    # The field's mIoU: every class, NaN as 0 (RTFNet: np.mean(np.nan_to_num(iou))).
    assert mean_iou(conf, "all") == pytest.approx((4 / 6 + 3 / 5 + 2 / 4 + 0) / 4)
    # Only the classes present in the ground truth; nanmean agrees here (class 3 is never predicted either).
    assert mean_iou(conf, "present") == pytest.approx((4 / 6 + 3 / 5 + 2 / 4) / 3)
    assert mean_iou(conf, "defined") == pytest.approx((4 / 6 + 3 / 5 + 2 / 4) / 3)
    assert mean_accuracy(conf, "all") == pytest.approx((0.8 + 1 + 0.5) / 4)
    assert mean_accuracy(conf, "present") == pytest.approx((0.8 + 1 + 0.5) / 3)


def test_class_predicted_but_absent_from_ground_truth():
    gt = np.array([[0, 0], [1, 1]])
    pred = np.array([[0, 2], [1, 1]])  # class 2 predicted once, never in the ground truth
    conf = confusion_matrix(pred, gt, 3)
    iou = iou_per_class(conf)
    assert iou.tolist() == [0.5, 1.0, 0.0]
    assert mean_iou(conf, "all") == pytest.approx(0.5)
    assert mean_iou(conf, "present") == pytest.approx(0.75)
    assert mean_iou(conf, "defined") == pytest.approx(0.5)  # nanmean keeps the predicted-but-absent class at 0


def test_perfect_prediction_and_ignore_index():
    gt = np.array([[0, 1, 255], [2, 2, 255]])
    pred = np.array([[0, 1, 0], [2, 2, 1]])  # the ignored pixels are wrong on purpose
    s = segmentation_scores(confusion_matrix(pred, gt, 3), ("unlabeled", "a", "b"))
    assert s.miou == 1.0 and s.miou_present == 1.0 and s.aacc == 1.0
    assert s.num_pixels == 4
    assert s.present == ("unlabeled", "a", "b")


def test_scores_dict_and_fmb_like_absent_class():
    names = ("unlabeled", "road", "bicycle", "bus")
    conf = confusion_matrix(PRED, GT, 4)
    s = segmentation_scores(conf, names)
    d = s.as_dict()
    assert d["mIoU"] == pytest.approx(s.miou) and d["mIoU_present"] == pytest.approx(s.miou_present)
    assert d["IoU.road"] == pytest.approx(3 / 5)
    assert math.isnan(d["IoU.bus"])
    assert s.present == ("unlabeled", "road", "bicycle")
    assert s.miou_present > s.miou


def test_input_checks():
    with pytest.raises(ValueError, match="shape"):
        confusion_matrix(np.zeros((2, 2)), np.zeros((2, 3)), 3)
    with pytest.raises(ValueError, match="label values"):
        confusion_matrix(np.zeros((2, 2)), np.full((2, 2), 7), 3)
    with pytest.raises(ValueError, match="predictions"):
        confusion_matrix(np.full((2, 2), 3), np.zeros((2, 2)), 3)
    with pytest.raises(ValueError, match="class names"):
        segmentation_scores(np.eye(3), ("a", "b"))


def test_torch_tensors_accepted():
    conf = confusion_matrix(torch.from_numpy(PRED), torch.from_numpy(GT), 4)
    assert conf[1, 1] == 3


def test_rgbt_metric_process_and_compute():
    from mmseg.registry import METRICS

    import downstream.segmentation  # noqa: F401  (registers the metric)

    metric = METRICS.build(dict(type="RGBTIoUMetric"))
    metric.dataset_meta = dict(classes=("unlabeled", "road", "bicycle", "bus"))
    # Two "images": the hand-made pair split in halves; results must equal the whole.
    samples = [
        dict(pred_sem_seg=dict(data=torch.from_numpy(PRED[:, :2])[None]),
             gt_sem_seg=dict(data=torch.from_numpy(GT[:, :2])[None])),
        dict(pred_sem_seg=dict(data=torch.from_numpy(PRED[:, 2:])[None]),
             gt_sem_seg=dict(data=torch.from_numpy(GT[:, 2:])[None])),
    ]
    metric.process({}, samples)
    res = metric.evaluate(2)
    assert res["mIoU"] == pytest.approx(100 * (4 / 6 + 3 / 5 + 2 / 4) / 4, abs=0.01)
    assert res["mIoU_present"] == pytest.approx(100 * (4 / 6 + 3 / 5 + 2 / 4) / 3, abs=0.01)
    assert res["mIoU_nanmean"] == pytest.approx(res["mIoU_present"])
    assert res["IoU.road"] == pytest.approx(60.0)
    assert math.isnan(res["IoU.bus"])
    np.testing.assert_array_equal(metric.last_confusion, confusion_matrix(PRED, GT, 4))
