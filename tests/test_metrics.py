"""Fusion metrics: building blocks, API behaviour and sanity values on synthetic images."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy.signal import convolve2d

from fusion.errors import ConfigError, InputError
from fusion.metrics import (
    FusionMetric,
    _ops,
    evaluate,
    evaluate_batch,
    get_profile,
    information,
    list_metrics,
    list_profiles,
    statistics,
)
from fusion.metrics.gradient import qabf
from fusion.metrics.structural import mef_ssim, ssim


@pytest.fixture(autouse=True)
def _one_thread():
    # Tiny tensors: a single thread avoids oversubscription on shared CI machines.
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


def _t(x) -> torch.Tensor:
    return torch.as_tensor(np.ascontiguousarray(x, dtype=np.float64))[None]


def _scene(h: int = 64, w: int = 72, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w]
    base = 100 + 60 * np.sin(xx / 5.0) * np.cos(yy / 7.0)
    ir = np.clip(base + rng.normal(0, 8, (h, w)), 0, 255).astype(np.uint8)
    vis = np.clip(255 - base + rng.normal(0, 8, (h, w)), 0, 255).astype(np.uint8)
    vis = np.stack([vis, np.clip(vis.astype(int) + 10, 0, 255), vis], axis=2).astype(np.uint8)
    fused = ((ir.astype(int)[..., None] + vis.astype(int)) // 2).astype(np.uint8)
    return fused, ir, vis


# ---------------------------------------------------------------------------------------------------------------- ops


def test_matlab_round_and_rgb2gray():
    x = torch.tensor([0.5, 1.5, 2.5, -0.5, -1.5, 2.4999])
    assert _ops.matlab_round(x).tolist() == [1.0, 2.0, 3.0, -1.0, -2.0, 2.0]
    rgb = np.array([[[255, 0, 0], [0, 255, 0], [0, 0, 255], [200, 200, 200]]], dtype=np.uint8)
    # 76.228..., 149.696..., 29.075..., 200*1.0
    assert _ops.rgb2gray(rgb).tolist() == [[76, 150, 29, 200]]


@pytest.mark.parametrize("mode", ["full", "same", "valid"])
@pytest.mark.parametrize("ksize", [(3, 3), (2, 3), (7, 7)])
def test_conv2_matches_scipy(mode, ksize):
    rng = np.random.default_rng(1)
    x = rng.normal(size=(13, 17))
    k = rng.normal(size=ksize)
    ref = convolve2d(x, k, mode=mode)
    if mode == "same":
        # MATLAB's central part starts at ceil((k-1)/2) of the full result (scipy uses floor for even kernels).
        kh, kw = ksize
        ref = convolve2d(x, k, mode="full")[kh // 2 : kh // 2 + x.shape[0], kw // 2 : kw // 2 + x.shape[1]]
    out = _ops.conv2(_t(x), k, mode)[0].numpy()
    assert out.shape == ref.shape
    assert np.allclose(out, ref, atol=1e-12)


def test_large_separable_kernel_path_matches_scipy():
    rng = np.random.default_rng(2)
    x = rng.normal(size=(40, 37))
    g = _ops.fspecial_gaussian(11, 1.5)
    for mode in ("same", "valid"):
        ref = convolve2d(x, g[::-1, ::-1], mode=mode)  # filter2 = correlation
        assert np.allclose(_ops.filter2(g, _t(x), mode)[0].numpy(), ref, atol=1e-12)


def test_gradient_is_matlab_gradient():
    x = np.array([[1.0, 4.0, 9.0, 16.0], [2.0, 2.0, 2.0, 2.0], [0.0, 1.0, 0.0, 1.0]])
    gx, gy = _ops.gradient(_t(x))
    ex_gx, ex_gy = np.gradient(x, axis=1), np.gradient(x, axis=0)
    assert np.allclose(gx[0].numpy(), ex_gx) and np.allclose(gy[0].numpy(), ex_gy)


def test_exact_sqrt_is_correctly_rounded():
    rng = np.random.default_rng(0)
    v = rng.integers(0, 10**6, 5000) / 255.0
    assert np.array_equal(_ops.sqrt(torch.from_numpy(v)).numpy(), np.sqrt(v))


# -------------------------------------------------------------------------------------------------- metric functions


def test_entropy_values():
    assert information.entropy(_t(np.full((8, 8), 7))).item() == 0.0
    half = np.zeros((8, 8))
    half[:, 4:] = 200
    assert information.entropy(_t(half)).item() == pytest.approx(1.0, abs=1e-15)
    quarters = np.repeat(np.array([[0, 1, 2, 3]]), 4, axis=0)
    assert information.entropy(_t(quarters)).item() == pytest.approx(2.0, abs=1e-15)


def test_mutual_information_and_legacy_merge():
    a = np.array([[254, 255, 0, 0]] * 4, dtype=float)
    # Identical images: MI = H = 1.5 bits; merging 254/255 in the joint histogram adds 0.5 bit of spurious MI.
    assert information.mutual_information(_t(a), _t(a)).item() == pytest.approx(1.5, abs=1e-12)
    assert information.mutual_information(_t(a), _t(a), merge_top=True).item() == pytest.approx(2.0, abs=1e-12)
    nats = information.mutual_information(_t(a), _t(a), base=math.e).item()
    assert nats == pytest.approx(1.5 * math.log(2), abs=1e-12)


def test_cross_entropy_zero_for_same_histogram():
    rng = np.random.default_rng(3)
    a = rng.integers(0, 256, (16, 16)).astype(float)
    assert information.cross_entropy(_t(a), _t(a[::-1])).item() == pytest.approx(0.0, abs=1e-12)


def test_sd_variants():
    x = np.array([[0, 0, 10, 30]], dtype=float)  # mean 10
    assert statistics.standard_deviation(_t(x)).item() == pytest.approx(math.sqrt((100 + 100 + 0 + 400) / 4))
    # uint8 arithmetic: negatives saturate to 0, 20^2 saturates to 255.
    assert statistics.standard_deviation_uint8(_t(x)).item() == pytest.approx(math.sqrt(255 / 4))


def test_spatial_frequency_variants():
    x = np.tile(np.arange(5, dtype=float) * 2, (4, 1))  # horizontal ramp, step 2
    assert statistics.spatial_frequency(_t(x)).item() == pytest.approx(2.0)
    # sums divided by H*W = 20 instead of the 16 horizontal pairs.
    assert statistics.spatial_frequency_sum(_t(x)).item() == pytest.approx(math.sqrt(16 * 4 / 20))


def test_average_gradient_ramp():
    x = np.tile(np.arange(6, dtype=float) * 3, (5, 1))
    # |gx| = 3 everywhere, gy = 0 -> each pixel sqrt(9/2); sum over 30 pixels / (4*5).
    assert statistics.average_gradient(_t(x)).item() == pytest.approx(30 * math.sqrt(4.5) / 20)


def test_qabf_properties():
    fused, ir, vis = _scene()
    f = _t(fused[..., 0].astype(float))
    a = _t(ir.astype(float))
    b = _t(vis[..., 0].astype(float))
    q = qabf(a, b, f).item()
    assert 0 < q < 1
    assert qabf(b, a, f).item() == pytest.approx(q, abs=1e-15)
    # A fused image equal to one source preserves its edges better than a flat image does.
    assert qabf(a, b, a).item() > qabf(a, b, torch.full_like(a, 128.0)).item()


def test_ssim_identity_and_mef_ssim_range():
    _, ir, vis = _scene(48, 48)
    a = _t(ir.astype(float))
    assert ssim(a, a).item() == pytest.approx(1.0, abs=1e-12)
    seq = torch.stack([a, _t(vis[..., 0].astype(float))], dim=1)
    good = mef_ssim(seq, a).item()
    bad = mef_ssim(seq, torch.full_like(a, 30.0)).item()
    assert -1 <= bad < good <= 1


# --------------------------------------------------------------------------------------------------------------- API


def test_profiles_listed_and_documented():
    names = list_profiles()
    assert {"tang", "tang_legacy", "vifb", "mefb"} <= set(names)
    for n in names:
        prof = get_profile(n)
        assert prof.description and prof.conventions
        assert set(prof.default) <= set(prof.metrics)
        assert all(m.doc for m in prof.metrics.values())


@pytest.mark.parametrize("profile", ["tang", "tang_legacy", "vifb", "mefb"])
def test_evaluate_every_default_metric_is_finite(profile):
    fused, ir, vis = _scene()
    res = evaluate(fused, ir, vis, profile=profile)
    assert list(res) == list(get_profile(profile).default)
    bad = {k: v for k, v in res.items() if not math.isfinite(v)}
    assert not bad


def test_evaluate_perfect_source_copy_scores():
    _, ir, _vis = _scene()
    res = evaluate(ir, ir, ir, profile="tang", metrics=["SSIM", "MSE", "CC", "PSNR"])
    assert res["SSIM"] == pytest.approx(1.0, abs=1e-12)
    assert res["MSE"] == 0.0 and res["CC"] == pytest.approx(1.0) and math.isinf(res["PSNR"])


def test_gray_profiles_use_matlab_gray_and_channels_profiles_average():
    fused, ir, vis = _scene()
    gray_f = _ops.rgb2gray(fused)
    a = evaluate(fused, ir, vis, "tang", ["EN", "SD"])
    b = evaluate(gray_f, ir, _ops.rgb2gray(vis), "tang", ["EN", "SD"])
    assert a == b
    per = [evaluate(fused[..., k], ir, vis[..., k], "vifb", ["SD"])["SD"] for k in range(3)]
    assert evaluate(fused, ir, vis, "vifb", ["SD"])["SD"] == pytest.approx(np.mean(per), abs=1e-12)


def test_evaluate_batch_matches_single_and_mixed_sizes():
    t1 = _scene(64, 72, 1)
    t2 = _scene(64, 72, 2)
    t3 = _scene(60, 66, 3)
    batch = evaluate_batch([t1[0], t2[0], t3[0]], [t1[1], t2[1], t3[1]], [t1[2], t2[2], t3[2]], "tang_legacy")
    for t, r in zip((t1, t2, t3), batch, strict=True):
        single = evaluate(*t, profile="tang_legacy")
        assert r == pytest.approx(single, rel=1e-12, abs=1e-14)


def test_metric_names_case_insensitive_and_errors():
    fused, ir, vis = _scene()
    assert list(evaluate(fused, ir, vis, "tang", ["qabf", "en"])) == ["Qabf", "EN"]
    with pytest.raises(ConfigError, match="not defined in profile"):
        evaluate(fused, ir, vis, "tang", ["NoSuchMetric"])
    with pytest.raises(ConfigError, match="unknown metric profile"):
        evaluate(fused, ir, vis, "matlab2009")
    with pytest.raises(InputError, match="uint8"):
        evaluate(fused.astype(np.float32), ir, vis)
    with pytest.raises(InputError, match="sizes differ"):
        evaluate(fused[:-1], ir, vis)
    with pytest.raises(InputError, match=r"\(H, W\) or \(H, W, 3\)"):
        evaluate(fused[..., :2], ir, vis)
    assert "Qcb" in list_metrics("vifb")


def test_fusion_metric_accumulates():
    fm = FusionMetric(profile="tang", metrics=["EN", "SD"])
    samples = []
    for seed in (1, 2, 3):
        f, a, b = _scene(seed=seed)
        samples.append({"fused": f, "ir": a, "vis": b, "name": str(seed)})
    fm.process(None, samples[:2])
    fm.process(None, samples[2:])
    assert len(fm.results) == 3
    singles = [evaluate(s["fused"], s["ir"], s["vis"], "tang", ["EN", "SD"]) for s in samples]
    out = fm.evaluate(3)
    assert out["fusion/EN"] == pytest.approx(np.mean([s["EN"] for s in singles]))
    assert out["fusion/SD"] == pytest.approx(np.mean([s["SD"] for s in singles]))
    assert fm.results == []


def test_mmengine_metric_registered_and_matches():
    from mmengine.registry import METRICS

    import fusion.metrics.mm  # noqa: F401

    metric = METRICS.build(dict(type="FusionQualityMetric", profile="vifb", metrics=["EN", "SD"]))
    samples = []
    for seed in (4, 5):
        f, a, b = _scene(seed=seed)
        samples.append({"fused": torch.from_numpy(f).permute(2, 0, 1), "ir": a, "vis": b})
    metric.process(None, samples)
    out = metric.evaluate(2)
    ref = [evaluate(f.permute(1, 2, 0).numpy(), a, b, "vifb", ["EN", "SD"]) for f, a, b in
           ((s["fused"], s["ir"], s["vis"]) for s in samples)]
    assert out["fusion/EN"] == pytest.approx(np.mean([r["EN"] for r in ref]))
    assert out["fusion/SD"] == pytest.approx(np.mean([r["SD"] for r in ref]))
