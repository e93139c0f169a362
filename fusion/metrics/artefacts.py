"""Artefact measures a person sees in fused images: 8x8 block artefacts and lost colour.

* :func:`blockiness`: on luma, the mean absolute gradient across the borders of ``block``-pixel blocks divided by
  the mean absolute gradient everywhere else (both directions pooled). About 1 for natural images; above 1 when the
  image switches between blocks (codec-like fusion that decides per 8x8 block shows as steps at every 8th pixel).
* :func:`chroma`: the mean colourfulness ``sqrt(Cb² + Cr²)`` (BT.601, 0..255 scale) of an RGB image; 0 for grey.

Both take ``(N, C, H, W)`` tensors holding 0..255 (``C`` = 1 or 3) and return ``(N,)`` float64. The ``artefacts``
metric profile (``fusion.metrics.profiles``) reports them for fused images and against the sources.
"""

from __future__ import annotations

import torch

__all__ = ["luma", "blockiness", "chroma"]


def _check(x: torch.Tensor) -> None:
    if x.dim() != 4 or x.shape[1] not in (1, 3):
        raise ValueError(f"expected (N, C, H, W) with C = 1 or 3, got {tuple(x.shape)}")


def luma(x: torch.Tensor) -> torch.Tensor:
    """BT.601 luma ``0.299 R + 0.587 G + 0.114 B`` of ``(N, 3, H, W)``, or the grey plane of ``(N, 1, H, W)``:
    ``(N, H, W)``."""
    _check(x)
    if x.shape[1] == 1:
        return x[:, 0].double()
    x = x.double()
    return 0.299 * x[:, 0] + 0.587 * x[:, 1] + 0.114 * x[:, 2]


def blockiness(x: torch.Tensor, block: int = 8) -> torch.Tensor:
    """Mean |gradient| across ``block``-pixel block borders over the mean |gradient| inside blocks, on luma.

    Transitions between pixel ``j`` and ``j + 1`` (along rows and columns) are border transitions when
    ``(j + 1) % block == 0``. Returns ``(N,)``; ``inf`` for an image whose blocks are flat inside but differ.
    """
    if block < 2:
        raise ValueError(f"block={block}: must be >= 2")
    y = luma(x)
    if min(y.shape[1:]) <= block:
        raise ValueError(f"image {tuple(y.shape[1:])} is not larger than one {block}x{block} block")
    dx = (y[:, :, 1:] - y[:, :, :-1]).abs()
    dy = (y[:, 1:, :] - y[:, :-1, :]).abs()
    bx = (torch.arange(1, y.shape[2], device=y.device) % block) == 0
    by = (torch.arange(1, y.shape[1], device=y.device) % block) == 0
    border_sum = dx[:, :, bx].sum(dim=(1, 2)) + dy[:, by, :].sum(dim=(1, 2))
    border_n = dx[:, :, bx][0].numel() + dy[:, by, :][0].numel()
    inside_sum = dx[:, :, ~bx].sum(dim=(1, 2)) + dy[:, ~by, :].sum(dim=(1, 2))
    inside_n = dx[:, :, ~bx][0].numel() + dy[:, ~by, :][0].numel()
    border = border_sum / border_n
    inside = inside_sum / inside_n
    return torch.where(inside > 0, border / inside.clamp(min=1e-300),
                       torch.where(border > 0, torch.full_like(border, float("inf")), torch.ones_like(border)))


def chroma(x: torch.Tensor) -> torch.Tensor:
    """Mean BT.601 colourfulness ``sqrt(Cb² + Cr²)`` (chroma offsets on the 0..255 scale); 0 for grey images."""
    _check(x)
    if x.shape[1] == 1:
        return torch.zeros(x.shape[0], dtype=torch.float64, device=x.device)
    r, g, b = x.double().unbind(1)
    cb = -0.168736 * r - 0.331264 * g + 0.5 * b
    cr = 0.5 * r - 0.418688 * g - 0.081312 * b
    c = torch.sqrt(cb * cb + cr * cr).mean(dim=(1, 2))
    # the coefficients of each row sum to 0 only up to float64 rounding: a grey RGB image must score exactly 0
    return torch.where(c < 1e-9, torch.zeros_like(c), c)
