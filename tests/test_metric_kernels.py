"""The compiled CPU metric kernels (fusion.metrics._kernels) against the torch formulation and against scipy.

Every metric with a compiled path is computed twice on the same images: as shipped, and inside
``_ops.torch_reference()`` (the torch code that other devices run, which the goldens were first matched with). The
images cover flat regions, zeros, saturation and noise, at several value scales, because the kernels reproduce the
reference codes' special cases (equal gradients, zero variances, zero gradients) branch by branch.
"""

from __future__ import annotations

import os
import threading
import time

import numpy as np
import pytest
import torch
from scipy.ndimage import uniform_filter

from fusion.metrics import _ops
from fusion.metrics._kernels import uniform_filter_f32
from fusion.metrics._parallel import metric_threads, parallel_map
from fusion.metrics.fmi import fmi
from fusion.metrics.gradient import nabf, qabf
from fusion.metrics.information import cross_entropy, mutual_information, mutual_information_vifb
from fusion.metrics.perceptual import (
    normalize1,
    phase_congruency,
    qcb,
    qcv,
    qp,
    vif_pixel,
    vif_pixel_pair,
    vif_pixel_sum,
    viff,
)
from fusion.metrics.structural import (
    _window_extremes,
    mef_ms_ssim,
    mef_ssim,
    ssim_matlab_sum,
    ssim_skimage_float32_sum,
    ssim_sum,
)


def _images(seed: int, h: int = 72, w: int = 90) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(B=2, H, W) float64 triples on 0..255 with flat patches, zeros, saturation, edges and noise."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w]
    base = 120 + 70 * np.sin(xx / 6.0 + seed) * np.cos(yy / 9.0)
    out = []
    for k in range(3):
        img = np.clip(base * (1 - 0.3 * k) + rng.normal(0, 12, (2, h, w)), 0, 255).round()
        img[:, :12, :15] = 0.0  # zeros: zero gradients and variances
        img[:, -10:, -20:] = 255.0  # saturation
        img[:, 20:34, 30:50] = 80.0 + 40 * k  # a flat patch per image, at different levels
        if k == 2:
            img[:, 20:34, 30:50] = out[0][:, 20:34, 30:50]  # equal to the first image there: g_A == g_F
        out.append(img)
    f, a, b = (torch.from_numpy(x) for x in out)
    return f, a, b


def _both(fn, *args, **kw):
    got = fn(*args, **kw)
    with _ops.torch_reference():
        want = fn(*args, **kw)
    return got, want


def _close(got: torch.Tensor, want: torch.Tensor, rel: float, atol: float = 0.0) -> None:
    got, want = torch.as_tensor(got).double(), torch.as_tensor(want).double()
    assert got.shape == want.shape
    assert torch.allclose(got, want, rtol=rel, atol=atol, equal_nan=True), (got.tolist(), want.tolist())


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_vif_kernels_match_torch(seed):
    f, a, b = _images(seed)
    # The kernels sum logarithms as flushed running products: one rounding per factor, like the sum of logs.
    _close(*_both(vif_pixel_sum, a, b, f), 1e-12)
    _close(*_both(vif_pixel, a, f, saturate_uint8=True), 1e-12)
    got, want = _both(vif_pixel_pair, a, b, f, sigma_nsq=0.4)
    _close(torch.stack(got), torch.stack(want), 1e-12)
    _close(*_both(viff, a, b, f), 1e-12)
    _close(*_both(viff, f, f, f), 1e-12)


@pytest.mark.parametrize("scale", [1.0, 1 / 255, 255.0])
@pytest.mark.parametrize("seed", [0, 3])
def test_edge_kernels_match_torch(seed, scale):
    f, a, b = (x * scale for x in _images(seed))
    _close(*_both(qabf, a, b, f), 1e-12)
    _close(*_both(qabf, a, a, a), 1e-12)  # every gradient equal: the g_A == g_F quirk everywhere
    _close(*_both(nabf, f, a, b), 1e-11)
    _close(*_both(nabf, a, b, f), 1e-11)  # the toolbox's argument order
    # float32 per-pixel arithmetic as the CDDFuse Evaluator; the compiled sums are float64
    _close(*_both(qabf, a.float(), b.float(), f.float()), 2e-6)


