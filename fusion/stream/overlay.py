"""Side-by-side view (infrared | visible | fused) with a text overlay, drawn with OpenCV (no GUI calls)."""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np

__all__ = ["side_by_side", "draw_text"]


def draw_text(image: np.ndarray, text: str, org: tuple[int, int] = (8, 22), *, scale: float = 0.6) -> np.ndarray:
    """Draw ``text`` in place on an RGB image, white on a dark box so that it reads on any background."""
    font = cv2.FONT_HERSHEY_SIMPLEX
    (tw, th), base = cv2.getTextSize(text, font, scale, 1)
    x, y = org
    cv2.rectangle(image, (x - 4, y - th - 4), (x + tw + 4, y + base + 2), (0, 0, 0), thickness=-1)
    cv2.putText(image, text, (x, y), font, scale, (255, 255, 255), 1, cv2.LINE_AA)
    return image


def side_by_side(
    frames: Sequence[np.ndarray],
    labels: Sequence[str] = (),
    text: str = "",
    *,
    max_width: int = 1920,
) -> np.ndarray:
    """Concatenate RGB frames horizontally at the height of the first one, label them, and add ``text`` on top.

    Args:
        frames: ``(H_i, W_i, 3)`` uint8 RGB frames (e.g. infrared, visible, fused).
        labels: one short label per frame, drawn in its top-left corner.
        text: status line (FPS, latency) drawn at the bottom-left.
        max_width: the result is scaled down to at most this width.

    Returns:
        ``(H, sum W_i', 3)`` uint8 RGB.
    """
    if not frames:
        raise ValueError("side_by_side needs at least one frame")
    h = frames[0].shape[0]
    panels = []
    for i, f in enumerate(frames):
        if f.ndim == 2:
            f = cv2.cvtColor(f, cv2.COLOR_GRAY2RGB)
        if f.shape[0] != h:
            f = cv2.resize(f, (max(1, round(f.shape[1] * h / f.shape[0])), h), interpolation=cv2.INTER_AREA)
        else:
            f = f.copy()
        if i < len(labels) and labels[i]:
            draw_text(f, labels[i], (8, 22))
        panels.append(f)
    out = np.ascontiguousarray(np.concatenate(panels, axis=1))
    if out.shape[1] > max_width:
        s = max_width / out.shape[1]
        out = cv2.resize(out, (max_width, max(1, round(out.shape[0] * s))), interpolation=cv2.INTER_AREA)
    if text:
        draw_text(out, text, (8, out.shape[0] - 10))
    return out
