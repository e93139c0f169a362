"""What a streaming run measures and reports: per-stage durations, end-to-end latency percentiles, the output
rate, and the per-source counts of the stats dictionary (:func:`source_stats`, :func:`stage_stats`)."""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from fusion.utils.logging import get_logger

if TYPE_CHECKING:
    from fusion.stream.pairing import PairCounters
    from fusion.stream.reader import SourceReader

__all__ = ["Samples", "summarize", "StageTimers", "OutputClock", "source_stats", "stage_stats", "ended_first",
           "jsonable", "summary_line"]

log = get_logger(__name__)

# Percentiles are taken over the most recent samples, so that an hours-long camera session keeps bounded memory.
_KEEP = 100_000


class Samples:
    """Thread-safe accumulator of durations in seconds: exact count/total/max, percentiles over the last 100k."""

    def __init__(self) -> None:
        self.count = 0
        self.total = 0.0
        self.max = 0.0
        self._recent: deque[float] = deque(maxlen=_KEEP)
        self._lock = threading.Lock()

    def add(self, seconds: float) -> None:
        with self._lock:
            self.count += 1
            self.total += seconds
            self.max = max(self.max, seconds)
            self._recent.append(seconds)

    def values(self) -> np.ndarray:
        with self._lock:
            return np.asarray(self._recent, dtype=np.float64)

    def summary_ms(self) -> dict[str, float | int]:
        """``count``, ``total_s`` and ``mean``/``p50``/``p90``/``p99``/``max`` in milliseconds."""
        return summarize(self.values(), count=self.count, total=self.total, peak=self.max)


def summarize(
    seconds: np.ndarray, *, count: int | None = None, total: float | None = None, peak: float | None = None
) -> dict[str, float | int]:
    """Summarise durations (seconds) as milliseconds; an empty input gives ``count=0`` and no percentiles."""
    v = np.asarray(seconds, dtype=np.float64)
    n = int(v.size if count is None else count)
    out: dict[str, float | int] = {"count": n, "total_s": round(float(v.sum() if total is None else total), 6)}
    if v.size == 0:
        return out
    p50, p90, p99 = np.percentile(v, [50, 90, 99]) * 1e3
    mean = (float(v.sum()) if total is None else total) / max(n, 1) * 1e3
    out.update(
        mean_ms=round(mean, 3),
        p50_ms=round(float(p50), 3),
        p90_ms=round(float(p90), 3),
        p99_ms=round(float(p99), 3),
        max_ms=round(float(v.max() if peak is None else peak) * 1e3, 3),
    )
    return out


@dataclass
class StageTimers:
    """Durations of the pipeline's own stages (the readers time their reads themselves) and the latency."""

    register: Samples = field(default_factory=Samples)
    fuse: Samples = field(default_factory=Samples)
    perceive: Samples = field(default_factory=Samples)
    write: Samples = field(default_factory=Samples)
    temporal: Samples = field(default_factory=Samples)
    latency: Samples = field(default_factory=Samples)


class OutputClock:
    """When fused frames reached the outputs: the count, the first and last times, and a recent-rate window."""

    def __init__(self, window: int = 30) -> None:
        self.frames = 0
        self.first: float | None = None
        self.last: float | None = None
        self._window = window
        self._recent: list[float] = []

    def tick(self, t: float) -> None:
        self.frames += 1
        self.first = self.first or t
        self.last = t
        self._recent = (self._recent + [t])[-self._window :]

    def recent_fps(self) -> float:
        r = self._recent
        return (len(r) - 1) / (r[-1] - r[0]) if len(r) > 1 and r[-1] > r[0] else 0.0

    def steady_fps(self) -> float | None:
        """Frames per second between the first and the last output (start-up excluded); ``None`` before two."""
        if self.frames > 1 and self.first and self.last and self.last > self.first:
            return (self.frames - 1) / (self.last - self.first)
        return None

    def status_text(self, latency: float) -> str:
        return f"{self.recent_fps():5.1f} FPS | latency {latency * 1e3:6.1f} ms | frame {self.frames}"


def source_stats(readers: Sequence[SourceReader], pc: PairCounters) -> dict[str, dict[str, Any]]:
    """Per source: its description, frames read / used / corrupt / dropped (by cause), stall, error, end."""
    sources = {}
    for r in readers:
        c = r.counters
        name = r.source.name
        sources[name] = {
            **r.source.describe(),
            "frames_read": c.frames_read,
            "corrupt": c.corrupt,
            "used": pc.used.get(name, 0),
            "dropped": max(0, c.frames_read - pc.used.get(name, 0)),
            "dropped_overflow": c.dropped_overflow,
            "dropped_unmatched": pc.unmatched.get(name, 0),
            "dropped_stale": pc.stale.get(name, 0),
            "stalled": name in pc.stalled,
            "error": c.error,
            "ended": c.ended,
        }
    return sources


def stage_stats(readers: Sequence[SourceReader], timers: StageTimers) -> dict[str, dict[str, float | int]]:
    """``read_<source>``, ``register``, ``fuse``, ``perceive``, ``write``, ``temporal`` summaries in milliseconds."""
    stages = {f"read_{r.source.name}": r.counters.read_times.summary_ms() for r in readers}
    stages.update(
        register=timers.register.summary_ms(),
        fuse=timers.fuse.summary_ms(),
        perceive=timers.perceive.summary_ms(),
        write=timers.write.summary_ms(),
        temporal=timers.temporal.summary_ms(),
    )
    return stages


def ended_first(readers: Sequence[SourceReader], candidate: str | None) -> str | None:
    """The source that ran out of frames before the other (``None`` when both had as many)."""
    if candidate is None:
        return None
    counts = {r.source.name: r.counters.frames_read + r.counters.corrupt for r in readers}
    other = [n for n in counts if n != candidate]
    if other and counts[other[0]] > counts[candidate]:
        log.info("%s ended before %s", candidate, other[0])
        return candidate
    return None


def jsonable(obj: Any) -> Any:
    """``obj`` with tuples as lists, numpy scalars as numbers and anything else unknown as its ``str``."""
    if isinstance(obj, dict):
        return {str(k): jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [jsonable(v) for v in obj]
    if isinstance(obj, (str, int, float, bool)) or obj is None:
        return obj
    if isinstance(obj, np.generic):
        return obj.item()
    return str(obj)


def summary_line(stats: dict[str, Any]) -> str:
    """One line for the end of a run: frames, method, time, FPS, latency percentiles, outputs, interruption."""
    lat = stats["latency_ms"]
    outputs = stats["outputs"]
    return (
        f"{stats['frames_out']} frames fused by {stats['method']} in {stats['wall_s']:.1f} s "
        f"({stats['fps'] or 0.0:.1f} FPS, latency p50 {lat.get('p50_ms')} ms, p99 {lat.get('p99_ms')} ms)"
        + (f" -> {', '.join(outputs)}" if outputs else "")
        + (" [interrupted]" if stats["interrupted"] else "")
    )
