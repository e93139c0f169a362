"""Detection metrics computed from predictions and ground truth: mAP50, mAP50-95, precision, recall and the
log-average miss rate of pedestrian detection.

Every number comes from one matching rule, applied per image and class: detections in descending score order each
take the unmatched ground-truth box of highest IoU if that IoU reaches the threshold (a true positive); a detection
that instead covers an *ignore* box (``difficult``/crowd) by at least the threshold, measured as intersection over the
detection's own area as in Dollár's toolbox, counts as neither; every other detection is a false positive.

* **AP** follows ultralytics 8.4 (COCO-style): precision made monotone (and 0 beyond the last recall reached), sampled
  at 101 recall points, integrated with the trapezoid rule; mAP50-95 averages IoU thresholds 0.50, 0.55, ..., 0.95;
  classes without ground truth are skipped.
* **precision / recall** are class means at the single confidence that maximises the mean F1 (as ultralytics reports).
* **log-average miss rate** (MR^-2, Dollár et al., PAMI 2012; the metric of LLVIP and Caltech): the miss rate
  ``1 - recall`` is sampled at 9 false-positives-per-image values spaced evenly in log space over [1e-2, 1]; at each,
  the curve point with the largest FPPI not above it is taken (a miss rate of 1 when the curve starts beyond it), and
  the geometric mean of the 9 values is reported. Lower is better.
* **recall at 1 FPPI**: ``1 -`` the miss rate sampled the same way at one false positive per image (how many people
  a detector finds when it is allowed one false alarm per frame).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from downstream.detection.labels import ImageLabels

__all__ = [
    "Detections",
    "ClassCurve",
    "DetMetrics",
    "box_iou",
    "match_image",
    "accumulate",
    "average_precision",
    "log_average_miss_rate",
    "recall_at_fppi",
    "evaluate_detections",
    "IOU_THRESHOLDS",
]

IOU_THRESHOLDS = np.round(np.linspace(0.5, 0.95, 10), 2)


@dataclass
class Detections:
    """Predicted boxes of one image: ``boxes`` (N, 4) xyxy pixels, ``scores`` (N,), ``classes`` (N,) int."""

    boxes: np.ndarray
    scores: np.ndarray
    classes: np.ndarray

    def __post_init__(self) -> None:
        self.boxes = np.asarray(self.boxes, dtype=np.float64).reshape(-1, 4)
        self.scores = np.asarray(self.scores, dtype=np.float64).reshape(-1)
        self.classes = np.asarray(self.classes, dtype=np.int64).reshape(-1)
        if not (len(self.boxes) == len(self.scores) == len(self.classes)):
            raise ValueError(
                f"Detections: {len(self.boxes)} boxes, {len(self.scores)} scores, {len(self.classes)} classes"
            )

    def __len__(self) -> int:
        return len(self.scores)

    @classmethod
    def empty(cls) -> Detections:
        return cls(np.zeros((0, 4)), np.zeros(0), np.zeros(0, dtype=np.int64))


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU matrix ``(len(a), len(b))`` of xyxy boxes ``a`` (N, 4) and ``b`` (M, 4), continuous coordinates."""
    a, b = np.asarray(a, dtype=np.float64).reshape(-1, 4), np.asarray(b, dtype=np.float64).reshape(-1, 4)
    inter = _intersection(a, b)
    area_a = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
    area_b = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    union = area_a[:, None] + area_b[None, :] - inter
    return np.where(union > 0, inter / np.maximum(union, 1e-12), 0.0)


def _intersection(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    w = np.minimum(a[:, None, 2], b[None, :, 2]) - np.maximum(a[:, None, 0], b[None, :, 0])
    h = np.minimum(a[:, None, 3], b[None, :, 3]) - np.maximum(a[:, None, 1], b[None, :, 1])
    return np.clip(w, 0, None) * np.clip(h, 0, None)


def match_image(
    boxes: np.ndarray,
    scores: np.ndarray,
    gt_boxes: np.ndarray,
    gt_ignore: np.ndarray | None = None,
    thresholds: Sequence[float] = (0.5,),
) -> np.ndarray:
    """Match one image's detections of one class to its ground truth.

    Args:
        boxes: (N, 4) detections; scores: (N,); gt_boxes: (M, 4); gt_ignore: (M,) bool ignore flags.
        thresholds: IoU thresholds, one matching per threshold.

    Returns:
        ``(len(thresholds), N)`` int8 status per detection in the *given* order: 1 true positive, 0 false positive,
        -1 ignored.
    """
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    gt_boxes = np.asarray(gt_boxes, dtype=np.float64).reshape(-1, 4)
    ign = np.zeros(len(gt_boxes), bool) if gt_ignore is None else np.asarray(gt_ignore, bool)
    n, t = len(boxes), len(thresholds)
    status = np.zeros((t, n), dtype=np.int8)
    if n == 0 or len(gt_boxes) == 0:
        return status
    order = np.argsort(-np.asarray(scores, dtype=np.float64), kind="stable")
    iou = box_iou(boxes, gt_boxes)
    det_area = np.maximum((boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1]), 1e-12)
    ioa_ignore = _intersection(boxes, gt_boxes[ign]) / det_area[:, None] if ign.any() else None
    for k, thr in enumerate(thresholds):
        free = ~ign
        for d in order:
            cand = np.where(free, iou[d], -1.0)
            g = int(np.argmax(cand))
            if cand[g] >= thr:
                status[k, d] = 1
                free[g] = False
            elif ioa_ignore is not None and ioa_ignore[d].max() >= thr:
                status[k, d] = -1
    return status


