"""downstream.detection.salience: the local-contrast measure of annotated people, on images with known values."""

from __future__ import annotations

import numpy as np
import pytest

from downstream.detection.salience import box_contrasts, kept_contrast


def test_box_contrast_values():
    luma = np.full((60, 80), 10.0)
    luma[20:40, 30:40] = 50.0  # a warm 10 x 20 person
    # ring: the box grown by 5 / 10 px per side -> 20 x 40 = 800 px, minus the 200 px box
    c = box_contrasts(luma, np.array([[30, 20, 40, 40]]))
    assert c[0] == pytest.approx(40.0)
    # a box half on the target: inside mean 30; its 800 px window x 30..50 holds the whole target (200 px at 50)
    c = box_contrasts(luma, np.array([[35, 20, 45, 40]]))
    assert c[0] == pytest.approx(30.0 - (600 * 10.0 + 200 * 50.0 - 200 * 30.0) / 600)
    # boxes clipped by the image and boxes outside it
    c = box_contrasts(luma, np.array([[-5, -5, 5, 5], [100, 100, 120, 120]]))
    assert np.isfinite(c[0]) and c[0] == pytest.approx(0.0) and np.isnan(c[1])


def test_box_contrast_rejects_colour_images():
    with pytest.raises(ValueError, match=r"\(H, W\)"):
        box_contrasts(np.zeros((4, 4, 3)), np.zeros((1, 4)))


def test_kept_contrast():
    ir = np.array([40.0, -20.0, 10.0, np.nan])
    assert kept_contrast(ir, ir) == (1.0, 1.0)
    kept, share = kept_contrast(np.array([20.0, 20.0, 10.0, 5.0]), ir)
    # signed: 20 + (-20) + 10 over 70; kept at half: the first and third box
    assert kept == pytest.approx(10.0 / 70.0) and share == pytest.approx(2 / 3)
    assert all(np.isnan(kept_contrast(np.zeros(2), np.zeros(2))))