def test_edge_kernels_see_equal_gradients_exactly():
    # Where A equals F the quirk sets G = g_F: Qabf then depends on the value scale. The kernels must take the same
    # branch as the torch code (equal Sobel sums in MATLAB's order), or the values part.
    f, a, b = _images(5)
    a = f.clone()
    got = [qabf(a * s, b * s, f * s) for s in (1.0, 1 / 255)]
    assert not torch.allclose(got[0], got[1])
    for s, g in zip((1.0, 1 / 255), got, strict=True):
        with _ops.torch_reference():
            _close(g, qabf(a * s, b * s, f * s), 1e-12)


@pytest.mark.parametrize("seed", [0, 4])
def test_ssim_kernels_match_torch(seed):
    f, a, b = _images(seed)
    _close(*_both(ssim_sum, f, [a, b]), 1e-12)
    _close(*_both(ssim_sum, f, [b], data_range=1.0), 1e-12)
    _close(*_both(ssim_matlab_sum, f, [a, b], data_range=1.0), 1e-12)
    _close(*_both(ssim_matlab_sum, f, [f]), 1e-12)


@pytest.mark.parametrize("seed", [0, 9])
def test_remaining_compiled_paths_match_torch(seed):
    f, a, b = _images(seed)
    _close(*_both(qcb, a, b, f), 1e-12)
    _close(*_both(qcv, a, b, f), 1e-12)
    _close(*_both(qp, a, b, f), 1e-12)
    seq = torch.stack([a, b], dim=1)
    _close(*_both(mef_ssim, seq, f), 1e-12)
    _close(*_both(mef_ms_ssim, seq, f), 1e-12)
    for size in (11, 4):  # odd and even windows: the exact extremes, as torch's max pooling
        for got, want in zip(*_both(_window_extremes, a, size), strict=True):
            assert torch.equal(got, want)
    for got, want in zip(*_both(phase_congruency, a), strict=True):  # pc, M, m
        _close(got, want, 1e-12, atol=1e-15)
    _close(*_both(normalize1, torch.cat([a, a * 0, a / 3.3])), 0)
    for src in (a, a * 0 + 7):
        _close(*_both(mutual_information_vifb, src, f), 1e-12, atol=1e-14)  # a constant source: MI 0 +- rounding
    _close(*_both(mutual_information, a, f, merge_top=True), 1e-12)
    _close(*_both(cross_entropy, a, f), 1e-12)
    for feature in ("none", "edge", "dct", "wavelet"):
        _close(*_both(fmi, a, b, f, feature=feature), 1e-12)
    u, v = _ops.freqspace(a.shape[1], a.shape[2], a)
    resp = torch.exp(-(u * u + v * v) * 3)
    got, want = _both(_ops.fft_filter, a, resp)
    assert torch.allclose(got, want, rtol=0, atol=1e-10)
    for k in (np.array([[1.0, 2.0, 1.0], [0.0, 0.0, 0.0], [-1.0, -2.0, -1.0]]), np.arange(10.0).reshape(2, 5)):
        for mode in ("full", "same", "valid"):
            got, want = _both(_ops.conv2, a / 7, k, mode)
            assert torch.equal(got, want)  # the same taps in the same order


