"""Exact speed short-cuts that leave every output bit unchanged."""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["skip_identity_blocks"]


def _identity_forward(x: torch.Tensor, attn_mask: torch.Tensor | None = None) -> torch.Tensor:
    return x


def skip_identity_blocks(model: nn.Module) -> int:
    """Short-cut frozen backbone blocks whose attention and MLP output projections are all zero.

    Such a block computes ``x + 0 + 0``, so skipping it changes nothing, bit for bit, but saves most of the compute
    of a codec-initialised model (the shipped ``tcmoa_tiny``). Only the instance's ``forward`` is replaced (the state
    dict is unchanged); blocks with any trainable parameter are left alone. Returns the number of skipped blocks.
    """
    count = 0
    for blk in [*getattr(model, "blocks", []), *getattr(model, "decoder_blocks", [])]:
        if any(p.requires_grad for p in blk.parameters()):
            continue
        outs = (blk.attn.proj.weight, blk.attn.proj.bias, blk.mlp.fc2.weight, blk.mlp.fc2.bias)
        if all(t is not None and not torch.any(t) for t in outs):
            blk.forward = _identity_forward
            blk.is_identity = True  # _run_blocks then also skips the window permutations around it
            count += 1
    return count
