"""The one fused-image cache: fuse each pair once per method, settings and weights, and keep the images on disk.

Used by the segmentation comparison (``seg_eval.py``) and the detection comparison (``det_eval.py``); the batch
fuser (``fuse.py``) records the same key in its summary. One rule everywhere:

* a method's images live in ``<root>/<slug>-<key>/<split>/<ident>.<ext>``, where ``key`` is
  :meth:`FuserSpec.cache_key` of the spec, its settings, the checkpoint file's identity (path, size, time) and the
  context (task, dataset root ...). A changed setting or retrained weights get a new folder: nothing is deleted,
  nothing is refused, and going back to an earlier setting finds its images again;
* an image is reused when it exists and is at least as new as its sources; otherwise it is fused again. Images are
  written atomically, so an interrupted run leaves only complete images and resumes where it stopped;
* ``fuser.json`` in the method's folder says what made the images (spec, settings, weights, context, fuser settings).
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from fusion.errors import ConfigError, InputError
from fusion.fusers.base import Fuser
from fusion.fusers.spec import FuserSpec
from fusion.utils.io import atomic_write_text, write_image
from fusion.utils.logging import get_logger

__all__ = ["CacheItem", "FusedImageCache", "RECORD_NAME", "check_fused", "is_fresh"]

log = get_logger(__name__)

RECORD_NAME = "fuser.json"
FORMATS = ("png", "jpg")

Loader = Callable[["CacheItem"], tuple[np.ndarray, np.ndarray]]


@dataclass(frozen=True)
class CacheItem:
    """One pair to fuse: ``ident`` names the output image; ``sources`` are the files it is read from."""

    ident: str
    sources: tuple[Path, ...]


def check_fused(fused: Any, like: np.ndarray, who: str, where: str | os.PathLike) -> None:
    """Raise :class:`InputError` unless ``fused`` is ``uint8`` with the shape of source ``like``."""
    if not isinstance(fused, np.ndarray) or fused.dtype != np.uint8 or fused.shape != like.shape:
        got = (getattr(fused, "shape", None), getattr(fused, "dtype", None))
        raise InputError(f"{where}: {who} returned {got}, expected uint8 {like.shape}")


def is_fresh(target: Path, sources: Sequence[Path]) -> bool:
    """True when ``target`` exists and is at least as new as every existing source."""
    try:
        t = target.stat().st_mtime
    except FileNotFoundError:
        return False
    return all(t >= s.stat().st_mtime for s in sources if s.exists())


class FusedImageCache:
    """Fused images of one method under ``root`` (see the module doc for the rule).

    Args:
        root: the cache root (e.g. ``<run>/fused``).
        spec: the method (a spec string or :class:`FuserSpec`, settings included).
        task: fusion task passed to the fuser.
        fmt: ``png`` (lossless) or ``jpg`` (quality 95).
        context: more facts that decide the pixels (dataset root, ...); part of the key.
    """

    def __init__(self, root: str | os.PathLike, spec: str | FuserSpec, *, task: str = "vif", fmt: str = "png",
                 context: Mapping[str, Any] | None = None) -> None:
        if fmt not in FORMATS:
            raise ConfigError(f"fused image format {fmt!r}: expected one of {', '.join(FORMATS)}")
        self.spec = FuserSpec.parse(spec)
        self.task = task
        self.fmt = fmt
        self.context = dict(context or {})
        self.key = self.spec.cache_key(task=task, fmt=fmt, **self.context)
        self.folder = Path(root) / f"{self.spec.slug}-{self.key}"

    def path(self, split: str, ident: str) -> Path:
        """Where the fused image of ``ident`` in ``split`` is kept."""
        return self.folder / split / f"{ident}.{self.fmt}"

    def missing(self, split: str, items: Sequence[CacheItem]) -> list[CacheItem]:
        """The items whose image is absent or older than one of its sources."""
        return [it for it in items if not is_fresh(self.path(split, it.ident), it.sources)]

    def _write_record(self, fuser: Fuser) -> None:
        record = {**self.spec.record(), "task": self.task, "format": self.fmt, "context": self.context,
                  "key": self.key, "fuser": fuser.name, "settings_reported": {k: repr(v) for k, v in
                                                                               fuser.settings().items()}}
        atomic_write_text(self.folder / RECORD_NAME, json.dumps(record, indent=2, sort_keys=True, default=str) + "\n")

    def fill(
        self,
        split: str,
        items: Sequence[CacheItem],
        load: Loader,
        *,
        fuser: Fuser | None = None,
        runtime: Mapping[str, Any] | None = None,
        batch_size: int = 8,
        progress: bool | None = True,
    ) -> dict[str, Path]:
        """Fuse what is missing of ``items`` and return ``{ident: image path}`` for all of them.

        Args:
            split: sub-folder (``train``, ``test`` ...).
            items: the pairs.
            load: reads an item's two sources as ``uint8`` ``(H, W, 3)`` arrays (a, b in the task's roles).
            fuser: an already built fuser (else built from the spec with ``runtime`` options, only when needed).
            runtime: runtime options (``device`` ...) for building the fuser.
            batch_size: pairs per :meth:`Fuser.fuse_batch` call.
            progress: show a tqdm bar (``None``: only on a terminal).

        Raises:
            InputError: unreadable sources, sources of different sizes, or a fuser output of the wrong shape.
        """
        if batch_size < 1:
            raise ConfigError(f"batch_size {batch_size}: expected at least 1")
        todo = self.missing(split, items)
        if todo:
            engine = fuser if fuser is not None else self.spec.build(**dict(runtime or {}))
            self._write_record(engine)
            bar = tqdm(total=len(todo), desc=f"fuse {self.spec} {split}", unit="pair", leave=False,
                       disable=None if progress is None else not progress)
            for start in range(0, len(todo), batch_size):
                chunk = todo[start:start + batch_size]
                pairs = [load(it) for it in chunk]
                for it, (a, b) in zip(chunk, pairs, strict=True):
                    if a.shape != b.shape:
                        raise InputError(f"{it.sources[-1]}: size {b.shape[1]}x{b.shape[0]} differs from "
                                         f"{it.sources[0]} ({a.shape[1]}x{a.shape[0]})")
                fused = engine.fuse_batch([a for a, _ in pairs], [b for _, b in pairs], self.task)
                for it, (a, _), f in zip(chunk, pairs, fused, strict=True):
                    check_fused(f, a, f"fuser {engine.name}", it.sources[0])
                    write_image(self.path(split, it.ident), f)
                bar.update(len(chunk))
            bar.close()
            log.info("fused %d %s pair(s) with %s into %s", len(todo), split, self.spec, self.folder / split)
        return {it.ident: self.path(split, it.ident) for it in items}
