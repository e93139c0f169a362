"""The detector inputs being compared, and the images each one needs on disk.

An *input* is a name:

* ``ir`` / ``vis``: a single modality, the dataset's own files (linked, never copied);
* ``rgbt``: early fusion, a 4-channel PNG (R, G, B, thermal) per pair for a 4-channel detector;
* anything else: a fuser spec (:class:`fusion.fusers.FuserSpec`: ``average``, ``tcmoa_base:/ckpt.pth``, ...), whose
  outputs are kept in the project's one fused-image cache (:class:`fusion.runners.cache.FusedImageCache`,
  ``<cache>/<slug>-<key>/<split>/<id>.png``): a rerun reuses them, a changed setting or checkpoint gets a new folder.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from downstream.detection.datasets import DetSample
from fusion.errors import InputError
from fusion.fusers.spec import RUNTIME_OPTIONS, FuserSpec
from fusion.runners.cache import CacheItem, FusedImageCache, is_fresh
from fusion.utils.io import read_image, write_image
from fusion.utils.logging import get_logger

__all__ = ["SINGLE_INPUTS", "EARLY_FUSION", "input_slug", "input_channels", "input_images", "display_image"]

log = get_logger(__name__)

SINGLE_INPUTS = ("ir", "vis")
EARLY_FUSION = "rgbt"


def input_slug(name: str) -> str:
    """A folder-safe name for an input; specs with arguments get a short hash so that two never collide."""
    if name in SINGLE_INPUTS or name == EARLY_FUSION:
        return name
    return FuserSpec.parse(name).slug


def input_channels(name: str) -> int:
    return 4 if name == EARLY_FUSION else 3


def _rgbt_images(samples: Sequence[DetSample], folder: Path) -> dict[str, Path]:
    out = {}
    for s in tqdm(samples, desc="rgbt", unit="pair", leave=False, disable=None):
        target = folder / f"{s.ident}.png"
        if not is_fresh(target, (s.vis, s.ir)):
            vis, ir = read_image(s.vis, "rgb"), read_image(s.ir, "gray")
            if vis.shape[:2] != ir.shape:
                raise InputError(f"{s.ir}: size {ir.shape[1]}x{ir.shape[0]} differs from {s.vis} "
                                 f"({vis.shape[1]}x{vis.shape[0]})")  # fmt: skip
            write_image(target, np.dstack([vis, ir]))
        out[s.ident] = target
    return out


def _read_pair(item: CacheItem) -> tuple[np.ndarray, np.ndarray]:
    vis, ir = item.sources
    return read_image(vis, "rgb"), read_image(ir, "rgb")


def input_images(
    name: str,
    samples: Sequence[DetSample],
    split: str,
    cache_dir: str | os.PathLike,
    *,
    task: str = "vif",
    fuser_kwargs: dict[str, Any] | None = None,
    batch: int = 8,
    fused_format: str = "png",
) -> dict[str, Path]:
    """``{sample id: image file}`` for input ``name`` on the samples of ``split``, computing what is missing.

    Args:
        name: ``ir``, ``vis``, ``rgbt`` or a fuser spec.
        samples: the pairs (their ``vis``/``ir`` files are only read).
        split: split name, used for the cache folder.
        cache_dir: where fused and 4-channel images are kept (``<cache_dir>/<slug>/<split>/``).
        task: fusion task passed to the fuser (``vif`` for infrared-visible; a = visible, b = infrared).
        fuser_kwargs: fuser settings; ``device`` is a runtime option (not part of the cache key).
        batch: pairs per :meth:`Fuser.fuse_batch` call.
        fused_format: ``png`` (default: lossless, so fused inputs carry no second compression that ``ir``/``vis``
            do not have) or ``jpg`` (quality 95, about 5x smaller: full LLVIP is ~13 GB of PNG per fuser).
            ``rgbt`` is always PNG (4 channels).
    """
    if name == "ir":
        return {s.ident: s.ir for s in samples}
    if name == "vis":
        return {s.ident: s.vis for s in samples}
    if name == EARLY_FUSION:
        return _rgbt_images(samples, Path(cache_dir) / input_slug(name) / split)
    kwargs = dict(fuser_kwargs or {})
    runtime = {k: kwargs.pop(k) for k in RUNTIME_OPTIONS if k in kwargs}
    cache = FusedImageCache(cache_dir, FuserSpec.parse(name, kwargs), task=task, fmt=fused_format)
    items = [CacheItem(s.ident, (s.vis, s.ir)) for s in samples]
    return cache.fill(split, items, _read_pair, runtime=runtime, batch_size=batch, progress=None)


def display_image(name: str, path: Path) -> np.ndarray:
    """An RGB ``(H, W, 3)`` view of an input image for figures (the visible part of a 4-channel image)."""
    img = read_image(path, "unchanged")
    if img.ndim == 2:
        return np.repeat(img[..., None], 3, axis=2)
    return np.ascontiguousarray(img[..., :3])
