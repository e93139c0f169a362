"""A torch ``Dataset`` over source pairs, for training, evaluation and batched fusion."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from fusion.data.pairs import Pair, load_pair

__all__ = ["PairDataset", "to_tensor"]

PairTransform = Callable[[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]


def to_tensor(img: np.ndarray) -> torch.Tensor:
    """``uint8`` ``(H, W, 3)`` -> float32 ``(3, H, W)`` on [0, 1]."""
    if img.dtype != np.uint8 or img.ndim != 3:
        raise ValueError(f"to_tensor: expected uint8 (H, W, C), got {img.shape} {img.dtype}")
    return torch.from_numpy(np.ascontiguousarray(img.transpose(2, 0, 1))).float().div_(255.0)


class PairDataset(Dataset):
    """Items are dicts ``{"name", "task", "output_name", "a", "b"}``.

    Args:
        pairs: from :func:`fusion.data.layouts.list_pairs`.
        resize: size policy for pairs of different sizes (``None``, ``"b_to_a"``, ``"a_to_b"``).
        transform: ``transform(a, b) -> (a, b)`` on the ``uint8`` arrays; it must apply the *same* random
            parameters to both sources (e.g. one crop box) so that they stay registered.
        as_tensor: return float32 ``(3, H, W)`` tensors on [0, 1] instead of ``uint8`` ``(H, W, 3)`` arrays.
    """

    def __init__(
        self,
        pairs: Sequence[Pair],
        *,
        resize: str | None = None,
        transform: PairTransform | None = None,
        as_tensor: bool = False,
    ) -> None:
        self.pairs = list(pairs)
        self.resize = resize
        self.transform = transform
        self.as_tensor = as_tensor

    def __len__(self) -> int:
        return len(self.pairs)

    def __getitem__(self, index: int) -> dict[str, Any]:
        pair = self.pairs[index]
        a, b = load_pair(pair, self.resize)
        if self.transform is not None:
            a, b = self.transform(a, b)
        item: dict[str, Any] = {"name": pair.name, "task": pair.task, "output_name": pair.output_name}
        if self.as_tensor:
            item["a"], item["b"] = to_tensor(a), to_tensor(b)
        else:
            item["a"], item["b"] = a, b
        return item
