"""Segmentation scores from a confusion matrix, computed the way the infrared-visible field computes them.

Protocol (RTFNet ``util/util.py::compute_results`` with ``consider_unlabeled=True``, copied by SegMiF; the reference
for MFNet and FMB numbers in fusion papers):

* one confusion matrix over **all** classes, ``unlabeled`` (index 0) included; rows are ground truth, columns are
  predictions; pixels labelled ``ignore_index`` are left out;
* per-class IoU = TP / (TP + FP + FN), per-class accuracy (recall) = TP / (TP + FN); undefined (0/0) values are NaN;
* **mIoU** = ``mean(nan_to_num(iou))`` over every class (RTFNet/SegMiF print this one): a class that never occurs in
  the ground truth counts as 0 whether it is predicted or not;
* **mIoU_present** = mean IoU over the classes that occur in the ground truth (FMB's test split has no ``bicycle``
  pixel, so its all-class mIoU is capped at 14/15);
* **mIoU_nanmean** = ``nanmean(iou)`` (CMX-style code, e.g. MRFS): leaves out classes that are neither in the
  ground truth nor predicted, keeps absent-but-predicted ones at 0. It equals mIoU_present when no absent class is
  predicted, and mIoU when every class occurs.

mAcc / mAcc_present follow the first two rules for per-class accuracy; aAcc is the overall pixel accuracy.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

__all__ = [
    "confusion_matrix",
    "iou_per_class",
    "accuracy_per_class",
    "present_classes",
    "mean_iou",
    "mean_accuracy",
    "SegScores",
    "segmentation_scores",
]


def _as_numpy(x) -> np.ndarray:
    if hasattr(x, "detach"):  # torch tensor, without importing torch here
        x = x.detach().cpu().numpy()
    return np.asarray(x)


def confusion_matrix(pred, label, num_classes: int, ignore_index: int = 255) -> np.ndarray:
    """Pixel confusion matrix of one or many label maps.

    Args:
        pred: predicted class ids, any integer array/tensor shape, e.g. (H, W) or (B, H, W).
        label: ground-truth class ids, same shape as ``pred``; ``ignore_index`` marks pixels to leave out.
        num_classes: C, the number of classes (``unlabeled`` included).
        ignore_index: label value excluded from the count.

    Returns:
        (C, C) int64 matrix ``m`` with ``m[gt, pred]`` pixel counts.

    Raises:
        ValueError: shapes differ, or a label/prediction lies outside ``[0, C)`` (other than ``ignore_index``).
    """
    p = _as_numpy(pred)
    g = _as_numpy(label)
    if p.shape != g.shape:
        raise ValueError(f"prediction shape {p.shape} differs from label shape {g.shape}")
    if num_classes < 1:
        raise ValueError(f"num_classes must be >= 1, got {num_classes}")
    p = p.reshape(-1).astype(np.int64)
    g = g.reshape(-1).astype(np.int64)
    keep = g != ignore_index
    p, g = p[keep], g[keep]
    if g.size and (g.min() < 0 or g.max() >= num_classes):
        raise ValueError(f"label values must lie in [0, {num_classes}) or equal {ignore_index}, "
                         f"got range [{g.min()}, {g.max()}]")
    if p.size and (p.min() < 0 or p.max() >= num_classes):
        raise ValueError(f"predictions must lie in [0, {num_classes}), got range [{p.min()}, {p.max()}]")
    counts = np.bincount(g * num_classes + p, minlength=num_classes * num_classes)
    return counts.reshape(num_classes, num_classes).astype(np.int64)


def _check_conf(conf: np.ndarray) -> np.ndarray:
    c = np.asarray(conf)
    if c.ndim != 2 or c.shape[0] != c.shape[1]:
        raise ValueError(f"confusion matrix must have shape (C, C), got {c.shape}")
    return c.astype(np.float64)


def iou_per_class(conf: np.ndarray) -> np.ndarray:
    """(C,) IoU per class, NaN where the class is neither in the ground truth nor predicted."""
    c = _check_conf(conf)
    tp = np.diag(c)
    union = c.sum(axis=1) + c.sum(axis=0) - tp
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(union > 0, tp / union, np.nan)


def accuracy_per_class(conf: np.ndarray) -> np.ndarray:
    """(C,) per-class accuracy (recall, TP / ground-truth pixels), NaN where the class has no ground truth."""
    c = _check_conf(conf)
    gt = c.sum(axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(gt > 0, np.diag(c) / gt, np.nan)


def present_classes(conf: np.ndarray) -> np.ndarray:
    """(C,) bool: which classes have at least one ground-truth pixel."""
    return _check_conf(conf).sum(axis=1) > 0


def _mean(values: np.ndarray, conf: np.ndarray, over: str) -> float:
    if over == "all":
        return float(np.mean(np.nan_to_num(values, nan=0.0)))
    if over == "present":
        mask = present_classes(conf)
        return float(np.mean(values[mask])) if mask.any() else float("nan")
    if over == "defined":
        return float(np.nanmean(values)) if np.isfinite(values).any() else float("nan")
    raise ValueError(f"over must be 'all', 'present' or 'defined', got {over!r}")


def mean_iou(conf: np.ndarray, over: str = "all") -> float:
    """Mean IoU: ``over="all"`` is the field's number (every class, NaN counted as 0); ``"present"`` averages the
    classes that occur in the ground truth; ``"defined"`` is ``nanmean`` (classes with a defined IoU)."""
    return _mean(iou_per_class(conf), conf, over)


def mean_accuracy(conf: np.ndarray, over: str = "all") -> float:
    """Mean per-class accuracy with the same two averaging rules as :func:`mean_iou`."""
    return _mean(accuracy_per_class(conf), conf, over)


@dataclass(frozen=True)
class SegScores:
    """All scores of one evaluation. Fractions in [0, 1]; per-class values may be NaN (undefined)."""

    classes: tuple[str, ...]
    miou: float
    miou_present: float
    miou_nanmean: float
    macc: float
    macc_present: float
    aacc: float
    iou: dict[str, float] = field(default_factory=dict)
    acc: dict[str, float] = field(default_factory=dict)
    present: tuple[str, ...] = ()
    num_pixels: int = 0

    def as_dict(self) -> dict[str, float]:
        """Flat ``{"mIoU", "mIoU_present", "mIoU_nanmean", "mAcc", "mAcc_present", "aAcc", "IoU.<class>",
        "Acc.<class>"}`` (the keys the metric reports)."""
        out = {"mIoU": self.miou, "mIoU_present": self.miou_present, "mIoU_nanmean": self.miou_nanmean,
               "mAcc": self.macc, "mAcc_present": self.macc_present, "aAcc": self.aacc}
        out.update({f"IoU.{k}": v for k, v in self.iou.items()})
        out.update({f"Acc.{k}": v for k, v in self.acc.items()})
        return out


def segmentation_scores(conf: np.ndarray, classes: Sequence[str]) -> SegScores:
    """Every score of :mod:`this module <downstream.segmentation.confusion>` from a (C, C) confusion matrix."""
    c = _check_conf(conf)
    if len(classes) != c.shape[0]:
        raise ValueError(f"got {len(classes)} class names for a {c.shape[0]}-class confusion matrix")
    iou = iou_per_class(c)
    acc = accuracy_per_class(c)
    total = c.sum()
    present = present_classes(c)
    return SegScores(
        classes=tuple(classes),
        miou=mean_iou(c, "all"),
        miou_present=mean_iou(c, "present"),
        miou_nanmean=mean_iou(c, "defined"),
        macc=mean_accuracy(c, "all"),
        macc_present=mean_accuracy(c, "present"),
        aacc=float(np.trace(c) / total) if total > 0 else float("nan"),
        iou={n: float(v) for n, v in zip(classes, iou)},
        acc={n: float(v) for n, v in zip(classes, acc)},
        present=tuple(n for n, p in zip(classes, present) if p),
        num_pixels=int(total),
    )
