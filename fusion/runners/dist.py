"""The one distributed context of the project: batch fusion, training, e2e finetuning and the segmentation comparison.

Launch any of them with ``torchrun --nproc_per_node N <script> ...``: torchrun sets ``RANK``, ``LOCAL_RANK`` and
``WORLD_SIZE``; without them everything runs in one process and every collective here is a no-op.

Backends: collectives on CPU tensors (the batch fuser's input agreement, object gathers) work with ``gloo`` whatever
device computes; DDP training on GPUs wants ``nccl``. :meth:`DistContext.init` picks ``nccl`` for a CUDA device and
``gloo`` otherwise unless told.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import timedelta
from typing import Any

import torch
import torch.distributed as dist

from fusion.errors import ConfigError
from fusion.utils.device import resolve_device
from fusion.utils.logging import get_logger

__all__ = ["DistContext", "init_distributed", "cleanup_distributed", "barrier", "all_gather_object",
           "all_reduce_mean", "is_initialized"]

log = get_logger(__name__)


def is_initialized() -> bool:
    """True inside a process group (ours or one mmengine started)."""
    return dist.is_available() and dist.is_initialized()


@dataclass
class DistContext:
    """The process's place in a ``torchrun`` launch, and the device it computes on.

    Attributes:
        rank: this process's index in ``[0, world_size)``.
        world_size: number of processes (1 without ``torchrun``).
        local_rank: index on this node; picks the GPU.
        device: the device this process computes on.
    """

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    _owns_group: bool = field(default=False, repr=False, compare=False)

    @classmethod
    def from_env(cls) -> DistContext:
        """Read ``RANK``/``WORLD_SIZE``/``LOCAL_RANK`` (one process when unset).

        Raises:
            ConfigError: values that are not integers or a rank outside ``[0, WORLD_SIZE)``.
        """
        try:
            rank = int(os.environ.get("RANK", "0"))
            world = int(os.environ.get("WORLD_SIZE", "1"))
            local = int(os.environ.get("LOCAL_RANK", str(rank)))
        except ValueError as exc:
            raise ConfigError(f"RANK/WORLD_SIZE/LOCAL_RANK must be integers ({exc})") from None
        if world < 1 or not 0 <= rank < world:
            raise ConfigError(f"RANK={rank} WORLD_SIZE={world}: expected 0 <= RANK < WORLD_SIZE")
        return cls(rank, world, local)

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def with_device(self, requested: str | torch.device) -> DistContext:
        """This context computing on ``requested``; under ``torchrun``, ``auto``/``cuda`` mean ``cuda:LOCAL_RANK``."""
        dev = resolve_device(requested)
        if dev.type == "cuda" and self.distributed and (dev.index is None or
                                                        str(requested).strip().lower() in ("auto", "cuda")):
            count = torch.cuda.device_count()
            if self.local_rank >= count:
                log.warning("LOCAL_RANK %d but only %d GPU(s): processes share GPUs", self.local_rank, count)
            dev = torch.device(f"cuda:{self.local_rank % count}")
        if dev.type == "cuda":
            torch.cuda.set_device(dev)
        return replace(self, device=dev)

    def init(self, backend: str | None = None, timeout_s: float = 1800.0) -> None:
        """Join the process group (no-op for one process or when a group exists already)."""
        if self.distributed and not is_initialized():
            backend = backend or ("nccl" if self.device.type == "cuda" else "gloo")
            dist.init_process_group(backend, rank=self.rank, world_size=self.world_size,
                                    timeout=timedelta(seconds=timeout_s))
            self._owns_group = True

    def close(self) -> None:
        """Leave the process group if this context created it."""
        if self._owns_group and is_initialized():
            dist.destroy_process_group()
            self._owns_group = False

    def shard(self, items: Sequence[Any]) -> list[Any]:
        """Every ``world_size``-th item starting at ``rank``."""
        return list(items[self.rank :: self.world_size])

    def all_true(self, flag: bool) -> bool:
        """True when ``flag`` is true on every process."""
        if not self.distributed:
            return flag
        t = torch.tensor([int(flag)], dtype=torch.int64)
        dist.all_reduce(t, op=dist.ReduceOp.MIN)
        return bool(t.item())

    def barrier(self) -> None:
        if self.distributed:
            barrier()

    def gather(self, obj: Any) -> list[Any]:
        """``[obj of rank 0, obj of rank 1, ...]``."""
        return all_gather_object(obj) if self.distributed else [obj]


def init_distributed(device: torch.device) -> DistContext:
    """The context of this process, joined to the ``torchrun`` group if there is one.

    ``device`` is the device the user asked for; with CUDA each process takes ``cuda:LOCAL_RANK``.
    """
    ctx = DistContext.from_env()
    if not ctx.distributed:
        return replace(ctx, device=device)
    ctx = ctx.with_device("cuda" if device.type == "cuda" else device)
    ctx.init()
    return ctx


def cleanup_distributed() -> None:
    if is_initialized():
        dist.destroy_process_group()


def barrier() -> None:
    if is_initialized():
        dist.barrier()


def all_gather_object(obj: Any) -> list[Any]:
    """``[obj of rank 0, obj of rank 1, ...]`` (``[obj]`` without a process group)."""
    if not is_initialized():
        return [obj]
    out: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(out, obj)
    return out


def all_reduce_mean(value: torch.Tensor) -> torch.Tensor:
    """Mean of a tensor over processes (a copy; the input is unchanged)."""
    if not is_initialized():
        return value.detach().clone()
    out = value.detach().clone()
    dist.all_reduce(out, op=dist.ReduceOp.SUM)
    return out / dist.get_world_size()
