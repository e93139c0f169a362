"""Temporal consistency of a fused video: does it flicker more than its sources?

Two measures, both on gray frames in [0, 255] units:

* **Flicker.** ``|dF|_t`` = mean absolute difference between fused frames ``t`` and ``t-1``, and likewise for each
  source. ``flicker_ratio`` = mean_t |dF|_t / max over sources of mean_t |dS|_t (about 1 or less for a fusion that
  changes only where its sources change); ``flicker_excess`` = mean_t max(0, |dF|_t - max_s |dS|_t) (0 when the
  fused video never changes more than the busier source).
* **Flow-warping error.** Dense optical flow (Farneback) of the reference source (visible by default) from frame
  ``t`` back to ``t-1`` warps fused frame ``t-1`` onto ``t``; ``warp_error`` is the mean absolute difference to fused
  frame ``t`` over the pixels whose flow stays inside the frame. ``warp_error_source`` applies the same warp to the
  reference source itself: it is the floor set by the flow's own errors, and ``warp_error_excess`` is the difference.

:class:`TemporalConsistency` accumulates frame by frame (used live by the streaming pipeline);
:func:`temporal_consistency` takes lists or iterators (e.g. from an evaluation script).
"""

from __future__ import annotations

import functools
from collections.abc import Iterable

import cv2
import numpy as np

__all__ = ["TemporalConsistency", "temporal_consistency"]


def _gray(frame: np.ndarray, size: tuple[int, int] | None) -> np.ndarray:
    f = np.asarray(frame)
    if f.ndim == 3 and f.shape[2] == 3:
        f = cv2.cvtColor(f, cv2.COLOR_RGB2GRAY)
    elif f.ndim == 3 and f.shape[2] == 1:
        f = f[:, :, 0]
    elif f.ndim != 2:
        raise ValueError(f"expected a frame of shape (H, W) or (H, W, 3), got {f.shape}")
    if f.dtype != np.uint8:
        f = np.clip(f, 0, 255).astype(np.uint8)
    if size is not None and (f.shape[1], f.shape[0]) != size:
        f = cv2.resize(f, size, interpolation=cv2.INTER_AREA)
    return f


class TemporalConsistency:
    """Streaming accumulator with constant memory.

    Either call :meth:`update` once per frame (every transition is measured), or hand it independent transitions
    with :meth:`add_transition` (the streaming pipeline does this from a background thread and skips transitions
    when measuring would slow the stream; :attr:`skipped` counts them).

    Args:
        max_side: frames are reduced so that their longer side is at most this (flow is costly); ``None`` keeps
            full size.
        flow: compute the flow-warping error (the flicker measures are cheap, the flow is not).
    """

    def __init__(self, *, max_side: int | None = 320, flow: bool = True):
        if max_side is not None and max_side < 16:
            raise ValueError(f"max_side must be >= 16 or None, got {max_side}")
        self.max_side = max_side
        self.flow = flow
        self._size: tuple[int, int] | None = None
        self._prev: tuple[np.ndarray, list[np.ndarray]] | None = None
        self._n = 0
        self._sum_df = 0.0
        self._sum_ds: np.ndarray | None = None
        self._sum_excess = 0.0
        self._n_warp = 0
        self._sum_warp = 0.0
        self._sum_warp_src = 0.0
        self.frames = 0
        self.skipped = 0

    def _target_size(self, frame: np.ndarray) -> tuple[int, int]:
        h, w = frame.shape[:2]
        if self.max_side is None or max(h, w) <= self.max_side:
            return (w, h)
        s = self.max_side / max(h, w)
        return (max(1, round(w * s)), max(1, round(h * s)))

    def _prepare(self, fused: np.ndarray, sources: tuple[np.ndarray, ...]) -> tuple[np.ndarray, list[np.ndarray]]:
        if not sources:
            raise ValueError("update needs at least one source frame (the flow reference)")
        if self._size is None:
            self._size = self._target_size(fused)
        return _gray(fused, self._size), [_gray(s, self._size) for s in sources]

    def update(self, fused: np.ndarray, *sources: np.ndarray) -> None:
        """Add the next frame: the fused frame and its sources (reference source first, e.g. visible, infrared).

        All frames are brought to the size of the first fused frame (reduced to ``max_side``).
        """
        cur = self._prepare(fused, sources)
        if self._prev is not None:
            self._accumulate(self._prev, cur)
        self._prev = cur
        self.frames += 1

    def add_transition(self, previous: tuple[np.ndarray, ...], current: tuple[np.ndarray, ...]) -> None:
        """Measure one transition between two consecutive frames, each given as ``(fused, reference, *others)``."""
        self._accumulate(self._prepare(previous[0], previous[1:]), self._prepare(current[0], current[1:]))
        self.frames = self._n + 1

    def _accumulate(self, prev: tuple[np.ndarray, list[np.ndarray]], cur: tuple[np.ndarray, list[np.ndarray]]) -> None:
        pf, pss = prev
        f, ss = cur
        if len(pss) != len(ss):
            raise ValueError(f"got {len(ss)} sources, previous frame had {len(pss)}")
        df = float(cv2.absdiff(f, pf).mean())
        ds = np.array([float(cv2.absdiff(s, p).mean()) for s, p in zip(ss, pss)])
        self._n += 1
        self._sum_df += df
        self._sum_ds = ds if self._sum_ds is None else self._sum_ds + ds
        self._sum_excess += max(0.0, df - float(ds.max()))
        if self.flow:
            we, ws = _warp_errors(f, pf, ss[0], pss[0])
            if we is not None and ws is not None:
                self._n_warp += 1
                self._sum_warp += we
                self._sum_warp_src += ws

    def result(self) -> dict[str, float | int | list | None]:
        """The measures (see the module docstring); ``None`` where no transition was measured."""
        out: dict[str, float | int | list | None] = {
            "frames": self.frames,
            "transitions": self._n,
            "skipped_transitions": self.skipped,
            "size": list(self._size) if self._size else None,
            "fused_mean_abs_diff": None,
            "source_mean_abs_diff": None,
            "flicker_ratio": None,
            "flicker_excess": None,
            "warp_error": None,
            "warp_error_source": None,
            "warp_error_excess": None,
        }
        if not self._n or self._sum_ds is None:
            return out
        mean_df = self._sum_df / self._n
        src_mean = self._sum_ds / self._n
        top = float(src_mean.max())
        out["fused_mean_abs_diff"] = round(mean_df, 4)
        out["source_mean_abs_diff"] = [round(float(v), 4) for v in src_mean]
        out["flicker_ratio"] = round(mean_df / top, 4) if top > 1e-9 else None
        out["flicker_excess"] = round(self._sum_excess / self._n, 4)
        if self._n_warp:
            w, ws = self._sum_warp / self._n_warp, self._sum_warp_src / self._n_warp
            out.update(warp_error=round(w, 4), warp_error_source=round(ws, 4), warp_error_excess=round(w - ws, 4))
        return out


