"""The detector inputs being compared, and the images each one needs on disk.

An *input* is a name:

* ``ir`` / ``vis``: a single modality, the dataset's own files (linked, never copied);
* ``rgbt``: early fusion, a 4-channel PNG (R, G, B, thermal) per pair for a 4-channel detector;
* anything else: a fuser spec for :func:`fusion.fusers.create_fuser` (``average``, ``tcmoa_base:/ckpt.pth``, ...),
  whose outputs are cached under ``<cache>/<slug>/<split>/<id>.png`` together with the fuser's settings, so a
  rerun reuses them and a changed setting recomputes them.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from downstream.detection.datasets import DetSample
from fusion.errors import InputError
from fusion.fusers import create_fuser
from fusion.utils.io import atomic_write_text, read_image, write_image
from fusion.utils.logging import get_logger

__all__ = ["SINGLE_INPUTS", "EARLY_FUSION", "input_slug", "input_channels", "input_images", "display_image"]

log = get_logger(__name__)

SINGLE_INPUTS = ("ir", "vis")
EARLY_FUSION = "rgbt"


def input_slug(name: str) -> str:
    """A folder-safe name for an input; specs with arguments get a short hash so that two never collide."""
    base = re.sub(r"[^A-Za-z0-9_.-]+", "_", name.split(":", 1)[0]).strip("._") or "input"
    if ":" in name or base != name:
        return f"{base}-{hashlib.sha1(name.encode()).hexdigest()[:8]}"
    return base


def input_channels(name: str) -> int:
    return 4 if name == EARLY_FUSION else 3


def _newer(target: Path, *sources: Path) -> bool:
    try:
        t = target.stat().st_mtime
    except FileNotFoundError:
        return False
    return all(t >= s.stat().st_mtime for s in sources)


def _rgbt_images(samples: Sequence[DetSample], folder: Path) -> dict[str, Path]:
    out = {}
    for s in tqdm(samples, desc="rgbt", unit="pair", leave=False, disable=None):
        target = folder / f"{s.ident}.png"
        if not _newer(target, s.vis, s.ir):
            vis, ir = read_image(s.vis, "rgb"), read_image(s.ir, "gray")
            if vis.shape[:2] != ir.shape:
                raise InputError(f"{s.ir}: size {ir.shape[1]}x{ir.shape[0]} differs from {s.vis} "
                                 f"({vis.shape[1]}x{vis.shape[0]})")  # fmt: skip
            write_image(target, np.dstack([vis, ir]))
        out[s.ident] = target
    return out


def _request(spec: str, task: str, fuser_kwargs: dict[str, Any]) -> dict[str, Any]:
    """What decides the cached pixels: spec, task, settings (not the device) and the checkpoint file's identity."""
    req: dict[str, Any] = {"spec": spec, "task": task}
    req["settings"] = {k: str(v) for k, v in sorted(fuser_kwargs.items()) if k != "device"}
    arg = spec.partition(":")[2]
    if arg and Path(arg).is_file():
        st = Path(arg).stat()
        req["checkpoint"] = {"size": st.st_size, "mtime": int(st.st_mtime)}
    return req


def _fused_images(
    spec: str,
    samples: Sequence[DetSample],
    folder: Path,
    *,
    task: str,
    fuser_kwargs: dict[str, Any],
    batch: int,
    fmt: str,
) -> dict[str, Path]:
    targets = {s.ident: folder / f"{s.ident}.{fmt}" for s in samples}
    record_path = folder.parent / "fuser.json"
    request = _request(spec, task, fuser_kwargs)
    try:
        same = json.loads(record_path.read_text(encoding="utf-8")).get("request") == request
    except (OSError, ValueError, AttributeError):
        same = False
    todo = [s for s in samples if not (same and _newer(targets[s.ident], s.vis, s.ir))]
    if not todo:
        return targets
    if not same:
        if record_path.exists():
            log.info("%s: fuser settings changed, recomputing the cached images", spec)
        for t in targets.values():  # our own cache files; stale ones must not survive an interrupted rerun
            t.unlink(missing_ok=True)
    fuser = create_fuser(spec, **fuser_kwargs)
    record = {"request": request, "fuser": fuser.name, "repr": repr(fuser)}
    # Written before the images: an interrupted run leaves a record that matches, and images that are simply missing.
    atomic_write_text(record_path, json.dumps(record, indent=2, sort_keys=True))
    bar = tqdm(total=len(todo), desc=f"fuse {spec}", unit="pair", leave=False, disable=None)
    for i in range(0, len(todo), batch):
        chunk = todo[i : i + batch]
        a = [read_image(s.vis, "rgb") for s in chunk]
        b = [read_image(s.ir, "rgb") for s in chunk]
        for s, x, y in zip(chunk, a, b, strict=True):
            if x.shape != y.shape:
                raise InputError(f"{s.ir}: size {y.shape[1]}x{y.shape[0]} differs from {s.vis} "
                                 f"({x.shape[1]}x{x.shape[0]})")  # fmt: skip
        fused = fuser.fuse_batch(a, b, task)
        for s, f, x in zip(chunk, fused, a, strict=True):
            if f.shape != x.shape or f.dtype != np.uint8:
                raise InputError(f"fuser {spec!r} returned {f.shape} {f.dtype} for {s.ident}, expected {x.shape} uint8")
            write_image(targets[s.ident], f)
        bar.update(len(chunk))
    bar.close()
    return targets


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
        fuser_kwargs: settings for :func:`create_fuser` (e.g. ``device``).
        batch: pairs per :meth:`Fuser.fuse_batch` call.
        fused_format: ``png`` (default: lossless, so fused inputs carry no second compression that ``ir``/``vis``
            do not have) or ``jpg`` (quality 95, about 5x smaller: full LLVIP is ~13 GB of PNG per fuser).
            ``rgbt`` is always PNG (4 channels).
    """
    if name == "ir":
        return {s.ident: s.ir for s in samples}
    if name == "vis":
        return {s.ident: s.vis for s in samples}
    folder = Path(cache_dir) / input_slug(name) / split
    if name == EARLY_FUSION:
        return _rgbt_images(samples, folder)
    if fused_format not in ("png", "jpg"):
        raise InputError(f"fused_format={fused_format!r}: expected png or jpg")
    return _fused_images(
        name, samples, folder, task=task, fuser_kwargs=dict(fuser_kwargs or {}), batch=batch, fmt=fused_format
    )


def display_image(name: str, path: Path) -> np.ndarray:
    """An RGB ``(H, W, 3)`` view of an input image for figures (the visible part of a 4-channel image)."""
    img = read_image(path, "unchanged")
    if img.ndim == 2:
        return np.repeat(img[..., None], 3, axis=2)
    return np.ascontiguousarray(img[..., :3])
