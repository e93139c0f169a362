"""Batch fusion: fuse many pairs into an output folder (the library behind ``pipelines/fuse.py``).

Order of work, so that bad input never leaves partial output:

1. plan: one output per pair, named after source a (``Pair.output_name``); refuse an output folder inside an input
   folder, two pairs with one output, and existing outputs unless ``overwrite`` (or ``skip_existing``, which drops
   the pairs already done, to resume an interrupted run);
2. check: decode every remaining input and compare sizes (threads; decoded pairs are kept while they fit in
   ``cache_bytes``) -- nothing is written, not even the output folder, until every input of every process passed;
3. fuse in batches and write each image atomically (``fusion.utils.io.write_image``);
4. one JSON summary (``fuse_summary.json``), plus a contact sheet with ``grid``.

Launched with ``torchrun`` (``RANK``/``WORLD_SIZE`` set), each process takes every ``WORLD_SIZE``-th pair, uses the GPU
``LOCAL_RANK`` (or the CPU) and writes its own outputs; the processes agree on step 2 through a ``gloo`` all-reduce,
and rank 0 writes the summary after a barrier.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from fusion.data.pairs import RESIZE_POLICIES, Pair, load_pair
from fusion.data.postprocess import contact_sheet, official_bytescale, side_by_side
from fusion.errors import ConfigError, FusionError, InputError
from fusion.fusers.base import Fuser
from fusion.fusers.spec import FuserSpec
from fusion.runners.cache import check_fused
from fusion.runners.dist import DistContext
from fusion.utils.io import IMAGE_EXTENSIONS, atomic_write_text, read_image, write_image
from fusion.utils.logging import get_logger

__all__ = [
    "COMPAT_MODES",
    "SUMMARY_NAME",
    "GRID_DIR",
    "FuseOptions",
    "plan_outputs",
    "check_inputs",
    "fuse_pairs",
]

log = get_logger(__name__)

COMPAT_MODES: tuple[str, ...] = ("default", "official")  # the same words as fusion.models' compat
SUMMARY_NAME = "fuse_summary.json"
GRID_DIR = "_grid"
CONTACT_SHEET = "contact_sheet.jpg"
_SHEET_ROWS = 32  # pairs shown on the contact sheet
_SHEET_HEIGHT = 128


@dataclass
class FuseOptions:
    """How :func:`fuse_pairs` writes.

    Attributes:
        out_dir: output folder (created only once every input passed the checks).
        overwrite: replace existing outputs.
        skip_existing: leave pairs whose output exists alone (resume); exclusive with ``overwrite``.
        compat: ``"default"`` saves the fuser's output unchanged (``"none"``, the earlier spelling, is read as
            ``"default"``); ``"official"`` applies the official global
            min-max stretch (:func:`fusion.data.postprocess.official_bytescale`).
        grid: also write ``_grid/<name>.jpg`` (a | b | fused) per pair and ``_grid/contact_sheet.jpg``.
        batch_size: pairs per ``fuse_batch`` call.
        resize: ``None``, ``"b_to_a"`` or ``"a_to_b"`` for pairs of different sizes.
        ext: output extension (e.g. ``".png"``); ``None`` keeps source a's.
        cache_bytes: decoded pairs kept between the check and the fusion while they fit.
        check_workers: threads decoding inputs during the check.
        progress: show tqdm bars (rank 0 only).
    """

    out_dir: Path
    overwrite: bool = False
    skip_existing: bool = False
    compat: str = "default"
    grid: bool = False
    batch_size: int = 1
    resize: str | None = None
    ext: str | None = None
    cache_bytes: int = 512 * 2**20
    check_workers: int = 4
    progress: bool = True

    def __post_init__(self) -> None:
        self.out_dir = Path(self.out_dir)
        if self.overwrite and self.skip_existing:
            raise ConfigError("--overwrite and --skip-existing exclude each other")
        if self.compat == "none":  # the spelling of earlier versions
            self.compat = "default"
        if self.compat not in COMPAT_MODES:
            raise ConfigError(f"compat {self.compat!r}: expected one of {', '.join(COMPAT_MODES)}")
        if self.batch_size < 1:
            raise ConfigError(f"batch_size {self.batch_size}: expected at least 1")
        if self.resize is not None and self.resize not in RESIZE_POLICIES:
            raise ConfigError(f"resize {self.resize!r}: expected one of {', '.join(RESIZE_POLICIES)}")
        if self.ext is not None:
            self.ext = self.ext if self.ext.startswith(".") else f".{self.ext}"
            if self.ext.lower() not in IMAGE_EXTENSIONS:
                raise ConfigError(f"ext {self.ext!r}: expected one of {', '.join(IMAGE_EXTENSIONS)}")


def _output_path(pair: Pair, options: FuseOptions) -> Path:
    out = options.out_dir / pair.output_name
    return out.with_suffix(options.ext) if options.ext else out


def _grid_path(options: FuseOptions, output: Path) -> Path:
    rel = output.relative_to(options.out_dir)
    return (options.out_dir / GRID_DIR / rel).with_suffix(".jpg")


def _decodes(path: Path) -> bool:
    """True when ``path`` is a complete, decodable image (a kept ``--skip-existing`` output must be)."""
    try:
        read_image(path, mode="unchanged")
    except InputError:
        return False
    return True


def plan_outputs(
    pairs: Sequence[Pair], options: FuseOptions, input_roots: Sequence[str | Path] = ()
) -> tuple[list[Path], list[bool]]:
    """Output path of every pair and whether it is to be (re)written; checks places, collisions and existing files.

    Returns:
        ``(outputs, todo)``, both aligned with ``pairs``; ``todo[i]`` is False for outputs kept by ``skip_existing``.

    Raises:
        InputError: output folder inside an input folder (or a file), two pairs writing one output, or an existing
            output without ``overwrite``/``skip_existing``.
    """
    out_dir = options.out_dir
    if out_dir.exists() and not out_dir.is_dir():
        raise InputError(f"{out_dir}: output path exists and is not a folder")
    input_dirs = {Path(r) for r in input_roots} | {f.parent for p in pairs for f in p.files}
    resolved = {d: d.resolve() for d in input_dirs}
    out_res = out_dir.resolve()
    for d, r in sorted(resolved.items()):
        if out_res == r or r in out_res.parents:
            raise InputError(f"{out_dir}: output folder is inside the input folder {d}; choose another --out")
    for pair in pairs:
        if pair.extract is None and pair.a.resolve() == pair.b.resolve():
            raise InputError(f"{pair.files[0]}: given as both sources of pair {pair.name}; fusing an image with "
                             "itself is not fusion (check --a/--b)")
    outputs = [_output_path(p, options) for p in pairs]
    seen: dict[Path, Pair] = {}
    input_dir_set = set(resolved.values())
    for pair, out in zip(pairs, outputs, strict=True):
        if out in seen:
            raise InputError(f"{out}: pairs {seen[out].name} and {pair.name} would write the same output")
        seen[out] = pair
        if out.parent.resolve() in input_dir_set:
            raise InputError(f"{out}: would be written into an input folder; choose another --out")
    todo = [True] * len(pairs)
    if not out_dir.exists() or options.overwrite:
        return outputs, todo
    extra = [out_dir / SUMMARY_NAME] + ([out_dir / GRID_DIR / CONTACT_SHEET] if options.grid else [])
    for i, out in enumerate(outputs):
        if out.exists():
            if not options.skip_existing:
                raise InputError(f"{out}: output exists (pass --overwrite to replace, or --skip-existing to resume)")
            todo[i] = not _decodes(out)
            if todo[i]:
                log.warning("%s: kept output does not decode (empty or truncated); fusing it again", out)
    if not options.skip_existing:
        for e in extra:
            if e.exists():
                raise InputError(f"{e}: output exists (pass --overwrite to replace, or --skip-existing to resume)")
    return outputs, todo


def check_inputs(
    pairs: Sequence[Pair],
    fuser: Fuser | None = None,
    *,
    resize: str | None = None,
    workers: int = 4,
    cache_bytes: int = 0,
    progress: bool = False,
    task: str | None = None,
) -> dict[int, tuple[np.ndarray, np.ndarray]]:
    """Decode every pair (and check sizes and tasks) before anything is written.

    Returns:
        Decoded pairs by index, as many as fit in ``cache_bytes``, to be reused by the fusion.

    Raises:
        InputError: the first bad pair in listing order (unreadable, truncated, sizes differ, task unsupported).
    """
    if fuser is not None:
        for t in sorted({task or p.task for p in pairs}):
            fuser.check_task(t)
    cache: dict[int, tuple[np.ndarray, np.ndarray]] = {}
    used = 0
    bar = tqdm(total=len(pairs), desc="checking inputs", unit="pair", disable=not progress, leave=False)
    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        futures = [pool.submit(load_pair, p, resize) for p in pairs]
        try:
            for i, fut in enumerate(futures):
                a, b = fut.result()
                bar.update(1)
                if used + a.nbytes + b.nbytes <= cache_bytes:
                    cache[i] = (a, b)
                    used += a.nbytes + b.nbytes
        except BaseException:
            for f in futures:
                f.cancel()
            raise
        finally:
            bar.close()
    return cache


def _batches(indices: Sequence[int], pairs: Sequence[Pair], size: int, task: str | None) -> Iterator[list[int]]:
    """Consecutive chunks of ``indices`` of at most ``size``, never mixing tasks."""
    batch: list[int] = []
    for i in indices:
        if batch and (len(batch) == size or (task or pairs[batch[0]].task) != (task or pairs[i].task)):
            yield batch
            batch = []
        batch.append(i)
    if batch:
        yield batch


def _write_contact_sheet(options: FuseOptions, outputs: Sequence[Path]) -> Path | None:
    rows = []
    for out in outputs:
        g = _grid_path(options, out)
        if g.is_file():
            rows.append(side_by_side([read_image(g)], height=_SHEET_HEIGHT, gap=0))
        if len(rows) == _SHEET_ROWS:
            break
    if not rows:
        return None
    return write_image(options.out_dir / GRID_DIR / CONTACT_SHEET, contact_sheet(rows))


def _check_same_method(options: FuseOptions, key: str | None) -> None:
    """With ``skip_existing``, the kept outputs must come from the same method, settings and weights (``key``)."""
    summary = options.out_dir / SUMMARY_NAME
    if key is None or not options.skip_existing or not summary.is_file():
        return
    try:
        old = json.loads(summary.read_text(encoding="utf-8")).get("cache_key")
    except (OSError, ValueError, AttributeError):
        return
    if old is not None and old != key:
        raise InputError(f"{summary}: the kept outputs were made by another method, setting or checkpoint "
                         f"(key {old}, now {key}); use another --out or --overwrite")


def fuse_pairs(
    pairs: Sequence[Pair],
    fuser: Fuser,
    options: FuseOptions,
    *,
    task: str | None = None,
    input_roots: Sequence[str | Path] = (),
    meta: dict[str, Any] | None = None,
    ctx: DistContext | None = None,
    spec: FuserSpec | None = None,
    key_context: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Fuse ``pairs`` with ``fuser`` into ``options.out_dir`` (see the module doc for the order of work).

    Args:
        pairs: the pairs (the same list on every process).
        fuser: the fusion method.
        options: output options.
        task: overrides every pair's task.
        input_roots: dataset roots / input folders the output must stay out of (pairs' folders are added).
        meta: extra fields for the summary (source, layout, ...).
        spec: the method as parsed (its :meth:`~FuserSpec.cache_key` goes into the summary; ``skip_existing``
            refuses a folder whose summary names another key, so outputs of two methods are never mixed).
        key_context: what else decides the pixels (colour mode ...); with ``options.compat`` part of the key.
        ctx: distributed context; one process when ``None``.

    Returns:
        The summary (on rank 0 the whole run's, elsewhere this process's part).

    Raises:
        InputError / DatasetError: bad input, found before anything is written.
    """
    ctx = ctx or DistContext()
    if not pairs:
        raise InputError("no pairs to fuse")
    start = time.perf_counter()
    show = options.progress and ctx.rank == 0
    key = spec.cache_key(compat=options.compat, **(key_context or {})) if spec is not None else None
    outputs, todo, mine, decoded = _plan_and_check(pairs, fuser, options, task, input_roots, ctx, key, show)
    written = _fuse_and_write(pairs, fuser, options, task, outputs, mine, decoded, show)
    part = {"rank": ctx.rank, "written": written, "seconds": round(time.perf_counter() - start, 3)}
    ctx.barrier()
    parts = ctx.gather(part)
    if ctx.rank != 0:
        return part
    summary: dict[str, Any] = {
        **(meta or {}),
        **({"spec": spec.record(), "cache_key": key} if spec is not None else {}),
        "method": fuser.name,
        "settings": fuser.settings(),
        "task": task or ",".join(sorted({p.task for p in pairs})),
        "pairs": len(pairs),
        "written": sum(p["written"] for p in parts),
        "skipped_existing": todo.count(False),
        "out_dir": str(options.out_dir),
        "compat": options.compat,
        "resize": options.resize,
        "batch_size": options.batch_size,
        "world_size": ctx.world_size,
        "per_rank": parts,
        "seconds": round(time.perf_counter() - start, 3),
    }
    if options.grid:
        sheet = _write_contact_sheet(options, outputs)
        summary["contact_sheet"] = str(sheet) if sheet else None
    atomic_write_text(options.out_dir / SUMMARY_NAME, json.dumps(summary, indent=2, default=str) + "\n")
    log.info("wrote %d fused image(s) to %s (%d kept)", summary["written"], options.out_dir, todo.count(False))
    return summary


