"""Both cores for one image pair: a shared thread pool for metric work.

The metric kernels spend their time in numpy, OpenCV, SciPy and torch calls that release the GIL, so threads (not
processes) run them side by side without copying images. The pool is sized by :func:`metric_threads`: the torch
thread count (which ``OMP_NUM_THREADS`` and ``torch.set_num_threads`` set, so a worker process told to use one thread
stays serial), at most the number of cores. Work submitted from inside a pool thread runs serially in that thread, so
nested parallel sections cannot deadlock. What runs through here does not depend on the thread count: every task
writes its own output and the reductions run in a fixed order after the tasks (tested bit for bit).
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

__all__ = ["metric_threads", "parallel_map", "run_parallel"]

T = TypeVar("T")
R = TypeVar("R")

_local = threading.local()
_lock = threading.Lock()
_pool: ThreadPoolExecutor | None = None
_pool_size = 0


def metric_threads() -> int:
    """Threads one metric evaluation may use: ``torch.get_num_threads()``, capped at the number of cores."""
    import torch

    env = os.environ.get("FUSION_METRIC_THREADS")
    if env:
        return max(1, int(env))
    return max(1, min(torch.get_num_threads(), os.cpu_count() or 1))


def _mark_worker() -> None:
    _local.in_pool = True


def _get_pool(n: int) -> ThreadPoolExecutor:
    global _pool, _pool_size
    with _lock:
        if _pool is None or _pool_size != n:
            if _pool is not None:
                _pool.shutdown(wait=False)
            _pool = ThreadPoolExecutor(max_workers=n, thread_name_prefix="fusion-metrics", initializer=_mark_worker)
            _pool_size = n
        return _pool


def parallel_map(fn: Callable[[T], R], items: Iterable[T]) -> list[R]:
    """``[fn(x) for x in items]``, the calls spread over :func:`metric_threads` threads; results in input order.

    Serial when one thread is allowed, when there is a single item, or when called from a pool thread. The first
    exception raised by a call is re-raised here.
    """
    items = list(items)
    n = metric_threads()
    if n <= 1 or len(items) <= 1 or getattr(_local, "in_pool", False):
        return [fn(x) for x in items]
    return list(_get_pool(n).map(fn, items))


def run_parallel(*calls: Callable[[], R]) -> list[R]:
    """Run argument-less callables with :func:`parallel_map`; their results in order."""
    return parallel_map(lambda c: c(), calls)
