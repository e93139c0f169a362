"""Optimiser and learning-rate schedule of the official training (docs/tcmoa.md §4).

* AdamW, betas (0.9, 0.95); weight decay 0.05 on trainable weights with >= 2 dimensions, none on 1-D parameters,
  biases, the alphas and the modal shifts (timm ``add_weight_decay`` over the trainable parameters).
* The learning rate is set before every iteration from the fractional epoch ``e = epoch + i / iters_per_epoch``:
  linear warm-up ``lr * e / warmup`` for ``e < warmup``, then a half cosine from ``lr`` down to ``min_lr`` at
  ``epochs``.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import torch
from torch import nn

__all__ = ["lr_at", "param_groups", "build_optimizer", "set_lr"]


def lr_at(epoch_f: float, *, lr: float, min_lr: float, warmup_epochs: float, epochs: float) -> float:
    """Learning rate at fractional epoch ``epoch_f`` (warm-up, then half-cosine to ``min_lr`` at ``epochs``)."""
    if epoch_f < warmup_epochs:
        return lr * epoch_f / warmup_epochs
    span = max(epochs - warmup_epochs, 1e-12)
    progress = min(max((epoch_f - warmup_epochs) / span, 0.0), 1.0)
    return min_lr + (lr - min_lr) * 0.5 * (1.0 + math.cos(math.pi * progress))


def _no_decay(name: str, p: torch.Tensor) -> bool:
    return p.ndim <= 1 or name.endswith(".bias") or name.endswith("modal_shifts")


def param_groups(
    named_params: Iterable[tuple[str, nn.Parameter]],
    weight_decay: float = 0.05,
    *,
    backbone_lr_scale: float = 1.0,
    is_backbone=None,
) -> list[dict]:
    """AdamW parameter groups over the trainable parameters.

    Returns up to four groups (decay / no decay x TC-MoA / backbone), each with ``weight_decay`` and an
    ``lr_scale`` that :func:`set_lr` multiplies into the scheduled rate (``backbone_lr_scale`` for backbone
    parameters when the backbone is trained).
    """
    groups: dict[tuple[bool, bool], dict] = {}
    for name, p in named_params:
        if not p.requires_grad:
            continue
        backbone = bool(is_backbone(name)) if is_backbone is not None else False
        key = (_no_decay(name, p), backbone)
        if key not in groups:
            groups[key] = {
                "params": [],
                "names": [],
                "weight_decay": 0.0 if key[0] else weight_decay,
                "lr_scale": backbone_lr_scale if backbone else 1.0,
            }
        groups[key]["params"].append(p)
        groups[key]["names"].append(name)
    # a stable group order so that optimiser state dicts line up across runs
    return [groups[k] for k in sorted(groups)]


def build_optimizer(groups: list[dict], lr: float, betas: Iterable[float] = (0.9, 0.95)) -> torch.optim.AdamW:
    """AdamW over ``groups`` (names are dropped: the optimiser only keeps tensors and numbers)."""
    clean = [{k: v for k, v in g.items() if k != "names"} for g in groups]
    return torch.optim.AdamW(clean, lr=lr, betas=tuple(betas))


def set_lr(optimizer: torch.optim.Optimizer, lr: float) -> None:
    """Set every group's rate to ``lr * group['lr_scale']``."""
    for g in optimizer.param_groups:
        g["lr"] = lr * g.get("lr_scale", 1.0)
