"""Temporal consistency of a fused video: does it flicker more than its sources, does it follow their motion?

All measures on gray frames in [0, 255] units (reduced to ``max_side``):

* **Flicker.** ``|dF|_t`` = mean absolute difference between fused frames ``t`` and ``t-1``, and likewise for each
  source. ``flicker_ratio`` = mean_t |dF|_t / max over sources of mean_t |dS|_t (about 1 or less for a fusion that
  changes only where its sources change); ``flicker_excess`` = mean_t max(0, |dF|_t - max_s |dS|_t) (0 when the
  fused video never changes more than the busier source).
* **Flow-warping error** (the temporal warping error of video-consistency work: Lai et al., "Learning Blind Video
  Temporal Consistency", ECCV 2018, with the occlusion mask of Ruder et al., "Artistic Style Transfer for Videos",
  GCPR 2016). Dense optical flow (Farneback) of **each source** from frame ``t`` back to ``t-1`` warps fused frame
  ``t-1`` onto ``t``. A pixel counts for a source's flow only where that flow passes the forward-backward check
  (``|w + ŵ|² < 0.01 (|w|² + |ŵ|²) + 0.5``, ``ŵ`` the backward flow at the forward target: occlusions and
  unreliable flow are excluded) and stays inside the frame. Per pixel the error is the smaller of the sources'
  (content taken from infrared is judged by the infrared motion, content from visible by the visible motion);
  ``warp_error`` is its mean over the pixels valid for at least one source. ``warp_error_source`` applies the same
  rule to the sources themselves (each warped by its own flow): the floor set by the flow's own errors;
  ``warp_error_excess`` is the difference. ``occluded_share`` is the share of pixels no source's flow covers.
* **Fidelity** to the current sources: ``fidelity`` = mean over frames of max over sources of the normalised
  cross-correlation of the fused frame with the source frame of the same instant. A frozen or lagging output has
  perfect flicker and warping scores but a falling fidelity: read the consistency measures beside it.

:class:`TemporalConsistency` accumulates frame by frame (used live by the streaming pipeline, which may skip
transitions to keep its budget); :func:`temporal_consistency` takes lists or iterators and measures every
transition, and :func:`score_videos` scores fused video files offline on every transition
(``pipelines/eval_fusion.py --video``).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

import cv2
import numpy as np

__all__ = ["TemporalConsistency", "temporal_consistency", "score_videos", "read_video_frames"]


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
        self._sum_occluded = 0.0
        self._n_fid = 0
        self._sum_fid = 0.0
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
        self._add_fidelity(f, ss)
        if self.flow:
            res = _warp_errors(f, pf, ss, pss)
            if res is not None:
                self._n_warp += 1
                self._sum_warp += res[0]
                self._sum_warp_src += res[1]
                self._sum_occluded += res[2]

    def _add_fidelity(self, f: np.ndarray, ss: list[np.ndarray]) -> None:
        self._n_fid += 1
        self._sum_fid += max(_ncc(f, s) for s in ss)

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
            "occluded_share": None,
            "fidelity": None,
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
            out.update(warp_error=round(w, 4), warp_error_source=round(ws, 4), warp_error_excess=round(w - ws, 4),
                       occluded_share=round(self._sum_occluded / self._n_warp, 4))
        if self._n_fid:
            out["fidelity"] = round(self._sum_fid / self._n_fid, 4)
        return out


@functools.lru_cache(maxsize=4)
def _grid(h: int, w: int) -> tuple[np.ndarray, np.ndarray]:
    gx, gy = np.meshgrid(np.arange(w, dtype=np.float32), np.arange(h, dtype=np.float32))
    gx.flags.writeable = False
    gy.flags.writeable = False
    return gx, gy


def _ncc(a: np.ndarray, b: np.ndarray) -> float:
    """Normalised cross-correlation of two gray frames (0 when either is constant)."""
    x = a.astype(np.float64).ravel()
    y = b.astype(np.float64).ravel()
    x -= x.mean()
    y -= y.mean()
    den = np.sqrt((x * x).sum() * (y * y).sum())
    return float((x * y).sum() / den) if den > 0 else 0.0


def _flow_and_mask(s: np.ndarray, ps: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Flow from frame t to t-1 (``remap(t-1, mx, my)`` predicts t) and where it is trustworthy: inside the frame and
    consistent with the backward flow (Sundaram et al. 2010's check, as Ruder et al. 2016 use)."""
    fw = cv2.calcOpticalFlowFarneback(s, ps, None, 0.5, 3, 15, 3, 5, 1.2, 0)
    bw = cv2.calcOpticalFlowFarneback(ps, s, None, 0.5, 3, 15, 3, 5, 1.2, 0)
    h, w = s.shape
    gx, gy = _grid(h, w)
    mx, my = gx + fw[..., 0], gy + fw[..., 1]
    inside = (mx >= 0) & (mx <= w - 1) & (my >= 0) & (my <= h - 1)
    bwx = cv2.remap(bw[..., 0], mx, my, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    bwy = cv2.remap(bw[..., 1], mx, my, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    lhs = (fw[..., 0] + bwx) ** 2 + (fw[..., 1] + bwy) ** 2
    rhs = 0.01 * (fw[..., 0] ** 2 + fw[..., 1] ** 2 + bwx**2 + bwy**2) + 0.5
    return mx, my, inside & (lhs < rhs), fw


def _warp_errors(f: np.ndarray, pf: np.ndarray, ss: list[np.ndarray],
                 pss: list[np.ndarray]) -> tuple[float, float, float] | None:
    """(warp error, source floor, occluded share) of one transition, or None when no pixel is covered.

    Per pixel the source flow with the smaller fused error is used, and the floor is that source's own error under
    the same flow (so a fused video equal to one source scores exactly its floor)."""
    efs, ess, oks = [], [], []
    for s, ps in zip(ss, pss):
        mx, my, ok, _ = _flow_and_mask(s, ps)
        ef = cv2.absdiff(f, cv2.remap(pf, mx, my, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE))
        es = cv2.absdiff(s, cv2.remap(ps, mx, my, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE))
        efs.append(np.where(ok, ef.astype(np.float32), np.inf))
        ess.append(es.astype(np.float32))
        oks.append(ok)
    covered = np.logical_or.reduce(oks)
    if not covered.any():
        return None
    ef_all, es_all = np.stack(efs), np.stack(ess)
    pick = np.argmin(ef_all, axis=0)[None]
    err = np.take_along_axis(ef_all, pick, 0)[0][covered]
    floor = np.take_along_axis(es_all, pick, 0)[0][covered]
    return float(err.mean()), float(floor.mean()), float(1 - covered.mean())


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
        reference: one source (usually the visible stream).
        others: further sources (e.g. the infrared stream); every source's flow and frames count (flicker baseline,
            warping, fidelity).
        max_side: reduce frames to this longer side before measuring (``None`` keeps full size).
        flow: also compute the flow-warping error.

    Returns:
        ``frames``, ``transitions``, ``fused_mean_abs_diff``, ``source_mean_abs_diff`` (one per source, reference
        first), ``flicker_ratio``, ``flicker_excess``, ``warp_error``, ``warp_error_source``, ``warp_error_excess``,
        ``occluded_share``, ``fidelity``.
        Iteration stops at the shortest input.
    """
    acc = TemporalConsistency(max_side=max_side, flow=flow)
    for frames in zip(fused, reference, *others):
        acc.update(frames[0], *frames[1:])
    return acc.result()



def read_video_frames(path: str | Path, max_frames: int | None = None) -> Iterator[np.ndarray]:
    """Frames of a video file as RGB uint8 arrays (OpenCV), at most ``max_frames``; a one-line :class:`InputError`
    when it cannot be opened or yields no frame."""
    from fusion.errors import InputError

    cap = cv2.VideoCapture(str(path))
    if not cap.isOpened():
        raise InputError(f"{path}: cannot open it as a video")
    n = 0
    try:
        while max_frames is None or n < max_frames:
            ok, frame = cap.read()
            if not ok:
                break
            n += 1
            yield cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)
    finally:
        cap.release()
    if n == 0:
        raise InputError(f"{path}: no frame could be decoded")


def _count_frames(path: str | Path) -> int:
    cap = cv2.VideoCapture(str(path))
    n = 0
    try:
        while cap.grab():
            n += 1
    finally:
        cap.release()
    return n


def score_videos(vis: str | Path, ir: str | Path, fused: dict[str, str | Path], *, max_side: int | None = 320,
                 max_frames: int | None = None, include_sources: bool = True,
                 progress: Callable[[Iterable, str], Iterable] | None = None) -> list[dict]:
    """Temporal measures of fused videos on **every** transition, offline, one row per method.

    Args:
        vis, ir: the source videos (frames paired by index; the infrared frames are resized to the visible size).
        fused: ``{method: video}``; each is paired by index with the sources. Every row uses the same frames: the
            shortest of all the videos decides the length.
        include_sources: also score the two sources as if they were the output (rows ``vis`` and ``ir``): the
            references a fusion is compared with.
        max_side, max_frames: as :class:`TemporalConsistency`; ``max_frames`` bounds the frames read.
    """
    runs = dict(fused)
    if include_sources:
        runs = {"vis": vis, "ir": ir, **runs}
    # every row on the same frames: the shortest video decides (a live run may have dropped or stopped early)
    length = min(_count_frames(p) for p in {*map(str, runs.values()), str(vis), str(ir)})
    max_frames = length if max_frames is None else min(max_frames, length)
    rows = []
    for name, path in runs.items():
        acc = TemporalConsistency(max_side=max_side, flow=True)
        frames = zip(read_video_frames(path, max_frames), read_video_frames(vis, max_frames),
                     read_video_frames(ir, max_frames))
        if progress is not None:
            frames = progress(frames, name)
        for f, v, i in frames:
            if i.shape[:2] != v.shape[:2]:
                i = cv2.resize(i, (v.shape[1], v.shape[0]), interpolation=cv2.INTER_AREA)
            if f.shape[:2] != v.shape[:2]:
                f = cv2.resize(f, (v.shape[1], v.shape[0]), interpolation=cv2.INTER_AREA)
            acc.update(f, v, i)
        rows.append({"method": name, "video": str(path), **acc.result()})
    return rows
