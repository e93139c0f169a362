"""Both cores for one image pair: a shared thread pool for metric work.

The metric kernels spend their time in numpy, OpenCV, SciPy, numba and torch calls that release the GIL, so threads
(not processes) run them side by side without copying images. The pool is sized by :func:`metric_threads`: the
``FUSION_METRIC_THREADS`` environment variable if set, else the torch thread count (which ``OMP_NUM_THREADS`` and
``torch.set_num_threads`` set, so a worker process told to use one thread stays serial), at most the number of cores.
The calling thread works too and only waits for items already running, so nested parallel sections cannot deadlock.
What runs through here does not depend on the thread count: every task writes its own output and the reductions run
in a fixed order after the tasks (tested bit for bit).
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

__all__ = ["MIN_PARALLEL_PIXELS", "metric_threads", "parallel_map", "run_parallel"]

T = TypeVar("T")
R = TypeVar("R")

_lock = threading.Lock()
# One pool per size, never shut down while the process lives: a caller may still be using a pool when another
# thread asks for a different size.
_pools: dict[int, ThreadPoolExecutor] = {}


def metric_threads() -> int:
    """Threads one metric evaluation may use (see the module docstring)."""
    import torch

    env = os.environ.get("FUSION_METRIC_THREADS")
    if env:
        return max(1, int(env))
    return max(1, min(torch.get_num_threads(), os.cpu_count() or 1))


def _get_pool(n: int) -> ThreadPoolExecutor:
    with _lock:
        if n not in _pools:
            _pools[n] = ThreadPoolExecutor(max_workers=n, thread_name_prefix="fusion-metrics")
        return _pools[n]


def _forget_pools() -> None:
    # a forked child inherits the pool objects but not their threads
    _pools.clear()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_pools)


#: Below this many pixels per item the hand-offs between threads cost more than they save (measured: VIF of a
#: 256x256 pair took as long on two threads as on one; its 232x312 second scale of a 640x480 pair still gains).
MIN_PARALLEL_PIXELS = 70_000


def parallel_map(fn: Callable[[T], R], items: Iterable[T], *, pixels: int | None = None) -> list[R]:
    """``[fn(x) for x in items]``, the calls spread over :func:`metric_threads` threads; results in input order.

    The calling thread takes part: the items go to the pool's queue, the caller runs the first and then, in order,
    every item no pool thread has started yet; then it waits for the items pool threads took. So a call from inside
    a pool thread (a metric's own parallel section while several metrics run side by side) cannot deadlock; the
    queued items of the caller's sections are picked up by a pool thread that runs out of other work (a pool of
    ``n`` threads beside the caller, rather than ``n - 1``, was measured no faster). Serial when one thread is
    allowed, when there is a single item, or when each item covers fewer than :data:`MIN_PARALLEL_PIXELS`
    ``pixels``. If calls fail, the exception of the first failing item (in input order) is raised here, after every
    item has finished.
    """
    items = list(items)
    n = metric_threads()
    small = pixels is not None and pixels < MIN_PARALLEL_PIXELS
    if n <= 1 or len(items) <= 1 or small:
        return [fn(x) for x in items]
    pool = _get_pool(n - 1)  # the caller is the n-th thread
    futures = [pool.submit(fn, x) for x in items[1:]]
    results: list = [None] * len(items)
    errors: list[BaseException | None] = [None] * len(items)

    def inline(k: int) -> None:
        try:
            results[k] = fn(items[k])
        except BaseException as exc:  # noqa: BLE001 - re-raised below in input order
            errors[k] = exc

    inline(0)
    started = []
    for k, fut in enumerate(futures, start=1):
        if fut.cancel():  # not started by a pool thread: run it here
            inline(k)
        else:
            started.append((k, fut))
    for k, fut in started:
        try:
            results[k] = fut.result()
        except BaseException as exc:  # noqa: BLE001
            errors[k] = exc
    for exc in errors:
        if exc is not None:
            raise exc
    return results


def run_parallel(*calls: Callable[[], R], pixels: int | None = None) -> list[R]:
    """Run argument-less callables with :func:`parallel_map`; their results in order."""
    return parallel_map(lambda c: c(), calls, pixels=pixels)
