"""Fuse a segmentation dataset split into the project's fused-image cache (:mod:`fusion.runners.cache`).

The cache's folder (``<root>/<slug>-<key>``) is then the datasets' ``fused_dir``: images are read back as
``<fused_dir>/<split>/<sample name>.png``.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from mmengine.registry import DefaultScope
from mmseg.registry import DATASETS

from downstream.segmentation.transforms import read_rgbt_sources
from fusion.fusers import Fuser
from fusion.runners.cache import CacheItem, FusedImageCache

__all__ = ["fuse_split"]


def fuse_split(
    dataset_cfg: dict,
    split: str,
    cache: FusedImageCache,
    *,
    fuser: Fuser | None = None,
    runtime: Mapping[str, Any] | None = None,
    batch_size: int = 8,
    progress: bool = True,
) -> Path:
    """Fuse every pair of ``split`` of the dataset described by ``dataset_cfg`` into ``cache`` (what is missing).

    Args:
        dataset_cfg: an MFNet/FMB dataset config (its ``data_root`` and ``type`` are used).
        split: ``train``, ``val`` or ``test``.
        cache: the method's fused-image cache.
        fuser: an already built fuser (else the cache builds it from its spec, only when something is missing).
        runtime: runtime options for building the fuser (``device``).
        batch_size: pairs per :meth:`Fuser.fuse_batch` call.

    Returns:
        The cache folder (usable as the datasets' ``fused_dir``).
    """
    ds_cfg = copy.deepcopy(dict(dataset_cfg))
    ds_cfg.update(split=split, modality="vis", fused_dir=None, fuser=None, pipeline=[], lazy_init=False)
    for key in ("fuser_settings", "indices"):
        ds_cfg.pop(key, None)
    with DefaultScope.overwrite_default_scope("mmseg"):
        dataset = DATASETS.build(ds_cfg)
    infos = {}
    for i in range(len(dataset)):
        info = dataset.get_data_info(i)
        infos[info["sample_name"]] = info
    items = [CacheItem(name, tuple(Path(info[k]) for k in ("vis_path", "ir_path") if info.get(k)))
             for name, info in infos.items()]
    cache.fill(split, items, lambda item: read_rgbt_sources(infos[item.ident]), fuser=fuser, runtime=runtime,
               batch_size=batch_size, progress=progress)
    return cache.folder
