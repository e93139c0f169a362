"""One reader thread per source, filling a bounded buffer.

Files use a blocking queue (back-pressure: the reader waits for the consumer, so no frame is lost). Live sources use
a short ring buffer that overwrites its oldest frame: a slow consumer then sees only recent frames and the lag
cannot grow. Frames overwritten before anyone took them are counted as dropped.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from dataclasses import dataclass, field

import numpy as np

from fusion.stream.sources import CORRUPT, FrameSource
from fusion.stream.stats import Samples
from fusion.utils.logging import get_logger

__all__ = ["Frame", "SourceReader", "ReaderCounters"]

log = get_logger(__name__)


@dataclass
class Frame:
    """One frame of one source.

    Attributes:
        index: position in the source, counting corrupt frames (so two files stay aligned by index).
        t: ``time.monotonic()`` when the frame was available (arrival time; the capture clock for live sources).
        image: ``uint8`` RGB ``(H, W, 3)``, or ``None`` for a corrupt frame.
        read_s: seconds spent reading/decoding it.
    """

    index: int
    t: float
    image: np.ndarray | None
    read_s: float = 0.0


@dataclass
class ReaderCounters:
    """What happened to one source's frames (reported in the stats)."""

    frames_read: int = 0
    corrupt: int = 0
    dropped_overflow: int = 0
    error: str | None = None
    ended: bool = False
    read_times: Samples = field(default_factory=Samples)


class SourceReader(threading.Thread):
    """Read ``source`` in a daemon thread into a bounded buffer.

    Args:
        source: the frame source; it is closed by this thread when reading ends.
        capacity: buffer size (frames). Files block when it is full; live sources drop the oldest frame.
        notify: a condition shared by all readers, notified on every new frame and at the end (so one consumer can
            wait for "anything new").
        max_frames: stop after this many frames (``None``: until the source ends).
    """

    def __init__(
        self,
        source: FrameSource,
        *,
        capacity: int = 8,
        notify: threading.Condition | None = None,
        max_frames: int | None = None,
    ):
        super().__init__(name=f"reader-{source.name}", daemon=True)
        if capacity < 1:
            raise ValueError(f"capacity must be >= 1, got {capacity}")
        self.source = source
        self.live = source.live
        self.capacity = capacity
        self.max_frames = max_frames
        self.cond = notify or threading.Condition()
        self.counters = ReaderCounters()
        self._buf: deque[Frame] = deque()
        self._stop_evt = threading.Event()
        self.last_arrival = time.monotonic()

    # -- producer side ---------------------------------------------------------------------------------------------
    def run(self) -> None:
        index = 0
        try:
            while not self._stop_evt.is_set():
                if self.max_frames is not None and index >= self.max_frames:
                    break
                t0 = time.monotonic()
                try:
                    img = self.source.read()
                except Exception as exc:  # a broken source must end its stream, never the pipeline
                    self.counters.error = f"{exc.__class__.__name__}: {exc}"
                    log.warning("%s: reading failed, ending this source (%s)", self.source.name, self.counters.error)
                    break
                t1 = time.monotonic()
                if img is None:
                    break
                if img is CORRUPT or not _valid(img):
                    self.counters.corrupt += 1
                    frame = Frame(index, t1, None, t1 - t0)
                else:
                    self.counters.frames_read += 1
                    self.counters.read_times.add(t1 - t0)
                    frame = Frame(index, t1, img, t1 - t0)
                index += 1
                if not self._put(frame):
                    break
        finally:
            try:
                self.source.close()
            except Exception as exc:  # closing a dead camera may fail; nothing left to protect
                log.debug("%s: close failed (%s)", self.source.name, exc)
            with self.cond:
                self.counters.ended = True
                self.cond.notify_all()

    def _put(self, frame: Frame) -> bool:
        with self.cond:
            if self.live:
                if len(self._buf) >= self.capacity:
                    self._buf.popleft()
                    self.counters.dropped_overflow += 1
            else:
                while len(self._buf) >= self.capacity and not self._stop_evt.is_set():
                    self.cond.wait(0.1)
                if self._stop_evt.is_set():
                    return False
            self._buf.append(frame)
            self.last_arrival = frame.t
            self.cond.notify_all()
        return True

    # -- consumer side (call with ``self.cond`` held) ----------------------------------------------------------------
    def pending(self) -> list[Frame]:
        """Frames waiting in the buffer, oldest first (caller holds ``cond``)."""
        return list(self._buf)

    def pop_until(self, frame: Frame) -> int:
        """Remove frames up to and including ``frame``; return how many others were discarded (caller holds cond)."""
        discarded = 0
        while self._buf:
            f = self._buf.popleft()
            if f is frame:
                self.cond.notify_all()
                return discarded
            discarded += 1
        self.cond.notify_all()
        return discarded

    def pop_first(self) -> Frame | None:
        """Take the oldest frame, if any (caller holds ``cond``)."""
        if not self._buf:
            return None
        f = self._buf.popleft()
        self.cond.notify_all()
        return f

    def drop_older_than(self, t: float) -> int:
        """Discard buffered frames that arrived before ``t`` (caller holds ``cond``); return how many."""
        n = 0
        while self._buf and self._buf[0].t < t:
            self._buf.popleft()
            n += 1
        if n:
            self.cond.notify_all()
        return n

    @property
    def exhausted(self) -> bool:
        """Ended and nothing left in the buffer (caller holds ``cond``)."""
        return self.counters.ended and not self._buf

    def stop(self) -> None:
        """Ask the thread to finish (it may be blocked inside a hung ``read``; it is a daemon then)."""
        self._stop_evt.set()
        with self.cond:
            self.cond.notify_all()


def _valid(img: object) -> bool:
    if not isinstance(img, np.ndarray):
        return False
    return img.dtype == np.uint8 and img.ndim == 3 and img.shape[2] == 3 and img.size > 0
