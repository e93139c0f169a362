"""Semantic segmentation on infrared-visible benchmarks (MFNet, FMB) with mmsegmentation.

Importing this package prepares mmseg for this environment (:func:`downstream._compat.prepare_mmseg`) and registers
the project's modules in mmseg's registries: the datasets ``MFNetDataset`` and ``FMBDataset``, the transform
``LoadRGBTImage``, the metric ``RGBTIoUMetric`` and the hook ``TqdmProgressHook``. Configs list it in
``custom_imports``.
"""

import warnings

from downstream._compat import prepare_mmseg

with warnings.catch_warnings():
    # mmcv-lite has no MultiScaleDeformableAttention; no model used here needs it, so the import warning is noise.
    warnings.filterwarnings("ignore", message=".*MultiScaleDeformableAttention.*")
    prepare_mmseg()

from downstream.segmentation.classes import FMB_CLASSES, FMB_PALETTE, MFNET_CLASSES, MFNET_PALETTE  # noqa: E402
from downstream.segmentation.confusion import (  # noqa: E402
    SegScores,
    accuracy_per_class,
    confusion_matrix,
    iou_per_class,
    mean_accuracy,
    mean_iou,
    present_classes,
    segmentation_scores,
)
from downstream.segmentation.datasets import FMBDataset, MFNetDataset, RGBTSegDataset  # noqa: E402
from downstream.segmentation.hooks import TqdmProgressHook  # noqa: E402
from downstream.segmentation.metric import RGBTIoUMetric  # noqa: E402
from downstream.segmentation.transforms import LoadRGBTImage, read_rgbt_sources  # noqa: E402

__all__ = [
    "MFNET_CLASSES",
    "FMB_CLASSES",
    "MFNET_PALETTE",
    "FMB_PALETTE",
    "SegScores",
    "confusion_matrix",
    "iou_per_class",
    "accuracy_per_class",
    "present_classes",
    "mean_iou",
    "mean_accuracy",
    "segmentation_scores",
    "RGBTSegDataset",
    "MFNetDataset",
    "FMBDataset",
    "LoadRGBTImage",
    "read_rgbt_sources",
    "RGBTIoUMetric",
    "TqdmProgressHook",
]
