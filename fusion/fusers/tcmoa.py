"""TC-MoA behind the :class:`~fusion.fusers.base.Fuser` interface.

Specs: ``tcmoa_base:/path/ckpt.pth``, ``tcmoa_large:/path/ckpt.pth``, ``tcmoa_small:/path/ckpt.safetensors`` and
``tcmoa_tiny`` (shipped weights ``fusion/weights/tcmoa_tiny.safetensors`` when present) or ``tcmoa_tiny:/path``.
Settings: ``device`` (``auto``), ``compat`` (``default``/``official``), ``max_pixels`` (2,500,000 padded pixels per
model call: frames up to that run whole), ``tile`` (auto; official 448), ``overlap`` (112), ``amp_dtype``
(``None``/``bf16``/``fp16``), ``batch_size`` (4), ``threads`` (CPU threads, 0: torch's default) and any model
override (e.g. ``num_tasks``).
"""

from __future__ import annotations

import os
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from fusion.errors import CheckpointError, ConfigError, InputError
from fusion.fusers.base import Fuser, check_pair, register_fuser
from fusion.models import TCMoA, create_model, fuse_arrays, resolve_amp_dtype
from fusion.models.inference import DEFAULT_MAX_PIXELS
from fusion.models.shortcuts import skip_identity_blocks
from fusion.utils.device import resolve_device
from fusion.weights import SHIPPED_WEIGHTS

__all__ = ["TCMoAFuser", "SHIPPED_WEIGHTS", "OFFICIAL_CHECKPOINT_HELP", "FUSER_SETTINGS"]

FUSER_SETTINGS = ("device", "compat", "tile", "overlap", "max_pixels", "amp_dtype", "batch_size", "threads")
"""The :class:`TCMoAFuser` settings that are not model config overrides."""


OFFICIAL_CHECKPOINT_HELP = (
    "download the official TC-MoA checkpoint from the links in the README of https://github.com/YangSun22/TC-MoA "
    "(Google Drive / Baidu; the released file is probably the Large model, about 1.37 GB) and pass it as "
    "'{name}:/path/to/checkpoint.pth'"
)


def _default_checkpoint(variant: str) -> Path:
    shipped = SHIPPED_WEIGHTS.get(variant)
    if shipped is not None:
        if shipped.is_file():
            return shipped
        raise CheckpointError(f"{variant}: no shipped weights exist yet ({shipped} is missing); "
                              f"pass a trained checkpoint as '{variant}:/path/to/checkpoint.safetensors'")
    if variant in ("tcmoa_base", "tcmoa_large"):
        raise CheckpointError(f"{variant}: no checkpoint given; " + OFFICIAL_CHECKPOINT_HELP.format(name=variant))
    raise CheckpointError(f"{variant}: no checkpoint given and no shipped weights; pass "
                          f"'{variant}:/path/to/checkpoint' (train one with the project's training pipeline)")