def test_small_filters_keep_the_exact_tap_order():
    # VIF's 5x5 and 3x3 windows (scales 3 and 4) must take conv2's MATLAB-ordered sums on both paths: OpenCV's
    # separable filter differs by 1e-13, which near-flat references amplify into 1e-5 of VIF.
    x = _images(10)[0][0].numpy() / 7
    for n in (3, 5, 9, 17):
        win = _ops.fspecial_gaussian(n, n / 5.0)
        want = _ops.filter2(win, torch.from_numpy(x)[None], "valid")[0].numpy()
        assert np.array_equal(_ops.filter2_valid_np(win, x), want)
        want = _ops.filter2(win, torch.from_numpy(x)[None], "same")[0].numpy()
        if n <= 5:
            assert np.array_equal(_ops.filter2_same_np(win, x), want)
        else:
            assert np.allclose(_ops.filter2_same_np(win, x), want, rtol=1e-14, atol=1e-12)


def test_strided_small_filters_equal_the_kept_pixels():
    x = np.stack([_images(15)[1][0].numpy() / 3, _images(16)[2][0].numpy()])[:, :37, :50]
    for n in (3, 5):
        win = _ops.fspecial_gaussian(n, n / 5.0)
        full = _ops.filter2(win, torch.from_numpy(x), "valid").numpy()
        for stride in (1, 2):
            assert np.array_equal(_ops.filter2_valid_taps_np(win, x, stride), full[:, ::stride, ::stride])


def test_vif_on_a_near_flat_reference():
    f, a, b = _images(11)
    flat = 100 + (a - 100) * 1e-3  # variances cancel almost completely
    _close(*_both(vif_pixel_sum, flat, b, f), 1e-12)
    _close(*_both(viff, flat, b, f), 1e-12)


def test_qabf_float32_is_the_evaluators_numpy_formula():
    # The CDDFuse Evaluator's Qabf (float32 images): scipy convolve2d Sobel, numpy float32 arithmetic and pairwise
    # sums. Restated here with the same numpy calls; the compiled path is bit-identical.
    from scipy.signal import convolve2d

    f, a, b = (x[0].numpy().astype(np.float32) for x in _images(12))

    def grad(img):
        sx = convolve2d(img, np.array([[-1, 0, 1], [-2, 0, 2], [-1, 0, 1]], np.float32), mode="same")
        sy = convolve2d(img, np.array([[1, 2, 1], [0, 0, 0], [-1, -2, -1]], np.float32), mode="same")
        g = np.sqrt(sx * sx + sy * sy)
        ang = np.zeros_like(img)
        ang[sx == 0] = np.pi / 2
        ang[sx != 0] = np.arctan(sy[sx != 0] / sx[sx != 0])
        return g, ang

    def q(ga, aa, gf, af):
        rel = np.zeros_like(ga)
        rel[ga > gf] = gf[ga > gf] / ga[ga > gf]
        rel[ga == gf] = gf[ga == gf]
        rel[ga < gf] = ga[ga < gf] / gf[ga < gf]
        align = 1 - np.abs(aa - af) / (np.pi / 2)
        return 0.9994 / (1 + np.exp(-15 * (rel - 0.5))) * (0.9879 / (1 + np.exp(-22 * (align - 0.8))))

    (ga, aa), (gb, ab), (gf, af) = grad(a), grad(b), grad(f)
    want = np.sum(q(ga, aa, gf, af) * ga + q(gb, ab, gf, af) * gb) / np.sum(ga + gb)
    got = qabf(*(torch.from_numpy(x)[None] for x in (a, b, f)))
    assert got.dtype == torch.float32
    assert float(got[0]) == float(want)


def test_nan_propagates_as_in_the_reference():
    f, a, b = _images(13)
    a = a.clone()
    a[0, 30, 40] = float("nan")
    for got, want in (_both(normalize1, a), _both(nabf, f, a, b), _both(fmi, a, b, f, feature="none")):
        assert torch.equal(torch.isnan(got), torch.isnan(want))
    assert torch.isnan(normalize1(a)[0]).all() and not torch.isnan(normalize1(a)[1]).any()
    assert torch.isnan(nabf(f, a, b)[0]) and not torch.isnan(nabf(f, a, b)[1])
    with pytest.raises(ValueError, match="outside 0..255"):  # a histogram has no bin for NaN
        mutual_information_vifb(a, f)


