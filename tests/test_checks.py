"""The one input check (fusion/utils/checks.py): what passes, and the one-line error for each kind of bad input."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from fusion.errors import InputError
from fusion.utils.checks import check_image_pair, check_tensor_pair


def test_image_pair():
    a = np.zeros((4, 5, 3), np.uint8)
    check_image_pair(a, a.copy())
    check_image_pair(a[None], a[None], batched=True)
    cases = [
        (a.astype(np.float32), a, r"source a must be uint8 of shape \(H, W, 3\), got \(4, 5, 3\) float32"),
        (a, a[:, :, :1], r"source b must be uint8"),
        (a, np.zeros((4, 6, 3), np.uint8), r"sources differ in size, a \(4, 5, 3\) vs b \(4, 6, 3\)"),
        (np.zeros((0, 5, 3), np.uint8), np.zeros((0, 5, 3), np.uint8), r"empty image"),
        ([[1]], a, r"got None list"),
    ]
    for x, y, msg in cases:
        with pytest.raises(InputError, match=msg):
            check_image_pair(x, y, "who")
    with pytest.raises(InputError, match="must be uint8"):
        check_image_pair(a[None], a[None])  # a batch where single images are expected


def test_tensor_pair():
    x = torch.zeros(1, 3, 8, 8)
    check_tensor_pair(x, x.clone(), "f", multiple=4)
    with pytest.raises(InputError, match=r"f: source a must be a tensor \(B, 3, H, W\)"):
        check_tensor_pair(x[0], x, "f")
    with pytest.raises(InputError, match="must be float in"):
        check_tensor_pair(x.to(torch.uint8), x, "f")
    with pytest.raises(InputError, match="differ in size"):
        check_tensor_pair(x, torch.zeros(1, 3, 8, 16), "f")
    with pytest.raises(InputError, match="multiples of 16, got 8x8"):
        check_tensor_pair(x, x, "f", multiple=16)
    with pytest.raises(InputError, match="empty input"):
        check_tensor_pair(torch.zeros(0, 3, 8, 8), torch.zeros(0, 3, 8, 8), "f")
