"""The one input check of the project, in its two representations (kornia-style: strict, one line naming the shape).

* :func:`check_image_pair`: two ``uint8`` RGB arrays ``(H, W, 3)`` (or batches ``(N, H, W, 3)``) of equal shape --
  what every :class:`~fusion.fusers.Fuser` and :func:`~fusion.models.fuse_arrays` take;
* :func:`check_tensor_pair`: two float tensors ``(B, C, H, W)`` of equal shape, optionally with ``H`` and ``W``
  multiples of a unit -- what :func:`~fusion.models.fuse_tensors` and the :class:`~fusion.models.TCMoA` forward take.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from fusion.errors import InputError

__all__ = ["check_image_pair", "check_tensor_pair"]


def _shape(x: Any) -> tuple[int, ...] | None:
    shape = getattr(x, "shape", None)
    return tuple(shape) if shape is not None else None


def check_image_pair(a: Any, b: Any, who: str = "pair", *, batched: bool = False) -> None:
    """Raise :class:`InputError` unless ``a`` and ``b`` are ``uint8`` ``(H, W, 3)`` arrays of one non-empty size.

    With ``batched``, ``(N, H, W, 3)`` batches are accepted too.
    """
    ndims = (3, 4) if batched else (3,)
    expected = "(H, W, 3) or (N, H, W, 3)" if batched else "(H, W, 3)"
    for label, img in (("a", a), ("b", b)):
        if not isinstance(img, np.ndarray) or img.ndim not in ndims or img.shape[-1] != 3 or img.dtype != np.uint8:
            raise InputError(f"{who}: source {label} must be uint8 of shape {expected}, got {_shape(img)} "
                             f"{getattr(img, 'dtype', type(img).__name__)}")
    if a.shape != b.shape:
        raise InputError(f"{who}: sources differ in size, a {a.shape} vs b {b.shape}")
    if 0 in a.shape:
        raise InputError(f"{who}: empty image {a.shape}")


def check_tensor_pair(a: Any, b: Any, who: str, *, channels: int = 3, multiple: int = 1,
                      values: str = "float in [0, 1]") -> None:
    """Raise :class:`InputError` unless ``a`` and ``b`` are float ``(B, channels, H, W)`` tensors of one shape.

    Args:
        a, b: the two sources.
        who: the caller, first word of the message.
        channels: expected ``C``.
        multiple: ``H`` and ``W`` must be positive multiples of it.
        values: what the values must be, for the message.
    """
    for label, x in (("a", a), ("b", b)):
        if not isinstance(x, torch.Tensor) or x.dim() != 4 or x.shape[1] != channels:
            raise InputError(f"{who}: source {label} must be a tensor (B, {channels}, H, W) {values}, "
                             f"got {_shape(x) or type(x).__name__}")
        if not x.is_floating_point():
            raise InputError(f"{who}: source {label} must be {values}, got {x.dtype}")
    if a.shape != b.shape:
        raise InputError(f"{who}: sources differ in size, a {tuple(a.shape)} vs b {tuple(b.shape)}")
    b_, _, h, w = a.shape
    if b_ < 1 or h < 1 or w < 1:
        raise InputError(f"{who}: empty input {tuple(a.shape)}")
    if h % multiple or w % multiple:
        raise InputError(f"{who}: height and width must be positive multiples of {multiple}, got {h}x{w} "
                         f"(use fusion.models.fuse_tensors for any size)")