def test_degenerate_constants_divide_like_numpy():
    # A zero noise variance or data range divides by zero: NaN/inf as numpy, never a Python ZeroDivisionError.
    f, a, b = _images(14)
    _close(*_both(vif_pixel, a, f, sigma_nsq=0.0), 1e-12)
    flat = torch.full_like(f, 7.0)
    assert torch.isnan(ssim_skimage_float32_sum(flat, [flat], data_range=0.0)).all()


def test_histogram_kernel_refuses_values_outside_the_grey_range():
    x = torch.zeros(1, 4, 4, dtype=torch.float64)
    x[0, 1, 1] = 256
    with pytest.raises(ValueError, match="outside 0..255"):
        _ops.hist256(x)
    with pytest.raises(ValueError, match="outside 0..255"):
        _ops.joint_hist256(x * 0, -x)


def test_batches_equal_single_images():
    f, a, b = _images(6)
    for fn in (lambda f, a, b: vif_pixel_sum(a, b, f), lambda f, a, b: viff(a, b, f), lambda f, a, b: qabf(a, b, f),
               lambda f, a, b: nabf(f, a, b), lambda f, a, b: ssim_sum(f, [a, b]),
               lambda f, a, b: ssim_skimage_float32_sum(f, [a, b]), lambda f, a, b: qcb(a, b, f),
               lambda f, a, b: qcv(a, b, f), lambda f, a, b: fmi(a, b, f, feature="edge"),
               lambda f, a, b: ssim_matlab_sum(f, [a, b]),
               lambda f, a, b: sum(vif_pixel_pair(a, b, f, saturate_uint8=True)),
               lambda f, a, b: mutual_information_vifb(a, f), lambda f, a, b: qp(a, b, f)):
        whole = fn(f, a, b)
        parts = torch.cat([fn(f[i : i + 1], a[i : i + 1], b[i : i + 1]) for i in range(2)])
        assert torch.equal(whole, parts)


@pytest.mark.parametrize("shape", [(16, 16), (17, 23), (40, 12), (61, 47), (480, 640)])
@pytest.mark.parametrize("size", [3, 7, 11])
def test_uniform_filter_f32_is_scipy_bit_for_bit(shape, size):
    rng = np.random.default_rng(size * 1000 + shape[0])
    x = np.round(rng.random(shape) * 255).astype(np.float32)
    for img in (x, x * x, rng.normal(0, 1e3, shape).astype(np.float32)):
        assert np.array_equal(uniform_filter_f32(img, size), uniform_filter(img, size=size))


def test_ssim_skimage_float32_matches_its_scipy_statement():
    # scikit-image 0.19's float32 SSIM written with scipy's uniform_filter, as the Evaluator runs it.
    f, a, _ = _images(7)
    x, y = f[0].numpy().astype(np.float32), a[0].numpy().astype(np.float32)
    ux, uy = uniform_filter(x, 7), uniform_filter(y, 7)
    uxx, uyy, uxy = uniform_filter(x * x, 7), uniform_filter(y * y, 7), uniform_filter(x * y, 7)
    cov = np.float32(49 / 48)
    vx, vy, vxy = cov * (uxx - ux * ux), cov * (uyy - uy * uy), cov * (uxy - ux * uy)
    c1, c2 = np.float32(0.02**2), np.float32(0.06**2)
    s = ((np.float32(2) * ux * uy + c1) * (np.float32(2) * vxy + c2)) / ((ux**2 + uy**2 + c1) * (vx + vy + c2))
    want = s[3:-3, 3:-3].mean(dtype=np.float64)
    got = float(ssim_skimage_float32_sum(f[:1], [a[:1]])[0])
    assert got == pytest.approx(want, rel=1e-13)


