"""What happens to a fused image before it is saved: the official saving stretch and preview pictures.

The official TC-MoA saves with ``scipy.misc.imsave`` (scipy 1.2.1), which calls ``bytescale``: a global min-max
stretch over the whole ``H x W x 3`` array, ``uint8 = floor((v - min) * 255 / (max - min) + 0.5)``, with a range of 1
when ``max == min`` (docs/tcmoa.md §2.3). :func:`official_bytescale` reproduces it; applied to our ``uint8``
fuser output it differs from the official float computation by at most the ``uint8`` quantisation already done.
"""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np

__all__ = ["official_bytescale", "side_by_side", "contact_sheet"]


def official_bytescale(img: np.ndarray) -> np.ndarray:
    """scipy 1.2.1 ``bytescale(img)`` with default arguments: global min-max stretch to ``uint8`` [0, 255].

    The arithmetic follows scipy's dtypes, so the result equals the official saving bit for bit: a float32 image
    (the model's output) is stretched in float32, integer and float64 images in float64.

    Args:
        img: any real array, e.g. ``(H, W, 3)`` ``uint8`` or float.

    Returns:
        ``uint8`` array of the same shape.
    """
    x = np.asarray(img)
    work = x.dtype if x.dtype in (np.float32, np.float64) else np.dtype(np.float64)
    x = x.astype(work, copy=False)
    lo, hi = x.min(), x.max()
    span = hi - lo if hi != lo else work.type(1.0)
    scale = work.type(255.0) / span
    return (np.clip((x - lo) * scale, 0, 255) + work.type(0.5)).astype(np.uint8)


def _fit_height(img: np.ndarray, height: int) -> np.ndarray:
    if img.shape[0] == height:
        return img
    width = max(1, round(img.shape[1] * height / img.shape[0]))
    return cv2.resize(img, (width, height), interpolation=cv2.INTER_AREA)


def side_by_side(images: Sequence[np.ndarray], *, height: int | None = 256, gap: int = 4) -> np.ndarray:
    """Put ``uint8`` ``(H, W, 3)`` images in one row (e.g. a | b | fused), scaled to ``height`` rows, white gaps.

    Args:
        images: the pictures, left to right.
        height: output height in pixels; ``None`` keeps the first image's height.
        gap: white columns between pictures.
    """
    if not images:
        raise ValueError("side_by_side: expected at least one image")
    h = height or images[0].shape[0]
    parts: list[np.ndarray] = []
    for i, img in enumerate(images):
        if i:
            parts.append(np.full((h, gap, 3), 255, np.uint8))
        parts.append(_fit_height(img, h))
    return np.concatenate(parts, axis=1)


def contact_sheet(rows: Sequence[np.ndarray], *, gap: int = 4) -> np.ndarray:
    """Stack picture rows of one height vertically, left-aligned on a white background."""
    if not rows:
        raise ValueError("contact_sheet: expected at least one row")
    width = max(r.shape[1] for r in rows)
    out: list[np.ndarray] = []
    for i, r in enumerate(rows):
        if i:
            out.append(np.full((gap, width, 3), 255, np.uint8))
        pad = np.full((r.shape[0], width - r.shape[1], 3), 255, np.uint8)
        out.append(np.concatenate([r, pad], axis=1))
    return np.concatenate(out, axis=0)