@dataclass
class ClassCurve:
    """All detections of one class over a set of images, per IoU threshold, sorted by descending score.

    ``scores[k]`` and ``tp[k]`` (bool) hold the detections kept at threshold ``k``: a detection ignored at one
    threshold (it covers an ignore box) may be a false positive at a stricter one, so lengths may differ.
    ``n_gt`` counts the non-ignored ground-truth boxes.
    """

    scores: list[np.ndarray]
    tp: list[np.ndarray]
    n_gt: int
    n_images: int
    thresholds: np.ndarray = field(default_factory=lambda: IOU_THRESHOLDS.copy())

    def recall(self, k: int = 0) -> np.ndarray:
        return np.cumsum(self.tp[k]) / max(self.n_gt, 1)

    def precision(self, k: int = 0) -> np.ndarray:
        tpc = np.cumsum(self.tp[k])
        return tpc / np.arange(1, len(tpc) + 1)

    def fppi(self, k: int = 0) -> np.ndarray:
        return np.cumsum(~self.tp[k]) / max(self.n_images, 1)


def accumulate(
    predictions: Sequence[Detections],
    ground_truth: Sequence[ImageLabels],
    class_id: int,
    thresholds: Sequence[float] = tuple(IOU_THRESHOLDS),
) -> ClassCurve:
    """Match every image and pool the detections of ``class_id`` into one score-sorted :class:`ClassCurve`."""
    if len(predictions) != len(ground_truth):
        raise ValueError(f"accumulate: {len(predictions)} prediction sets for {len(ground_truth)} images")
    scores, status, n_gt = [], [], 0
    for det, gt in zip(predictions, ground_truth, strict=True):
        d = det.classes == class_id
        g = gt.classes == class_id
        n_gt += int((g & ~gt.ignore).sum())
        if d.any():
            scores.append(det.scores[d])
            status.append(match_image(det.boxes[d], det.scores[d], gt.boxes[g], gt.ignore[g], thresholds))
    t = len(thresholds)
    if scores:
        s = np.concatenate(scores)
        st = np.concatenate(status, axis=1)
    else:
        s, st = np.zeros(0), np.zeros((t, 0), np.int8)
    order = np.argsort(-s, kind="stable")
    s, st = s[order], st[:, order]
    keep = st != -1
    return ClassCurve(
        [s[keep[k]] for k in range(t)],
        [st[k][keep[k]] == 1 for k in range(t)],
        n_gt,
        len(ground_truth),
        np.asarray(thresholds),
    )


def average_precision(recall: np.ndarray, precision: np.ndarray) -> float:
    """Area under the monotone precision envelope, sampled at 101 recall points (ultralytics/COCO style).

    No detections give 0 (not the area of the padded end points).
    """
    if len(recall) == 0:
        return 0.0
    mrec, mpre = _envelope(recall, precision)
    x = np.linspace(0, 1, 101)
    return float(np.trapezoid(np.interp(x, mrec, mpre), x))


