"""How salient labelled targets are in an image: local luma contrast of boxes against a ring around them.

Used to check that fusion keeps thermal targets (people) standing out as they do in infrared
(``benchmarks/thermal_salience.py``).
"""

from __future__ import annotations

import numpy as np

__all__ = ["box_contrasts", "kept_contrast"]


def box_contrasts(luma: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """``(N,)`` contrast ``mean(box) - mean(ring)`` of ``luma`` ``(H, W)`` (e.g. the Y plane of
    :func:`fusion.data.color.split_luma_chroma`) for ``boxes`` ``(N, 4)`` x1, y1, x2, y2.

    The ring is the box grown by half its width/height on each side, clipped to the image, minus the box. A box
    with no pixel inside the image or an empty ring gives NaN.
    """
    if luma.ndim != 2:
        raise ValueError(f"box_contrasts: expected luma of shape (H, W), got {luma.shape}")
    h, w = luma.shape
    out = np.full(len(boxes), np.nan)
    for i, (x1, y1, x2, y2) in enumerate(np.asarray(boxes, dtype=np.float64).reshape(-1, 4)):
        bx1, by1 = max(int(np.floor(x1)), 0), max(int(np.floor(y1)), 0)
        bx2, by2 = min(int(np.ceil(x2)), w), min(int(np.ceil(y2)), h)
        if bx2 <= bx1 or by2 <= by1:
            continue
        gw, gh = (x2 - x1) / 2, (y2 - y1) / 2
        rx1, ry1 = max(int(np.floor(x1 - gw)), 0), max(int(np.floor(y1 - gh)), 0)
        rx2, ry2 = min(int(np.ceil(x2 + gw)), w), min(int(np.ceil(y2 + gh)), h)
        inner = luma[by1:by2, bx1:bx2]
        outer = luma[ry1:ry2, rx1:rx2]
        ring_n = outer.size - inner.size
        if ring_n <= 0:
            continue
        out[i] = inner.mean() - (outer.sum() - inner.sum()) / ring_n
    return out


def kept_contrast(fused: np.ndarray, ir: np.ndarray) -> tuple[float, float]:
    """(kept infrared contrast, share of boxes kept at >= half the infrared contrast with its sign)."""
    ok = np.isfinite(fused) & np.isfinite(ir) & (ir != 0)
    f, r = fused[ok], ir[ok]
    if not len(r):
        return float("nan"), float("nan")
    signed = f * np.sign(r)
    return float(signed.sum() / np.abs(r).sum()), float(np.mean(signed >= 0.5 * np.abs(r)))
