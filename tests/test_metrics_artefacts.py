"""Blockiness and chroma (fusion.metrics.artefacts, profile ``artefacts``): hand cases, shapes, errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from fusion.metrics import evaluate
from fusion.metrics.artefacts import blockiness, chroma, luma


def test_blockiness_is_one_for_a_ramp_and_large_for_blocks():
    ramp = torch.arange(64, dtype=torch.float64).repeat(64, 1)[None, None] * 2  # the same step everywhere
    assert blockiness(ramp).item() == pytest.approx(1.0)
    rng = np.random.default_rng(0)
    blocks = np.kron(rng.integers(0, 256, (8, 8)), np.ones((8, 8)))  # flat 8x8 blocks
    noisy = torch.from_numpy(blocks + rng.normal(0, 1, blocks.shape))[None, None]
    assert blockiness(noisy).item() > 20
    assert blockiness(torch.from_numpy(blocks)[None, None]).item() == float("inf")  # flat inside, steps at borders
    flat = torch.full((1, 1, 32, 32), 7.0)
    assert blockiness(flat).item() == 1.0


def test_chroma_hand_values_and_luma():
    red = torch.zeros(1, 3, 4, 4, dtype=torch.float64)
    red[:, 0] = 255
    cb, cr = -0.168736 * 255, 0.5 * 255
    assert chroma(red).item() == pytest.approx(np.hypot(cb, cr))
    grey = torch.full((2, 3, 4, 4), 90.0)
    assert chroma(grey).tolist() == [0.0, 0.0]  # exactly: a grey RGB image makes Chroma_kept NaN, not 1e13
    for value in (37.0, 101.0, 203.0, 255.0):  # grey levels whose Cb/Cr rounding is not exactly 0
        assert chroma(torch.full((1, 3, 5, 5), value)).item() == 0.0
    assert chroma(grey[:, :1]).tolist() == [0.0, 0.0]
    assert luma(red)[0, 0, 0].item() == pytest.approx(0.299 * 255)
    with pytest.raises(ValueError, match=r"\(N, C, H, W\)"):
        chroma(red[0])
    with pytest.raises(ValueError, match="block"):
        blockiness(red)


def test_artefacts_profile_compares_with_the_sources():
    rng = np.random.default_rng(1)
    vis = rng.integers(0, 256, (48, 64, 3), dtype=np.uint8)
    ir = rng.integers(0, 256, (48, 64), dtype=np.uint8)
    grey_fused = ((vis.mean(2) + ir) / 2).astype(np.uint8)
    got = evaluate(grey_fused, ir, vis, profile="artefacts")
    assert list(got) == ["Blockiness", "Blockiness_vs_sources", "Chroma", "Chroma_kept"]
    # a grey result keeps no colour; per-channel profiles then score the sources in grey too, so the ratio is undefined
    assert got["Chroma"] == 0.0 and np.isnan(got["Chroma_kept"])
    kept = evaluate(vis, ir, vis, profile="artefacts")
    assert kept["Chroma_kept"] == pytest.approx(1.0)