@functools.lru_cache(maxsize=4)
def _grid(h: int, w: int) -> tuple[np.ndarray, np.ndarray]:
    gx, gy = np.meshgrid(np.arange(w, dtype=np.float32), np.arange(h, dtype=np.float32))
    gx.flags.writeable = False
    gy.flags.writeable = False
    return gx, gy


def _warp_errors(f: np.ndarray, pf: np.ndarray, s: np.ndarray, ps: np.ndarray) -> tuple[float | None, float | None]:
    # Flow from frame t to t-1: for each pixel of t, where it was in t-1, so remap(t-1, flow) predicts t.
    flow = cv2.calcOpticalFlowFarneback(s, ps, None, 0.5, 3, 15, 3, 5, 1.2, 0)
    h, w = s.shape
    gx, gy = _grid(h, w)
    mx, my = gx + flow[..., 0], gy + flow[..., 1]
    valid = (mx >= 0) & (mx <= w - 1) & (my >= 0) & (my <= h - 1)
    if not valid.any():
        return None, None
    wf = cv2.remap(pf, mx, my, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    ws = cv2.remap(ps, mx, my, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    ef = cv2.absdiff(f, wf)[valid].mean()
    es = cv2.absdiff(s, ws)[valid].mean()
    return float(ef), float(es)


def temporal_consistency(
    fused: Iterable[np.ndarray],
    reference: Iterable[np.ndarray],
    *others: Iterable[np.ndarray],
    max_side: int | None = 320,
    flow: bool = True,
) -> dict[str, float | int | None]:
    """Temporal consistency of a fused sequence against its sources.

    Args:
        fused: fused frames, ``(H, W, 3)`` RGB or ``(H, W)`` gray, uint8.
        reference: the source whose optical flow warps the fused frames (usually the visible stream).
        others: further sources (e.g. the infrared stream) that count for the flicker baseline.
        max_side: reduce frames to this longer side before measuring (``None`` keeps full size).
        flow: also compute the flow-warping error.

    Returns:
        ``frames``, ``transitions``, ``fused_mean_abs_diff``, ``source_mean_abs_diff`` (one per source, reference
        first), ``flicker_ratio``, ``flicker_excess``, ``warp_error``, ``warp_error_source``, ``warp_error_excess``.
        Iteration stops at the shortest input.
    """
    acc = TemporalConsistency(max_side=max_side, flow=flow)
    for frames in zip(fused, reference, *others):
        acc.update(frames[0], *frames[1:])
    return acc.result()