class TCMoAFuser(Fuser):
    """Fuse with a TC-MoA model (any image size, see :func:`fusion.models.fuse_tensors`).

    Args:
        variant: registered model name (``tcmoa_base``, ``tcmoa_large``, ``tcmoa_small``, ``tcmoa_tiny``).
        checkpoint: checkpoint file; None uses the shipped weights of the variant or raises
            :class:`CheckpointError` explaining where to get one.
        device: ``auto``, ``cpu``, ``cuda``, ``cuda:N``.
        compat: ``default`` (padding / feathered tiles) or ``official`` (official resizing, end-anchored tiles and
            the official min-max stretch of the output).
        max_pixels: padded pixels per model call (``compat="default"``): frames that fit run whole, larger ones
            in tiles; bounds the memory.
        tile, overlap: tiling of frames beyond ``max_pixels`` (pixels; ``tile=None``: the largest that fits).
        amp_dtype: ``None`` (float32), ``bf16`` (CPUs with AVX512-BF16/AMX and GPUs) or ``fp16`` (GPU) autocast.
        batch_size: at most this many frames or tiles per model call.
        threads: torch CPU threads for this process (0 leaves torch's default; on a machine shared with other
            jobs, 1 per process avoids oversubscription).
        model: an already built :class:`TCMoA` (skips loading; ``checkpoint`` is then only a label).
        **overrides: model config overrides (e.g. ``num_tasks=4``).
    """

    def __init__(self, variant: str = "tcmoa_base", checkpoint: str | os.PathLike | None = None, *,
                 device: str | torch.device = "auto", compat: str = "default", tile: int | None = None,
                 overlap: int = 112, max_pixels: int = DEFAULT_MAX_PIXELS, amp_dtype: str | torch.dtype | None = None,
                 batch_size: int = 4, threads: int = 0, model: TCMoA | None = None, **overrides: Any) -> None:
        self.name = variant
        self.device = resolve_device(device)
        self.compat = compat
        self.tile = int(tile) if tile else None
        self.overlap = int(overlap)
        self.max_pixels = int(max_pixels)
        self.threads = int(threads)
        if self.threads > 0:
            torch.set_num_threads(self.threads)
        self.amp_dtype = resolve_amp_dtype(amp_dtype)
        self.batch_size = int(batch_size)
        self.overrides = dict(overrides)
        if compat not in ("default", "official"):
            raise InputError(f"{variant}: compat={compat!r}, expected 'default' or 'official'")
        if model is None:
            ckpt = Path(checkpoint) if checkpoint else _default_checkpoint(variant)
            if not ckpt.is_file():
                raise CheckpointError(f"{ckpt}: checkpoint not found")
            self.checkpoint = str(ckpt)
            model = create_model(variant, checkpoint=ckpt, **overrides)
        else:
            self.checkpoint = str(checkpoint) if checkpoint else "<in-memory model>"
        self.model = model.to(self.device).eval()
        # Exact: blocks with zero output projections are identities (the shipped tiny model's frozen codec).
        skipped = skip_identity_blocks(self.model)
        if self.amp_dtype is not None and skipped == len(self.model.blocks) + len(self.model.decoder_blocks):
            # the analytic codec carries the image as small offsets on a large constant direction: bf16/fp16
            # round them away (SSIM of the fused images changes by ~99% on the VIFB pairs)
            raise ConfigError(f"{variant}: amp_dtype={amp_dtype} cannot run a codec backbone (every block an identity)"
                              "; its image lives in small offsets that reduced precision rounds away: use float32")
        cfg = self.model.config
        self.tasks = tuple(cfg.task_names[: cfg.num_tasks])

    def settings(self) -> dict[str, Any]:
        out = {
            "variant": self.name,
            "checkpoint": self.checkpoint,
            "device": str(self.device),
            "compat": self.compat,
            "tile": self.tile,
            "overlap": self.overlap,
            "max_pixels": self.max_pixels,
            "amp_dtype": str(self.amp_dtype).replace("torch.", "") if self.amp_dtype else None,
            "batch_size": self.batch_size,
        }
        out.update(self.overrides)
        return out

    def _run(self, a: np.ndarray, b: np.ndarray, task: str) -> np.ndarray:
        return fuse_arrays(self.model, a, b, task, compat=self.compat, device=self.device, tile=self.tile,
                           overlap=self.overlap, batch_size=self.batch_size, max_pixels=self.max_pixels,
                           amp_dtype=self.amp_dtype)

    def fuse(self, a: np.ndarray, b: np.ndarray, task: str = "vif") -> np.ndarray:
        self.check_task(task)
        check_pair(a, b, self.name)
        return self._run(a, b, task)

    def fuse_batch(self, a: Sequence[np.ndarray], b: Sequence[np.ndarray], task: str = "vif") -> list[np.ndarray]:
        """Fuse several pairs; pairs of equal size go through the model together, ``batch_size`` at a time."""
        self.check_task(task)
        if len(a) != len(b):
            raise InputError(f"{self.name}: got {len(a)} a-images but {len(b)} b-images")
        groups: dict[tuple[int, ...], list[int]] = defaultdict(list)
        for i, (x, y) in enumerate(zip(a, b)):
            check_pair(x, y, f"{self.name} pair {i}")
            groups[x.shape].append(i)
        out: list[np.ndarray | None] = [None] * len(a)
        for idx in groups.values():
            for s in range(0, len(idx), self.batch_size):
                part = idx[s : s + self.batch_size]
                fused = self._run(np.stack([a[i] for i in part]), np.stack([b[i] for i in part]), task)
                for i, img in zip(part, fused):
                    out[i] = img
        return out  # type: ignore[return-value]


@register_fuser("tcmoa_base")
def create_tcmoa_base(checkpoint: str | os.PathLike | None = None, **settings: Any) -> TCMoAFuser:
    """``tcmoa_base:/path/ckpt.pth`` — the official Base size (a checkpoint is required)."""
    return TCMoAFuser("tcmoa_base", checkpoint or None, **settings)


@register_fuser("tcmoa_large")
def create_tcmoa_large(checkpoint: str | os.PathLike | None = None, **settings: Any) -> TCMoAFuser:
    """``tcmoa_large:/path/ckpt.pth`` — the official Large size (a checkpoint is required)."""
    return TCMoAFuser("tcmoa_large", checkpoint or None, **settings)


@register_fuser("tcmoa_small")
def create_tcmoa_small(checkpoint: str | os.PathLike | None = None, **settings: Any) -> TCMoAFuser:
    """``tcmoa_small:/path/ckpt`` — the ViT-S size (a checkpoint is required)."""
    return TCMoAFuser("tcmoa_small", checkpoint or None, **settings)


@register_fuser("tcmoa_tiny")
def create_tcmoa_tiny(checkpoint: str | os.PathLike | None = None, **settings: Any) -> TCMoAFuser:
    """``tcmoa_tiny`` (shipped weights) or ``tcmoa_tiny:/path/ckpt`` — the ViT-Ti size."""
    return TCMoAFuser("tcmoa_tiny", checkpoint or None, **settings)


@register_fuser("tcmoa_tiny_v1")
def create_tcmoa_tiny_v1(checkpoint: str | os.PathLike | None = None, **settings: Any) -> TCMoAFuser:
    """``tcmoa_tiny_v1`` — the first shipped ``tcmoa_tiny`` weights (block-switching codec, no frame margin), kept
    to compare with and to reproduce the tables measured with it. A checkpoint may not be given."""
    if checkpoint:
        raise ConfigError(f"tcmoa_tiny_v1 names fixed weights; use 'tcmoa_tiny:{checkpoint}' for other files")
    return TCMoAFuser("tcmoa_tiny", SHIPPED_WEIGHTS["tcmoa_tiny_v1"], **settings)
