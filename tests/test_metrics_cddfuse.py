"""The ``cddfuse`` profile against values computed with the original CDDFuse Evaluator (golden, 1e-5 relative).

How the golden values were made is in ``tests/golden/cddfuse_evaluator_vifb.json`` (``_provenance``) and in
docs/metrics.md. The images are read here with OpenCV, as the Evaluator reads them, so that the comparison is about
the metric code and not about two JPEG decoders.
"""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from fusion.metrics import evaluate
from fusion.metrics._ops import opencv_gray
from fusion.metrics.structural import ssim_skimage_float32

GOLDEN = Path(__file__).parent / "golden" / "cddfuse_evaluator_vifb.json"
METRICS = ["EN", "SD", "SF", "AG", "MI", "MSE", "CC", "PSNR", "SCD", "VIF", "Qabf", "SSIM"]


def _rgb(path: Path) -> np.ndarray:
    img = cv2.imread(str(path))
    assert img is not None, path
    return cv2.cvtColor(img, cv2.COLOR_BGR2RGB)


@pytest.mark.shared_data
def test_cddfuse_profile_reproduces_the_evaluator_on_vifb(shared_data):
    golden = json.loads(GOLDEN.read_text())["values"]
    assert len(golden) == 28
    worst = dict.fromkeys(METRICS, 0.0)
    for key, ref in golden.items():
        name, method = key.split("/")
        fused = _rgb(shared_data / "vifb" / "fused" / f"{name}_{method}.jpg")
        ir = _rgb(shared_data / "vifb" / "ir" / f"{name}.jpg")
        vis = _rgb(shared_data / "vifb" / "vis" / f"{name}.jpg")
        got = evaluate(fused, ir, vis, profile="cddfuse")
        assert list(got) == METRICS
        for m in METRICS:
            worst[m] = max(worst[m], abs(got[m] - ref[m]) / abs(ref[m]))
    assert max(worst.values()) <= 1e-5, worst


def test_opencv_gray_is_cvtcolor_rounded_half_to_even():
    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 256, (31, 17, 3), dtype=np.uint8)
    bgr = np.ascontiguousarray(rgb[:, :, ::-1]).astype(np.float32)
    want = np.round(cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY))  # what the Evaluator's image_read_cv2 computes
    assert np.array_equal(opencv_gray(rgb), want)
    grey = rng.integers(0, 256, (9, 9), dtype=np.uint8)
    assert np.array_equal(opencv_gray(grey), grey.astype(np.float32))  # three equal channels give the level back
    # round half to even, unlike MATLAB's rgb2gray: 0.5 -> 0, 1.5 -> 2
    assert np.round(np.float32(0.5)) == 0 and np.round(np.float32(1.5)) == 2


def test_ssim_float32_data_range_two_on_hand_cases():
    x = torch.arange(100, dtype=torch.float64).reshape(1, 10, 10) * 2.5
    assert ssim_skimage_float32(x, x).item() == pytest.approx(1.0, abs=1e-6)
    flat_a, flat_b = torch.full((1, 12, 12), 10.0), torch.full((1, 12, 12), 200.0)
    # constant images: the map is (2 mu_a mu_b + C1) C2 / ((mu_a^2 + mu_b^2 + C1) C2) with C1 = (0.01 * 2)^2
    c1 = 0.02**2
    assert ssim_skimage_float32(flat_a, flat_b).item() == pytest.approx((4000 + c1) / (40100 + c1), rel=1e-6)
    with pytest.raises(ValueError, match=r"\(B, H, W\)"):
        ssim_skimage_float32(x, x[0])


def test_cddfuse_psnr_peak_is_the_fused_maximum():
    f = np.full((20, 20), 100, np.uint8)
    f[0, 0] = 200
    a = np.zeros((20, 20), np.uint8)
    b = np.full((20, 20), 100, np.uint8)
    got = evaluate(f, a, b, profile="cddfuse", metrics=["MSE", "PSNR"])
    mse = ((f.astype(float) - a) ** 2).mean() / 2 + ((f.astype(float) - b) ** 2).mean() / 2
    assert got["MSE"] == pytest.approx(mse, rel=1e-12)
    assert got["PSNR"] == pytest.approx(10 * np.log10(200**2 / mse), rel=1e-12)


def test_vif_sum_shares_the_fused_statistics_exactly():
    from fusion.metrics.perceptual import vif_pixel, vif_pixel_sum

    gen = torch.Generator().manual_seed(0)
    a, b, f = ((torch.rand(2, 70, 90, generator=gen, dtype=torch.float64) * 255).round() for _ in range(3))
    want = vif_pixel(a, f) + vif_pixel(b, f)
    assert torch.allclose(vif_pixel_sum(a, b, f), want, rtol=1e-12, atol=0)