def _plan_and_check(
    pairs: Sequence[Pair], fuser: Fuser, options: FuseOptions, task: str | None, input_roots: Sequence[str | Path],
    ctx: DistContext, key: str | None, show: bool,
) -> tuple[list[Path], list[bool], list[int], dict[int, tuple[np.ndarray, np.ndarray]]]:
    """Steps 1-2 of the module doc on every process; all processes agree before anything is written.

    Returns:
        ``(outputs, todo, mine, decoded)``: output paths and to-do flags of all pairs, this process's pair indices,
        and the decoded pairs kept for the fusion.
    """
    error: FusionError | None = None
    outputs: list[Path] = []
    todo: list[bool] = []
    mine: list[int] = []
    decoded: dict[int, tuple[np.ndarray, np.ndarray]] = {}
    try:
        _check_same_method(options, key)
        outputs, todo = plan_outputs(pairs, options, input_roots)
        mine = ctx.shard([i for i, t in enumerate(todo) if t])
        local = check_inputs([pairs[i] for i in mine], fuser, resize=options.resize, workers=options.check_workers,
                             cache_bytes=options.cache_bytes, progress=show, task=task)
        decoded = {mine[k]: v for k, v in local.items()}
    except FusionError as exc:
        error = exc
    if not ctx.all_true(error is None):
        if error is not None:
            raise error
        raise InputError("another process found invalid input; nothing was written")
    return outputs, todo, mine, decoded