def test_compiled_results_do_not_depend_on_the_thread_count():
    # The parallel sections write one output per task and reduce in a fixed order: bit-identical for 1 or 2 threads.
    f, a, b = _images(8, 120, 160)
    fns = [lambda: vif_pixel_sum(a, b, f), lambda: viff(a, b, f), lambda: qabf(a, b, f), lambda: nabf(f, a, b),
           lambda: ssim_sum(f, [a, b]), lambda: ssim_matlab_sum(f, [a, b]),
           lambda: ssim_skimage_float32_sum(f, [a, b]), lambda: qcb(a, b, f), lambda: qcv(a, b, f),
           lambda: fmi(a, b, f, feature="dct"), lambda: mutual_information_vifb(a, f), lambda: qp(a, b, f)]
    old = torch.get_num_threads()
    env = os.environ.pop("FUSION_METRIC_THREADS", None)  # the test sets the count through torch
    try:
        out = {}
        for n in (1, 2):
            torch.set_num_threads(n)
            assert metric_threads() == min(n, os.cpu_count() or 1)
            out[n] = [fn() for fn in fns]
    finally:
        torch.set_num_threads(old)
        if env is not None:
            os.environ["FUSION_METRIC_THREADS"] = env
    for x, y in zip(out[1], out[2], strict=True):
        assert torch.equal(x, y)


def test_parallel_map_order_errors_and_nesting():
    old = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        assert parallel_map(lambda x: x * x, range(7)) == [x * x for x in range(7)]
        # nested sections (three deep) finish: a thread waits only for items another thread is running
        assert parallel_map(lambda x: sum(parallel_map(lambda y: x * y, range(3))), range(4)) == [0, 3, 6, 9]
        deep = parallel_map(lambda x: sum(parallel_map(lambda y: sum(parallel_map(lambda z: x + y + z, range(3))),
                                                       range(3))), range(5))
        assert deep == [sum(x + y + z for y in range(3) for z in range(3)) for x in range(5)]

        def boom(x: int) -> int:
            if x == 3:
                raise ValueError("bad item 3")
            return x

        with pytest.raises(ValueError, match="bad item 3"):
            parallel_map(boom, range(5))

        def boom_late(x: int) -> int:  # the first failing item in input order is reported, whichever failed first
            if x == 1:
                time.sleep(0.05)
                raise ValueError("bad item 1")
            if x == 4:
                raise ValueError("bad item 4")
            return x

        with pytest.raises(ValueError, match="bad item 1"):
            parallel_map(boom_late, range(6))

        # the calling thread works too: with two threads, both the caller and the pool thread run items
        def who(_: int) -> str:
            time.sleep(0.02)
            return threading.current_thread().name

        assert len(set(parallel_map(who, range(6)))) == 2
    finally:
        torch.set_num_threads(old)


