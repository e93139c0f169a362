"""Fuse a dataset split once and keep the images on disk (``<cache>/<split>/<name>.png``), resumable per image."""

from __future__ import annotations

import copy
import json
import os
from pathlib import Path
from typing import Any

from mmengine.registry import DefaultScope
from mmseg.registry import DATASETS
from tqdm import tqdm

from downstream.segmentation.transforms import read_rgbt_sources
from fusion.errors import ConfigError
from fusion.fusers import Fuser, create_fuser
from fusion.utils.io import atomic_write_text, write_image
from fusion.utils.logging import get_logger

__all__ = ["fuse_split"]

log = get_logger(__name__)


def fuse_split(
    dataset_cfg: dict,
    split: str,
    fuser: str | Fuser,
    cache_dir: str | os.PathLike,
    *,
    fuser_settings: dict[str, Any] | None = None,
    batch_size: int = 8,
    progress: bool = True,
) -> Path:
    """Fuse every pair of ``split`` of the dataset described by ``dataset_cfg`` into ``cache_dir/split``.

    Args:
        dataset_cfg: an MFNet/FMB dataset config (its ``data_root`` and ``type`` are used).
        split: ``train``, ``val`` or ``test``.
        fuser: a fuser spec (``"gff"``, ``"tcmoa_base:/ckpt.pth"``) or a built :class:`Fuser`.
        cache_dir: output folder; images already there are kept (resume), a ``fuser.json`` records the spec.
        fuser_settings: keyword settings for :func:`create_fuser`.
        batch_size: pairs per :meth:`Fuser.fuse_batch` call.

    Returns:
        ``cache_dir`` (usable as the datasets' ``fused_dir``).
    """
    cache = Path(cache_dir)
    spec = fuser if isinstance(fuser, str) else fuser.name
    record = {"fuser": spec, "settings": {k: repr(v) for k, v in sorted((fuser_settings or {}).items())}}
    stamp = cache / "fuser.json"
    if stamp.is_file():
        old = json.loads(stamp.read_text(encoding="utf-8"))
        if {k: old.get(k) for k in record} != record:
            raise ConfigError(f"{stamp}: cache was made by {old.get('fuser')!r}, not {spec!r}; use another folder")
    ds_cfg = copy.deepcopy(dict(dataset_cfg))
    ds_cfg.update(split=split, modality="vis", fused_dir=None, fuser=None, pipeline=[], lazy_init=False)
    for key in ("fuser_settings", "indices"):
        ds_cfg.pop(key, None)
    with DefaultScope.overwrite_default_scope("mmseg"):
        dataset = DATASETS.build(ds_cfg)
    infos = [dataset.get_data_info(i) for i in range(len(dataset))]
    todo = [i for i in infos if not (cache / split / f"{i['sample_name']}.png").is_file()]
    if todo:
        engine = fuser if isinstance(fuser, Fuser) else create_fuser(fuser, **(fuser_settings or {}))
        if not stamp.is_file():
            record["settings_reported"] = {k: repr(v) for k, v in engine.settings().items()}
            atomic_write_text(stamp, json.dumps(record, indent=2) + "\n")
        bar = tqdm(total=len(todo), desc=f"fuse {spec} {split}", unit="img", disable=not progress, leave=False)
        for start in range(0, len(todo), batch_size):
            chunk = todo[start:start + batch_size]
            pairs = [read_rgbt_sources(i) for i in chunk]
            fused = engine.fuse_batch([p[0] for p in pairs], [p[1] for p in pairs], "vif")
            for info, img in zip(chunk, fused, strict=True):
                write_image(cache / split / f"{info['sample_name']}.png", img)
            bar.update(len(chunk))
        bar.close()
        log.info("fused %d %s images with %s into %s", len(todo), split, spec, cache / split)
    return cache
