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
    """Streaming accumulator; call :meth:`update` once per frame, then :meth:`result`.

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
        self._df: list[float] = []
        self._ds: list[list[float]] = []
        self._warp: list[float] = []
        self._warp_src: list[float] = []
        self.frames = 0

    def _target_size(self, frame: np.ndarray) -> tuple[int, int]:
        h, w = frame.shape[:2]
        if self.max_side is None or max(h, w) <= self.max_side:
            return (w, h)
        s = self.max_side / max(h, w)
        return (max(1, round(w * s)), max(1, round(h * s)))

    def update(self, fused: np.ndarray, *sources: np.ndarray) -> None:
        """Add one frame: the fused frame and the source frames (reference source first, e.g. visible, infrared).

        All frames are brought to the size of the first fused frame (reduced to ``max_side``).
        """
        if not sources:
            raise ValueError("update needs at least one source frame (the flow reference)")
        if self._size is None:
            self._size = self._target_size(fused)
        f = _gray(fused, self._size)
        ss = [_gray(s, self._size) for s in sources]
        if self._prev is not None:
            pf, pss = self._prev
            if len(pss) != len(ss):
                raise ValueError(f"got {len(ss)} sources, previous frame had {len(pss)}")
            self._df.append(float(cv2.absdiff(f, pf).mean()))
            self._ds.append([float(cv2.absdiff(s, p).mean()) for s, p in zip(ss, pss)])
            if self.flow:
                we, ws = _warp_errors(f, pf, ss[0], pss[0])
                if we is not None:
                    self._warp.append(we)
                    self._warp_src.append(ws)
        self._prev = (f, ss)
        self.frames += 1

    def result(self) -> dict[str, float | int | None]:
        """The measures (see the module docstring); ``None`` where fewer than two frames were seen."""
        out: dict[str, float | int | None] = {"frames": self.frames, "size": list(self._size) if self._size else None}
        if not self._df:
            out.update(
                fused_mean_abs_diff=None, source_mean_abs_diff=None, flicker_ratio=None, flicker_excess=None,
                warp_error=None, warp_error_source=None, warp_error_excess=None,
            )
            return out
        df = np.asarray(self._df)
        ds = np.asarray(self._ds)  # (T-1, n_sources)
        src_mean = ds.mean(axis=0)
        out["fused_mean_abs_diff"] = round(float(df.mean()), 4)
        out["source_mean_abs_diff"] = [round(float(v), 4) for v in src_mean]
        top = float(src_mean.max())
        out["flicker_ratio"] = round(float(df.mean()) / top, 4) if top > 1e-9 else None
        out["flicker_excess"] = round(float(np.maximum(0.0, df - ds.max(axis=1)).mean()), 4)
        if self._warp:
            w, ws = float(np.mean(self._warp)), float(np.mean(self._warp_src))
            out.update(warp_error=round(w, 4), warp_error_source=round(ws, 4), warp_error_excess=round(w - ws, 4))
        else:
            out.update(warp_error=None, warp_error_source=None, warp_error_excess=None)
        return out


def _warp_errors(f: np.ndarray, pf: np.ndarray, s: np.ndarray, ps: np.ndarray) -> tuple[float | None, float | None]:
    # Flow from frame t to t-1: for each pixel of t, where it was in t-1, so remap(t-1, flow) predicts t.
    flow = cv2.calcOpticalFlowFarneback(s, ps, None, 0.5, 3, 15, 3, 5, 1.2, 0)
    h, w = s.shape
    gx, gy = np.meshgrid(np.arange(w, dtype=np.float32), np.arange(h, dtype=np.float32))
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
        ``frames``, ``fused_mean_abs_diff``, ``source_mean_abs_diff`` (one per source, reference first),
        ``flicker_ratio``, ``flicker_excess``, ``warp_error``, ``warp_error_source``, ``warp_error_excess``.
        Iteration stops at the shortest input.
    """
    acc = TemporalConsistency(max_side=max_side, flow=flow)
    for frames in zip(fused, reference, *others):
        acc.update(frames[0], *frames[1:])
    return acc.result()