def _fuse_and_write(
    pairs: Sequence[Pair], fuser: Fuser, options: FuseOptions, task: str | None, outputs: Sequence[Path],
    mine: Sequence[int], decoded: dict[int, tuple[np.ndarray, np.ndarray]], show: bool,
) -> int:
    """Step 3: fuse this process's pairs in batches (the next batch decodes meanwhile); returns the count written."""
    written = 0
    bar = tqdm(total=len(mine), desc=f"fusing ({fuser.name})", unit="pair", disable=not show)
    with ThreadPoolExecutor(max_workers=1) as prefetcher:

        def load(batch: list[int]) -> list[tuple[np.ndarray, np.ndarray]]:
            return [decoded.pop(i) if i in decoded else load_pair(pairs[i], options.resize) for i in batch]

        batches = list(_batches(mine, pairs, options.batch_size, task))
        pending = prefetcher.submit(load, batches[0]) if batches else None
        for k, batch in enumerate(batches):
            loaded = pending.result()
            pending = prefetcher.submit(load, batches[k + 1]) if k + 1 < len(batches) else None
            t = task or pairs[batch[0]].task
            fused = fuser.fuse_batch([x for x, _ in loaded], [y for _, y in loaded], t)
            for i, (a, b), f in zip(batch, loaded, fused, strict=True):
                check_fused(f, a, fuser.name, pairs[i].a)
                if options.compat == "official":
                    f = official_bytescale(f)
                write_image(outputs[i], f)
                if options.grid:
                    write_image(_grid_path(options, outputs[i]), side_by_side([a, b, f], height=min(256, a.shape[0])))
                written += 1
            bar.update(len(batch))
    bar.close()
    return written
