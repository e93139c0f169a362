"""``RGBTIoUMetric``: the infrared-visible segmentation protocol as an mmengine/mmseg metric.

Use it in a config as ``val_evaluator = dict(type="RGBTIoUMetric")``. It reports percentages (like mmseg's
``IoUMetric``): ``mIoU`` (every class, ``unlabeled`` counted, the papers' number), ``mIoU_present`` (classes present in
the ground truth), ``mIoU_nanmean`` (CMX/MRFS-style), ``mAcc``, ``mAcc_present``, ``aAcc`` and ``IoU.<class>`` for every
class. The arithmetic and the exact definitions live in :mod:`downstream.segmentation.confusion`.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from mmengine.evaluator import BaseMetric
from mmseg.registry import METRICS

from downstream.segmentation.classes import IGNORE_INDEX
from downstream.segmentation.confusion import SegScores, confusion_matrix, segmentation_scores
from fusion.utils.logging import get_logger

__all__ = ["RGBTIoUMetric", "scores_to_percent"]

log = get_logger(__name__)


def scores_to_percent(scores: SegScores, *, with_acc: bool = False) -> dict[str, float]:
    """The metric's flat result dict (percent, 2 decimals) from :class:`SegScores`; NaN stays NaN."""
    out = {}
    for key, value in scores.as_dict().items():
        if key.startswith("Acc.") and not with_acc:
            continue
        out[key] = float(np.round(value * 100.0, 2)) if np.isfinite(value) else float("nan")
    return out


@METRICS.register_module()
class RGBTIoUMetric(BaseMetric):
    """Confusion-matrix IoU over all classes (``unlabeled`` included), as RTFNet/SegMiF/MRFS compute it.

    Args:
        ignore_index: label value left out of the count (padding).
        per_class_acc: also report ``Acc.<class>``.
        collect_device: where results are gathered in distributed runs (``cpu`` or ``gpu``).
        prefix: optional prefix of the reported keys.
    """

    default_prefix = ""  # keys stay "mIoU", "IoU.car" (mmseg's IoUMetric style), without mmengine's warning

    def __init__(self, ignore_index: int = IGNORE_INDEX, per_class_acc: bool = False,
                 collect_device: str = "cpu", prefix: str | None = None, **kwargs) -> None:
        super().__init__(collect_device=collect_device, prefix=prefix)
        self.ignore_index = ignore_index
        self.per_class_acc = per_class_acc
        self.last_scores: SegScores | None = None
        self.last_confusion: np.ndarray | None = None

    def process(self, data_batch: dict, data_samples: Sequence[dict]) -> None:
        """Add each sample's (C, C) confusion matrix to ``self.results``."""
        num_classes = len(self.dataset_meta["classes"])
        for sample in data_samples:
            pred = sample["pred_sem_seg"]["data"].squeeze()
            label = sample["gt_sem_seg"]["data"].squeeze()
            self.results.append(confusion_matrix(pred, label, num_classes, self.ignore_index))

    def compute_metrics(self, results: list) -> dict[str, float]:
        """Sum the confusion matrices and compute the scores (percent)."""
        classes = tuple(self.dataset_meta["classes"])
        conf = np.sum(np.stack(results), axis=0) if results else np.zeros((len(classes),) * 2, np.int64)
        scores = segmentation_scores(conf, classes)
        self.last_confusion = conf
        self.last_scores = scores
        per_class = ", ".join(f"{k} {100 * v:.1f}" for k, v in scores.iou.items())
        log.info("mIoU %.2f (present classes %.2f), mAcc %.2f; IoU: %s",
                 100 * scores.miou, 100 * scores.miou_present, 100 * scores.macc, per_class)
        return scores_to_percent(scores, with_acc=self.per_class_acc)
