"""Pair the frames of two readers: by index for files, by nearest arrival time for live sources.

Index pairing fuses every frame: pair ``i`` is frame ``i`` of both sources (a corrupt frame on either side drops that
pair only). Timestamp pairing always returns the *newest* pair whose arrival times differ by at most the tolerance,
discarding everything older, so that the output never lags behind the cameras when fusion is slower than capture.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import Literal

from fusion.stream.reader import Frame, SourceReader
from fusion.utils.logging import get_logger

__all__ = ["Pair", "Pairer", "PairCounters"]

log = get_logger(__name__)

PairMode = Literal["index", "timestamp"]


@dataclass
class Pair:
    """A visible frame and an infrared frame to fuse together (``seq`` counts the pairs delivered)."""

    vis: Frame
    ir: Frame
    seq: int

    @property
    def t_capture(self) -> float:
        """Arrival time of the older frame: end-to-end latency is measured from here."""
        return min(self.vis.t, self.ir.t)


@dataclass
class PairCounters:
    pairs: int = 0
    dropped_corrupt_pairs: int = 0
    used: dict[str, int] = field(default_factory=dict)
    unmatched: dict[str, int] = field(default_factory=dict)
    stale: dict[str, int] = field(default_factory=dict)
    stalled: list[str] = field(default_factory=list)
    ended_first: str | None = None  # the source whose end stopped the pairing (it may have ended with the other)


class Pairer:
    """Deliver pairs from a visible and an infrared :class:`SourceReader` sharing one condition.

    Args:
        vis, ir: the two readers (they must share ``cond``).
        mode: ``"index"`` (files: every frame, in order) or ``"timestamp"`` (live: newest pair within tolerance).
        tolerance_s: largest arrival-time difference accepted in a timestamp pair.
        stall_timeout_s: a source that delivers nothing for this long while we wait is treated as ended.
        stop_event: set to make :meth:`next_pair` return ``None`` promptly.
    """

    def __init__(
        self,
        vis: SourceReader,
        ir: SourceReader,
        *,
        mode: PairMode = "index",
        tolerance_s: float = 0.05,
        stall_timeout_s: float = 10.0,
        stop_event: threading.Event | None = None,
    ):
        if vis.cond is not ir.cond:
            raise ValueError("both readers must share one notify condition")
        if mode not in ("index", "timestamp"):
            raise ValueError(f"mode must be 'index' or 'timestamp', got {mode!r}")
        if tolerance_s < 0 or stall_timeout_s <= 0:
            raise ValueError("tolerance_s must be >= 0 and stall_timeout_s > 0")
        self.vis, self.ir = vis, ir
        self.cond = vis.cond
        self.mode = mode
        self.tolerance_s = tolerance_s
        self.stall_timeout_s = stall_timeout_s
        self.stop_event = stop_event or threading.Event()
        self.counters = PairCounters()
        for r in (vis, ir):
            n = r.source.name
            self.counters.used[n] = 0
            self.counters.unmatched[n] = 0
            self.counters.stale[n] = 0
        self._done = False

    def next_pair(self) -> Pair | None:
        """Block until the next pair is ready; ``None`` when a source has ended, stalled, or stop was requested."""
        if self._done:
            return None
        wait_start = time.monotonic()
        with self.cond:
            while not self.stop_event.is_set():
                pair = self._try_index() if self.mode == "index" else self._try_timestamp()
                if pair is not None:
                    return pair
                if self._ended() or self._stalled(wait_start):
                    break
                self.cond.wait(0.05)
        self._done = True
        return None

    # -- policies (called with the condition held) --------------------------------------------------------------------
    def _try_index(self) -> Pair | None:
        while True:
            pv, pi = self.vis.pending(), self.ir.pending()
            if not pv or not pi:
                return None
            fv, fi = self.vis.pop_first(), self.ir.pop_first()
            assert fv is not None and fi is not None
            if fv.image is None or fi.image is None:
                self.counters.dropped_corrupt_pairs += 1
                continue
            return self._deliver(fv, fi)

    def _try_timestamp(self) -> Pair | None:
        tol = self.tolerance_s
        while True:
            av = [f for f in self.vis.pending() if f.image is not None]
            ai = [f for f in self.ir.pending() if f.image is not None]
            if not av or not ai:
                return None
            nv, ni = av[-1], ai[-1]
            if abs(nv.t - ni.t) <= tol:
                return self._take(nv, ni)
            # The stream whose newest frame is older anchors the pair; its partner is the nearest frame of the other.
            if nv.t < ni.t:
                anchor, anchor_reader, others = nv, self.vis, ai
            else:
                anchor, anchor_reader, others = ni, self.ir, av
            best = min(others, key=lambda f: abs(f.t - anchor.t))
            if abs(best.t - anchor.t) <= tol:
                return self._take(anchor, best) if anchor_reader is self.vis else self._take(best, anchor)
            # No partner now, and none can come later (new frames are newer still): the anchor is unmatchable.
            discarded = anchor_reader.pop_until(anchor)
            self.counters.unmatched[anchor_reader.source.name] += 1
            self.counters.stale[anchor_reader.source.name] += discarded

    def _take(self, fv: Frame, fi: Frame) -> Pair:
        self.counters.stale[self.vis.source.name] += self.vis.pop_until(fv)
        self.counters.stale[self.ir.source.name] += self.ir.pop_until(fi)
        return self._deliver(fv, fi)

    def _deliver(self, fv: Frame, fi: Frame) -> Pair:
        pair = Pair(fv, fi, self.counters.pairs)
        self.counters.pairs += 1
        self.counters.used[self.vis.source.name] += 1
        self.counters.used[self.ir.source.name] += 1
        return pair

    def _ended(self) -> bool:
        for r in (self.vis, self.ir):
            if r.exhausted:
                if self.counters.ended_first is None:
                    self.counters.ended_first = r.source.name
                return True
        return False

    def _stalled(self, wait_start: float) -> bool:
        now = time.monotonic()
        for r in (self.vis, self.ir):
            if r.pending() or r.counters.ended:
                continue
            silent = now - max(r.last_arrival, wait_start)
            if silent > self.stall_timeout_s:
                log.warning("%s: no frame for %.1f s, treating it as stalled; stopping", r.source.name, silent)
                self.counters.stalled.append(r.source.name)
                return True
        return False
