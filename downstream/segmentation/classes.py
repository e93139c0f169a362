"""Class names and display palettes of the two infrared-visible segmentation benchmarks.

Index 0 is ``unlabeled`` in both; it is a real class of the benchmark protocol (counted in mIoU), not an ignore
value. The names come from :mod:`fusion.data.synthetic` (one table for the scenes and the datasets). Palettes are
RGB; MFNet's is the one of the MFNet/RTFNet reference code so that pictures look familiar.
"""

from __future__ import annotations

# The class tables are defined once, beside the synthetic scenes that draw them (fusion never imports downstream).
from fusion.data.synthetic import FMB_CLASSES, MFNET_CLASSES

__all__ = ["MFNET_CLASSES", "FMB_CLASSES", "MFNET_PALETTE", "FMB_PALETTE", "IGNORE_INDEX"]

IGNORE_INDEX = 255
"""Label value excluded from training and evaluation (padding); the datasets themselves never use it."""

MFNET_PALETTE: tuple[tuple[int, int, int], ...] = (
    (0, 0, 0), (64, 0, 128), (64, 64, 0), (0, 128, 192), (0, 0, 192),
    (128, 128, 0), (64, 64, 128), (192, 128, 128), (192, 64, 0),
)

# Cityscapes colours for the classes both share, distinct colours for the rest.
FMB_PALETTE: tuple[tuple[int, int, int], ...] = (
    (0, 0, 0), (128, 64, 128), (244, 35, 232), (70, 70, 70), (250, 170, 30), (220, 220, 0),
    (107, 142, 35), (70, 130, 180), (220, 20, 60), (0, 0, 142), (0, 0, 70), (0, 60, 100),
    (0, 0, 230), (119, 11, 32), (153, 153, 153),
)