def test_planes_alike_finds_repeated_neighbours():
    rng = np.random.default_rng(0)
    g = rng.random((5, 6))
    x = np.stack([g, g, g, rng.random((5, 6)), g, g])
    assert _ops.planes_alike(x) == [0, 0, 0, 3, 4, 4]
    assert _ops.planes_alike(x[:1]) == [0]
    y = np.stack([g, g.copy()])
    y[1, 4, 5] += 1e-12  # one pixel differs
    assert _ops.planes_alike(y) == [0, 1]
    n = np.stack([g, g])
    n[:, 2, 2] = np.nan  # NaN never equals NaN: computed twice, as without the shortcut
    assert _ops.planes_alike(n) == [0, 1]
    calls = []

    def f(batch: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        calls.append(batch.shape[0])
        return batch * 2, batch.sum(axis=(1, 2))

    doubled, sums = _ops.on_distinct_planes(f, x)
    assert calls == [3] and np.array_equal(doubled, x * 2) and np.array_equal(sums, x.sum(axis=(1, 2)))


def test_a_grey_source_repeated_over_planes_scores_as_computed_plane_by_plane():
    # Qcb, Qcv, Qabf and SSIM compute a repeated source plane once: the values must be those of each plane alone.
    f, a, b = _images(15)
    f3 = torch.cat([f[:1], b[:1], (f[1:] * 0.5).round()])  # three different "colour planes" of the fused image
    a3 = torch.cat([a[:1]] * 3)  # a grey source on every plane
    b3 = torch.cat([b, a[1:]])
    fns = [lambda f, a, b: qcb(a, b, f), lambda f, a, b: qcv(a, b, f), lambda f, a, b: qabf(a, b, f),
           lambda f, a, b: ssim_sum(f, [b, a]), lambda f, a, b: mutual_information_vifb(a, f),
           lambda f, a, b: qp(a, b, f)]
    for fn in fns:
        whole = fn(f3, a3, b3)
        parts = torch.cat([fn(f3[i : i + 1], a3[i : i + 1], b3[i : i + 1]) for i in range(3)])
        assert torch.equal(whole, parts)


def test_filtered_batches_are_views_equal_to_single_images():
    rng = np.random.default_rng(1)
    win = _ops.fspecial_gaussian(11, 1.5)
    xs = [rng.random((3, 40, 52)), rng.random((2, 40, 52))]
    for stride in (1, 2):
        for x, got in zip(xs, _ops.filter2_valid_batches(win, xs, stride), strict=True):
            want = np.stack([_ops.filter2_valid_np(win, p) for p in x])[:, ::stride, ::stride]
            assert np.array_equal(got, want)
    with pytest.raises(ValueError, match="smaller than the kernel"):
        _ops.filter2_valid_batches(win, [rng.random((1, 8, 30))])


@pytest.mark.parametrize("scale", [1.0, 255.0])
def test_gradient_statistics_match_torch(scale):
    from fusion.metrics.statistics import average_gradient, average_gradient_mean, edge_intensity

    f, _, _ = _images(16)
    x = f / 255 * scale
    for fn in (average_gradient, average_gradient_mean, edge_intensity):
        _close(*_both(fn, x), 1e-13)
        _close(*_both(fn, x[:, :1, :]), 1e-13, atol=1e-300)  # a single row: MATLAB's gradient is 0 across it
        _close(*_both(fn, x[:, :, :1]), 1e-13, atol=1e-300)
    _close(*_both(edge_intensity, torch.full_like(x, 9.0)), 0)


def test_metrics_side_by_side_equal_a_serial_run():
    # The metrics of a pair run on both threads at once; values and errors must not change.
    from fusion.errors import InputError
    from fusion.metrics import evaluate, get_profile
    from fusion.metrics.registry import MetricDef, Profile

    rng = np.random.default_rng(2)
    vis = rng.integers(0, 256, (300, 260, 3), dtype=np.uint8)
    ir = rng.integers(0, 256, (300, 260), dtype=np.uint8)
    fused = ((vis.astype(np.int32) + ir[..., None]) // 2).astype(np.uint8)
    old = os.environ.get("FUSION_METRIC_THREADS")
    try:
        out = {}
        for n in ("1", "2"):
            os.environ["FUSION_METRIC_THREADS"] = n
            out[n] = {p: evaluate(fused, ir, vis, profile=p, metrics=list(get_profile(p).metrics))
                      for p in ("vifb", "mefb", "tang", "cddfuse")}
        assert out["1"] == out["2"]

        def fails(msg: str, delay: float):
            def run(sample):
                time.sleep(delay)
                raise ValueError(msg)

            return run

        prof = Profile(name="side_by_side_test", description="", color="channels", default=("A", "B"), conventions=(),
                       metrics={"A": MetricDef("A", fails("a broke", 0.05)), "B": MetricDef("B", fails("b broke", 0))})
        for n in ("1", "2"):  # the first failing metric in the profile's order is reported, as in a serial run
            os.environ["FUSION_METRIC_THREADS"] = n
            with pytest.raises(InputError, match=r"metric A \(side_by_side_test\) failed on 300x260 images: a broke"):
                evaluate(fused, ir, vis, profile=prof)
    finally:
        if old is None:
            os.environ.pop("FUSION_METRIC_THREADS", None)
        else:
            os.environ["FUSION_METRIC_THREADS"] = old
