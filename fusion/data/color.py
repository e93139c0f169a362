"""Colour-space helpers for colour fusion: RGB <-> YCbCr and chroma fusion (pure numpy functions).

Convention (the same as OpenCV's ``COLOR_RGB2YCrCb`` and kornia's ``rgb_to_ycbcr``, ITU-R BT.601 full range)::

    Y  = 0.299 R + 0.587 G + 0.114 B
    Cb = (B - Y) * 0.564 + delta
    Cr = (R - Y) * 0.713 + delta

with ``delta = 128`` on the [0, 255] scale and ``delta = 0.5`` on the [0, 1] scale. The inverse is the exact inverse of
these forward coefficients (``R = Y + (Cr - delta) / 0.713``, ``B = Y + (Cb - delta) / 0.564``, G from Y), as in
kornia >= 0.8, so a round trip is lossless; OpenCV's ``COLOR_YCrCb2RGB`` uses the rounded 1.403 / 0.714 / 0.344 / 1.773
and differs by at most 3e-4 of the range (0.07 grey levels).

**Channel order here is (Y, Cb, Cr)** like kornia; OpenCV returns (Y, Cr, Cb). ``uint8`` input gives float32 on the
[0, 255] scale (chroma centred on 128, as OpenCV on ``uint8``); float input is taken to lie in [0, 1] and gives
[0, 1] values (chroma centred on 0.5, as kornia). Nothing is rounded or clipped until :func:`merge_luma_chroma`.

Chroma fusion of two colour sources (multi-exposure / multi-focus) weights each source's chroma by its distance from
neutral grey, ``C = sum_i C_i |C_i - delta| / sum_i |C_i - delta|`` (``delta`` where both are neutral), the rule of
DeepFuse (Prabhakar et al., ICCV 2017) and most learned MEF methods: saturated (well-exposed) colour wins over the
washed-out colour of an over- or under-exposed shot.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

__all__ = [
    "rgb_to_ycbcr",
    "ycbcr_to_rgb",
    "split_luma_chroma",
    "merge_luma_chroma",
    "luma_to_rgb",
    "fuse_chroma",
    "chroma_delta",
]

_KR, _KG, _KB = 0.299, 0.587, 0.114
_CB_SCALE, _CR_SCALE = 0.564, 0.713
# Exact inverse of the forward transform (not OpenCV's rounded 1.403 / 0.714 / 0.344 / 1.773).
_R_CR = 1.0 / _CR_SCALE
_B_CB = 1.0 / _CB_SCALE
_G_CR = _KR / _KG * _R_CR
_G_CB = _KB / _KG * _B_CB


def chroma_delta(max_value: float) -> float:
    """The neutral chroma value: 128 on the [0, 255] scale, ``max_value / 2`` otherwise (0.5 on [0, 1])."""
    return 128.0 if max_value == 255.0 else 0.5 * max_value


def _check_rgb(img: np.ndarray, what: str) -> None:
    if not isinstance(img, np.ndarray) or img.ndim < 1 or img.shape[-1] != 3:
        raise ValueError(f"{what}: expected an array of shape (..., 3), got {getattr(img, 'shape', None)}")


def rgb_to_ycbcr(rgb: np.ndarray) -> np.ndarray:
    """RGB ``(..., 3)`` -> YCbCr ``(..., 3)`` in (Y, Cb, Cr) order, float32.

    ``uint8`` input: output on [0, 255] with chroma centred on 128. Float input on [0, 1]: output on [0, 1] with
    chroma centred on 0.5.
    """
    _check_rgb(rgb, "rgb_to_ycbcr")
    delta = 128.0 if rgb.dtype == np.uint8 else 0.5
    x = rgb.astype(np.float32)
    r, g, b = x[..., 0], x[..., 1], x[..., 2]
    y = _KR * r + _KG * g + _KB * b
    cb = (b - y) * _CB_SCALE + delta
    cr = (r - y) * _CR_SCALE + delta
    return np.stack([y, cb, cr], axis=-1).astype(np.float32)


def ycbcr_to_rgb(ycbcr: np.ndarray, *, max_value: float = 255.0) -> np.ndarray:
    """YCbCr ``(..., 3)`` in (Y, Cb, Cr) order -> RGB ``(..., 3)`` float32 on the same scale (not clipped).

    Args:
        ycbcr: values on [0, ``max_value``].
        max_value: 255 (chroma centred on 128) or 1 (centred on 0.5).
    """
    _check_rgb(ycbcr, "ycbcr_to_rgb")
    delta = chroma_delta(max_value)
    x = ycbcr.astype(np.float32)
    y, cb, cr = x[..., 0], x[..., 1] - delta, x[..., 2] - delta
    r = y + _R_CR * cr
    g = y - _G_CR * cr - _G_CB * cb
    b = y + _B_CB * cb
    return np.stack([r, g, b], axis=-1).astype(np.float32)


def split_luma_chroma(rgb: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``uint8`` RGB ``(H, W, 3)`` -> luma ``(H, W)`` and chroma ``(H, W, 2)`` (Cb, Cr), float32 on [0, 255]."""
    if rgb.dtype != np.uint8 or rgb.ndim != 3:
        raise ValueError(f"split_luma_chroma: expected uint8 (H, W, 3), got {rgb.shape} {rgb.dtype}")
    ycc = rgb_to_ycbcr(rgb)
    return ycc[..., 0], ycc[..., 1:]


def merge_luma_chroma(luma: np.ndarray, chroma: np.ndarray) -> np.ndarray:
    """Luma ``(H, W)`` and chroma ``(H, W, 2)`` (Cb, Cr) on [0, 255] -> rounded, clipped ``uint8`` RGB ``(H, W, 3)``."""
    if luma.ndim != 2 or chroma.shape != (*luma.shape, 2):
        raise ValueError(f"merge_luma_chroma: expected (H, W) and (H, W, 2), got {luma.shape} and {chroma.shape}")
    rgb = ycbcr_to_rgb(np.concatenate([luma[..., None], chroma], axis=-1).astype(np.float32))
    return np.clip(np.rint(rgb), 0, 255).astype(np.uint8)


def luma_to_rgb(luma: np.ndarray) -> np.ndarray:
    """Luma ``(H, W)`` on [0, 255] -> ``uint8`` ``(H, W, 3)`` with the rounded luma in every channel."""
    if luma.ndim != 2:
        raise ValueError(f"luma_to_rgb: expected (H, W), got {luma.shape}")
    y = np.clip(np.rint(luma), 0, 255).astype(np.uint8)
    return np.repeat(y[:, :, None], 3, axis=2)


def fuse_chroma(chromas: Sequence[np.ndarray], *, max_value: float = 255.0, eps: float = 1e-6) -> np.ndarray:
    """Fuse the chroma ``(H, W, 2)`` of several sources, each channel weighted by ``|C - delta|``.

    Where every source is neutral (all weights below ``eps``) the result is neutral (``delta``).
    """
    if not chromas:
        raise ValueError("fuse_chroma: expected at least one chroma array")
    shape = chromas[0].shape
    if any(c.shape != shape for c in chromas) or shape[-1] != 2:
        raise ValueError(f"fuse_chroma: expected arrays of one shape (H, W, 2), got {[c.shape for c in chromas]}")
    delta = chroma_delta(max_value)
    stack = np.stack([c.astype(np.float32) for c in chromas])
    w = np.abs(stack - delta)
    total = w.sum(axis=0)
    fused = (stack * w).sum(axis=0) / np.maximum(total, eps)
    return np.where(total > eps, fused, np.float32(delta)).astype(np.float32)
