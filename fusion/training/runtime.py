"""Process set-up shared by every trainer: threads, determinism, the process group, seeding."""

from __future__ import annotations

import random
from typing import Any

import numpy as np
import torch

from fusion.training.distributed import DistInfo, init_distributed
from fusion.utils.device import resolve_device

__all__ = ["seed_everything", "setup_runtime"]


def seed_everything(seed: int) -> None:
    """Seed Python's, numpy's and torch's global generators."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def setup_runtime(train_cfg: dict[str, Any]) -> DistInfo:
    """Apply ``threads``, ``deterministic`` and ``device`` of a ``train`` config section; join the process group.

    Returns the :class:`~fusion.training.distributed.DistInfo` of this process (a single process when not launched
    with ``torchrun``).
    """
    if train_cfg["threads"]:
        torch.set_num_threads(int(train_cfg["threads"]))
    if train_cfg["deterministic"]:
        torch.use_deterministic_algorithms(True, warn_only=True)
        torch.backends.cudnn.benchmark = False
        torch.backends.cudnn.deterministic = True
    return init_distributed(resolve_device(train_cfg["device"]))