def _envelope(recall: np.ndarray, precision: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Recall with sentinels and the monotone precision envelope; precision falls to 0 just after the last recall."""
    last = recall[-1] if len(recall) else 1.0
    mrec = np.concatenate(([0.0], recall, [last], [1.0]))
    mpre = np.concatenate(([1.0], precision, [0.0], [0.0]))
    return mrec, np.flip(np.maximum.accumulate(np.flip(mpre)))


def log_average_miss_rate(
    fppi: np.ndarray, miss_rate: np.ndarray, fppi_range: tuple[float, float] = (1e-2, 1.0), num_points: int = 9
) -> float:
    """Geometric mean of the miss rate at ``num_points`` FPPI values log-spaced over ``fppi_range``.

    Args:
        fppi: (D,) non-decreasing false positives per image along the score-sorted detections.
        miss_rate: (D,) ``1 - recall`` at the same points.
    """
    fppi = np.concatenate(([-np.inf], np.asarray(fppi, dtype=np.float64)))
    miss = np.concatenate(([1.0], np.asarray(miss_rate, dtype=np.float64)))
    refs = np.logspace(np.log10(fppi_range[0]), np.log10(fppi_range[1]), num_points)
    # Index of the last curve point with fppi <= ref (the prepended -inf point guarantees one exists).
    idx = np.searchsorted(fppi, refs, side="right") - 1
    sampled = miss[idx]
    return float(np.exp(np.mean(np.log(np.maximum(sampled, 1e-10)))))


def recall_at_fppi(fppi: np.ndarray, miss_rate: np.ndarray, at: float = 1.0) -> float:
    """Recall at ``at`` false positives per image: ``1 -`` the miss rate of the curve point with the largest FPPI
    not above ``at`` (0 when the curve starts beyond it), sampled as :func:`log_average_miss_rate` samples."""
    fppi = np.concatenate(([-np.inf], np.asarray(fppi, dtype=np.float64)))
    miss = np.concatenate(([1.0], np.asarray(miss_rate, dtype=np.float64)))
    return float(1.0 - miss[np.searchsorted(fppi, at, side="right") - 1])


@dataclass
class DetMetrics:
    """Summary numbers and the curves behind them."""

    map50: float
    map50_95: float
    precision: float
    recall: float
    miss_rate: float
    ap50_per_class: dict[int, float]
    pr_recall: np.ndarray  # (101,) recall grid
    pr_precision: np.ndarray  # (101,) class-mean precision envelope at IoU 0.5
    mr_fppi: np.ndarray  # FPPI curve of the miss-rate class
    mr_miss: np.ndarray
    n_images: int
    n_gt: int
    recall_1fppi: float = float("nan")

    def row(self) -> dict[str, float]:
        return {
            "mAP50": self.map50,
            "mAP50-95": self.map50_95,
            "precision": self.precision,
            "recall": self.recall,
            "recall_1fppi": self.recall_1fppi,
            "miss_rate": self.miss_rate,
        }


def _pr_at_conf(curve: ClassCurve, confs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Precision and recall (IoU 0.5) when keeping detections with score >= each of ``confs``."""
    s = curve.scores[0]
    tp = np.concatenate(([0], np.cumsum(curve.tp[0])))
    n_kept = np.searchsorted(-s, -confs, side="right")  # scores sorted descending
    prec = np.where(n_kept > 0, tp[n_kept] / np.maximum(n_kept, 1), 0.0)
    rec = tp[n_kept] / max(curve.n_gt, 1)
    return prec, rec


def evaluate_detections(
    predictions: Sequence[Detections],
    ground_truth: Sequence[ImageLabels],
    num_classes: int,
    *,
    miss_rate_class: int = 0,
) -> DetMetrics:
    """All metrics of one detector on one image set.

    Args:
        predictions: per image, in the same order as ``ground_truth`` (pixel frame of the labels).
        num_classes: number of dataset classes.
        miss_rate_class: the pedestrian class whose log-average miss rate is reported (LLVIP/M3FD/MSRS: 0).
    """
    curves = {c: accumulate(predictions, ground_truth, c) for c in range(num_classes)}
    present = [c for c, cv in curves.items() if cv.n_gt > 0]
    grid = np.linspace(0, 1, 101)
    ap = {c: [] for c in present}
    envelopes = []
    for c in present:
        cv = curves[c]
        for k in range(len(cv.thresholds)):
            ap[c].append(average_precision(cv.recall(k), cv.precision(k)))
        envelopes.append(np.interp(grid, *_envelope(cv.recall(0), cv.precision(0))))
    map50 = float(np.mean([ap[c][0] for c in present])) if present else float("nan")
    map50_95 = float(np.mean([np.mean(ap[c]) for c in present])) if present else float("nan")
    confs = np.linspace(0, 1, 1001)
    if present:
        pr = [_pr_at_conf(curves[c], confs) for c in present]
        p = np.mean([x[0] for x in pr], axis=0)
        r = np.mean([x[1] for x in pr], axis=0)
        f1 = 2 * p * r / np.maximum(p + r, 1e-16)
        best = int(np.argmax(f1))
        precision, recall = float(p[best]), float(r[best])
    else:
        precision = recall = float("nan")
    mr_curve = curves.get(miss_rate_class)
    if mr_curve is not None and mr_curve.n_gt > 0:
        fppi, miss = mr_curve.fppi(0), 1.0 - mr_curve.recall(0)
        mr = log_average_miss_rate(fppi, miss)
        r1 = recall_at_fppi(fppi, miss, 1.0)
    else:
        fppi, miss, mr, r1 = np.zeros(0), np.zeros(0), float("nan"), float("nan")
    return DetMetrics(
        map50=map50,
        map50_95=map50_95,
        precision=precision,
        recall=recall,
        miss_rate=mr,
        ap50_per_class={c: ap[c][0] for c in present},
        pr_recall=grid,
        pr_precision=np.mean(envelopes, axis=0) if envelopes else np.zeros_like(grid),
        mr_fppi=fppi,
        mr_miss=miss,
        n_images=len(ground_truth),
        n_gt=sum(cv.n_gt for cv in curves.values()),
        recall_1fppi=r1,
    )
