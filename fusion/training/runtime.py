"""Mechanics shared by every trainer (fusion training, end-to-end finetuning): threads, determinism, the process
group, seeding, DDP wrapping, mixed precision and the optimiser step, resumption, RNG snapshots, collective
checkpoint writes and the averaging of logged values across processes."""

from __future__ import annotations

import os
import random
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from fusion.runners.dist import DistContext, all_gather_object, all_reduce_mean, barrier, init_distributed
from fusion.training.checkpoint import (
    capture_rng,
    find_resume_checkpoint,
    list_checkpoints,
    restore_rng,
    save_training_checkpoint,
)
from fusion.utils.device import resolve_device
from fusion.utils.logging import get_logger

__all__ = [
    "seed_everything",
    "setup_runtime",
    "wrap_ddp",
    "amp_setup",
    "backward_and_step",
    "resolve_resume",
    "rng_snapshot",
    "restore_rng_snapshot",
    "save_checkpoint_collective",
    "reduce_means",
]

log = get_logger(__name__)

AMP_DTYPES: dict[str, torch.dtype | None] = {"none": None, "bf16": torch.bfloat16, "fp16": torch.float16}


def seed_everything(seed: int) -> None:
    """Seed Python's, numpy's and torch's global generators."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def setup_runtime(train_cfg: dict[str, Any]) -> DistContext:
    """Apply ``threads``, ``deterministic`` and ``device`` of a ``train`` config section; join the process group.

    Returns the :class:`~fusion.runners.dist.DistContext` of this process (a single process when not launched
    with ``torchrun``).
    """
    if train_cfg["threads"]:
        torch.set_num_threads(int(train_cfg["threads"]))
    if train_cfg["deterministic"]:
        torch.use_deterministic_algorithms(True, warn_only=True)
        torch.backends.cudnn.benchmark = False
        torch.backends.cudnn.deterministic = True
    return init_distributed(resolve_device(train_cfg["device"]))


def wrap_ddp(module: nn.Module, dist: DistContext) -> nn.Module:
    """``module`` in a ``DistributedDataParallel`` wrapper under torchrun, else ``module`` itself.

    ``find_unused_parameters``: a schedule phase may leave a whole part (fuser or segmenter, a task's router)
    without gradient.
    """
    if not dist.distributed:
        return module
    from torch.nn.parallel import DistributedDataParallel as DDP

    ids = [dist.device.index] if dist.device.type == "cuda" else None
    return DDP(module, device_ids=ids, find_unused_parameters=True)


def amp_setup(amp: str, device: torch.device) -> tuple[torch.dtype | None, torch.amp.GradScaler | None]:
    """``(autocast dtype or None, GradScaler or None)`` for ``train.amp`` = ``none`` | ``bf16`` | ``fp16``
    (only fp16 needs loss scaling)."""
    return AMP_DTYPES[amp], (torch.amp.GradScaler(device.type) if amp == "fp16" else None)


def backward_and_step(loss: torch.Tensor, optimizer: torch.optim.Optimizer, scaler: torch.amp.GradScaler | None,
                      clip: float | None, *, after_backward: Callable[[], None] | None = None) -> None:
    """Backward (scaled under fp16), optional hook (e.g. drop a part's gradients), gradient-norm clipping over the
    optimiser's parameters that have a gradient, optimiser step, zeroed gradients."""
    if scaler is not None:
        scaler.scale(loss).backward()
    else:
        loss.backward()
    if after_backward is not None:
        after_backward()
    params = [p for g in optimizer.param_groups for p in g["params"] if p.grad is not None]
    if scaler is not None:
        if clip:
            scaler.unscale_(optimizer)
            torch.nn.utils.clip_grad_norm_(params, clip)
        scaler.step(optimizer)
        scaler.update()
    else:
        if clip:
            torch.nn.utils.clip_grad_norm_(params, clip)
        optimizer.step()
    optimizer.zero_grad(set_to_none=True)


def resolve_resume(resume: str | os.PathLike | None, ckpt_dir: str | os.PathLike) -> Path | None:
    """The checkpoint to resume from: None (fresh run), ``"auto"`` (newest in ``ckpt_dir``, if any), or a file /
    run folder (:func:`~fusion.training.checkpoint.find_resume_checkpoint`)."""
    if resume is None:
        return None
    if str(resume) == "auto":
        found = list_checkpoints(ckpt_dir)
        return found[-1][1] if found else None
    return find_resume_checkpoint(resume)


def rng_snapshot(dist: DistContext) -> dict[str, Any]:
    """Every process's RNG states, gathered for a checkpoint (collective call)."""
    return {"world_size": dist.world_size, "per_rank": all_gather_object(capture_rng())}


def restore_rng_snapshot(rng: dict[str, Any], dist: DistContext, source: str | os.PathLike) -> None:
    """Restore this process's RNG states from :func:`rng_snapshot`; with another world size they cannot be mapped
    to ranks, so the seeded states stay (with a warning naming ``source``)."""
    if int(rng["world_size"]) == dist.world_size:
        restore_rng(rng["per_rank"][dist.rank])
    else:
        log.warning("%s: saved by %s processes, resumed with %d: random states are re-seeded",
                    source, rng["world_size"], dist.world_size)


def save_checkpoint_collective(state: dict[str, Any], ckpt_dir: str | os.PathLike, iteration: int, keep_last: int,
                               dist: DistContext) -> Path | None:
    """Rank 0 writes ``state`` (:func:`~fusion.training.checkpoint.save_training_checkpoint`); every rank waits.
    Returns the file on rank 0, None elsewhere."""
    path = save_training_checkpoint(state, ckpt_dir, iteration, keep_last) if dist.is_main else None
    barrier()
    return path


def reduce_means(sums: dict[str, float], count: int) -> dict[str, float]:
    """Per-key means of values summed over ``count`` iterations, averaged across processes (collective call)."""
    keys = sorted(sums)
    means = all_reduce_mean(torch.tensor([sums[k] / count for k in keys], dtype=torch.float64))
    return dict(zip(keys, means.tolist()))
