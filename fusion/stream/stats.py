"""Timing accumulators for the streaming pipeline: per-stage durations and end-to-end latency percentiles."""

from __future__ import annotations

import threading
from collections import deque

import numpy as np

__all__ = ["Samples", "summarize"]

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
