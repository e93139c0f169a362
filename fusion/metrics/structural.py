"""Structural-similarity metrics: SSIM, MS-SSIM, MEF-SSIM and MEF-MS-SSIM.

Inputs are batches ``(B, H, W)`` (``(B, K, H, W)`` for the MEF source stacks) of ``float64`` on [0, 255].
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from fusion.metrics._ops import filter2, filter2_valid_batches, fspecial_gaussian, on_distinct_planes, use_compiled
from fusion.metrics._parallel import parallel_map, run_parallel

__all__ = [
    "ssim", "ssim_sum", "ssim_matlab", "ssim_matlab_sum", "ssim_skimage_float32", "ssim_skimage_float32_sum", "ms_ssim",
    "mef_ssim", "mef_ms_ssim", "q_yang", "q_cvejic", "q_piella_edge",
]


def _corr_valid(x: torch.Tensor, win: np.ndarray) -> torch.Tensor:
    return filter2(win, x, "valid")


def _ssim_sum(x: torch.Tensor, ys: list[torch.Tensor], win: np.ndarray, pad: int, c1: float, c2: float) -> torch.Tensor:
    """``sum(mean SSIM map of (x, y) for y in ys)``: Gaussian statistics by correlation with ``win`` on the 'valid'
    part of the image replicate-padded by ``pad`` (0: no padding), ``x``'s statistics computed once.

    SSIM is symmetric in its two images bit for bit (every product and sum in it commutes), so ``x`` may be either.
    On CPU the filters run on the metric threads and the map in one compiled pass (:func:`fusion.metrics._kernels.
    ssim_mean`); elsewhere in torch.
    """
    for y in ys:
        if y.shape != x.shape or x.dim() != 3:
            raise ValueError(f"expected (B, H, W) batches of one shape, got {tuple(x.shape)} and {tuple(y.shape)}")
    if not use_compiled(x):
        def blur(t: torch.Tensor) -> torch.Tensor:
            tp = F.pad(t[:, None], (pad,) * 4, mode="replicate")[:, 0] if pad else t
            return _corr_valid(tp, win)

        total = torch.zeros(x.shape[0], dtype=torch.float64, device=x.device)
        mux, sxx = blur(x), blur(x * x)
        for y in ys:
            muy = blur(y)
            sx = sxx - mux * mux
            sy = blur(y * y) - muy * muy
            sxy = blur(x * y) - mux * muy
            smap = ((2 * mux * muy + c1) * (2 * sxy + c2)) / ((mux * mux + muy * muy + c1) * (sx + sy + c2))
            total = total + smap.mean(dim=(1, 2))
        return total
    from fusion.metrics._kernels import ssim_mean

    xn = x.detach().contiguous().numpy()
    yn = [y.detach().contiguous().numpy() for y in ys]

    def blur_np(t: np.ndarray) -> np.ndarray:
        return filter2_valid_batches(win, [np.pad(t, ((0, 0), (pad, pad), (pad, pad)), mode="edge") if pad else t])[0]

    def blur_distinct(t: np.ndarray) -> np.ndarray:
        return on_distinct_planes(blur_np, t)  # a grey source repeated over colour planes is filtered once

    mux, sxx = run_parallel(lambda: blur_distinct(xn), lambda: blur_distinct(xn * xn), pixels=xn.size)

    def one(y: np.ndarray) -> np.ndarray:
        return ssim_mean(mux, blur_distinct(y), sxx, blur_distinct(y * y), blur_np(xn * y), c1, c2)

    return torch.from_numpy(np.sum(parallel_map(one, yn, pixels=xn.size), axis=0))


def ssim(
    a: torch.Tensor,
    b: torch.Tensor,
    *,
    data_range: float = 255.0,
    k1: float = 0.01,
    k2: float = 0.03,
    win_size: int = 11,
    sigma: float = 1.5,
) -> torch.Tensor:
    r"""SSIM of Wang et al. (2004) as in their reference ``ssim_index.m``: Gaussian window (11, 1.5), statistics on the
    'valid' part only, :math:`C_1 = (k_1 L)^2`, :math:`C_2 = (k_2 L)^2`, mean of the SSIM map.

    :math:`SSIM = \frac{(2\mu_a\mu_b + C_1)(2\sigma_{ab} + C_2)}
    {(\mu_a^2 + \mu_b^2 + C_1)(\sigma_a^2 + \sigma_b^2 + C_2)}`.
    """
    return ssim_sum(a, [b], data_range=data_range, k1=k1, k2=k2, win_size=win_size, sigma=sigma)


def ssim_sum(
    a: torch.Tensor,
    others: list[torch.Tensor],
    *,
    data_range: float = 255.0,
    k1: float = 0.01,
    k2: float = 0.03,
    win_size: int = 11,
    sigma: float = 1.5,
) -> torch.Tensor:
    """``sum(ssim(a, b) for b in others)`` with ``a``'s statistics computed once (the same values)."""
    win = fspecial_gaussian(win_size, sigma)
    return _ssim_sum(a, others, win, 0, (k1 * data_range) ** 2, (k2 * data_range) ** 2)


def ssim_matlab(a: torch.Tensor, ref: torch.Tensor, *, data_range: float = 255.0) -> torch.Tensor:
    """MATLAB's built-in ``ssim`` (R2014a+): ``imgaussfilt`` sigma 1.5, 11x11, replicate padding, same-size map.

    ``data_range`` is the ``DynamicRange`` option (MATLAB's default is 1 for ``double`` input).
    """
    return ssim_matlab_sum(a, [ref], data_range=data_range)


def ssim_matlab_sum(a: torch.Tensor, others: list[torch.Tensor], *, data_range: float = 255.0) -> torch.Tensor:
    """``sum(ssim_matlab(a, b) for b in others)`` with ``a``'s statistics computed once (the same values)."""
    win = fspecial_gaussian(11, 1.5)
    return _ssim_sum(a, others, win, 5, (0.01 * data_range) ** 2, (0.03 * data_range) ** 2)


def ssim_skimage_float32(
    a: torch.Tensor, b: torch.Tensor, *, data_range: float = 2.0, win_size: int = 7
) -> torch.Tensor:
    r"""scikit-image 0.19's ``structural_similarity(a, b)`` on float32 images, as the CDDFuse ``Evaluator`` calls it.

    Conventions of that call, all reproduced: the images are ``float32`` and so is every intermediate (scikit-image
    keeps float32 inputs in float32 since 0.19); ``data_range`` defaults to the dtype's range, 2 for floats (so
    :math:`C_1 = (0.01 \cdot 2)^2`, :math:`C_2 = (0.03 \cdot 2)^2` on images holding 0..255); a 7x7 uniform window
    (``scipy.ndimage.uniform_filter``, reflect borders); sample covariances (:math:`N/(N-1)`, N = 49); the SSIM map
    cropped by 3 pixels on each side and averaged in float64. The float32 arithmetic matters: with these tiny
    constants, flat regions are decided by float32 cancellation, so the operations run in scikit-image's order.

    Args:
        a, b: ``(B, H, W)`` grey levels.
    Returns:
        ``(B,)`` float64.
    """
    return ssim_skimage_float32_sum(a, [b], data_range=data_range, win_size=win_size)


def ssim_skimage_float32_sum(
    a: torch.Tensor, others: list[torch.Tensor], *, data_range: float = 2.0, win_size: int = 7
) -> torch.Tensor:
    """``sum(ssim_skimage_float32(a, b) for b in others)`` with ``a``'s local statistics computed once (identical
    float32 operations, so identical results)."""
    from fusion.metrics._kernels import ssim_f32_mean, uniform_filter_f32

    for b in others:
        if a.shape != b.shape or a.dim() != 3:
            raise ValueError(f"expected (B, H, W) batches of one shape, got {tuple(a.shape)} and {tuple(b.shape)}")
    if min(a.shape[1:]) < win_size:
        raise ValueError(f"SSIM: image {a.shape[1]}x{a.shape[2]} is smaller than the {win_size}x{win_size} window")
    c1 = (0.01 * data_range) ** 2
    c2 = (0.03 * data_range) ** 2
    xs = a.detach().cpu().numpy().astype(np.float32)
    ys = [b.detach().cpu().numpy().astype(np.float32) for b in others]

    def one_image(x: np.ndarray, y_list: list[np.ndarray]) -> float:
        ux, uxx = run_parallel(lambda: uniform_filter_f32(x, win_size), lambda: uniform_filter_f32(x * x, win_size),
                               pixels=x.size)
        return sum(parallel_map(lambda y: ssim_f32_mean(x, y, ux, uxx, win_size, c1, c2), y_list, pixels=x.size))

    out = [one_image(x, [y[i] for y in ys]) for i, x in enumerate(xs)]
    return torch.tensor(out, dtype=torch.float64, device=a.device)


def _downsample2(x: torch.Tensor) -> torch.Tensor:
    """``imfilter(x, ones(2)/4, 'symmetric', 'same')`` then keep every second pixel (MATLAB ``1:2:end``)."""
    xp = F.pad(x[:, None], (0, 1, 0, 1), mode="replicate")[:, 0]  # symmetric padding by one == replicate
    avg = (xp[:, :-1, :-1] + xp[:, 1:, :-1] + xp[:, :-1, 1:] + xp[:, 1:, 1:]) / 4
    return avg[:, ::2, ::2]


_MS_WEIGHTS = (0.0448, 0.2856, 0.3001, 0.2363, 0.1333)


def ms_ssim(a: torch.Tensor, b: torch.Tensor, *, data_range: float = 255.0, levels: int = 5) -> torch.Tensor:
    r"""MS-SSIM of Wang, Simoncelli & Bovik (2003): contrast-structure terms of scales 1..M-1 and the full SSIM of
    scale M, weighted by (0.0448, 0.2856, 0.3001, 0.2363, 0.1333); 2x2 average downsampling between scales.
    """
    win = fspecial_gaussian(11, 1.5)
    c1 = (0.01 * data_range) ** 2
    c2 = (0.03 * data_range) ** 2
    w = torch.tensor(_MS_WEIGHTS[:levels], dtype=torch.float64, device=a.device)
    w = w / w.sum()
    out = torch.ones(a.shape[0], dtype=torch.float64, device=a.device)
    for lvl in range(levels):
        mu1, mu2 = _corr_valid(a, win), _corr_valid(b, win)
        s1 = _corr_valid(a * a, win) - mu1 * mu1
        s2 = _corr_valid(b * b, win) - mu2 * mu2
        s12 = _corr_valid(a * b, win) - mu1 * mu2
        cs = ((2 * s12 + c2) / (s1 + s2 + c2)).mean(dim=(1, 2))
        if lvl == levels - 1:
            lum = ((2 * mu1 * mu2 + c1) / (mu1 * mu1 + mu2 * mu2 + c1)).mean(dim=(1, 2))
            out = out * (cs * lum).clamp(min=0) ** w[lvl]
        else:
            out = out * cs.clamp(min=0) ** w[lvl]
            a, b = _downsample2(a), _downsample2(b)
    return out


def _box_sum(x: torch.Tensor, size: int) -> torch.Tensor:
    return filter2(np.ones((size, size)), x, "valid")


def _window_extremes(x: torch.Tensor, size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Maximum and minimum over every ``size`` x ``size`` window of ``(B, H, W)`` ('valid' part): exact values. On
    CPU by OpenCV's dilation/erosion (torch's float64 max pooling took 80 % of MEF-SSIM)."""
    if not use_compiled(x):
        mx = F.max_pool2d(x[:, None], size, stride=1)[:, 0]
        return mx, -F.max_pool2d(-x[:, None], size, stride=1)[:, 0]
    import cv2

    kernel = np.ones((size, size), np.uint8)
    xn = np.ascontiguousarray(x.detach().numpy())
    h, w = xn.shape[1:]
    cut = (slice(size // 2, h - (size - 1 - size // 2)), slice(size // 2, w - (size - 1 - size // 2)))

    def extremes(img: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return cv2.dilate(img, kernel), cv2.erode(img, kernel)

    out = parallel_map(extremes, list(xn), pixels=h * w)
    return (torch.from_numpy(np.stack([o[0][cut] for o in out])),
            torch.from_numpy(np.stack([o[1][cut] for o in out])))


def mef_ssim(seq: torch.Tensor, fused: torch.Tensor, *, k: float = 0.03, win_size: int = 11) -> torch.Tensor:
    r"""MEF-SSIM of Ma, Zeng & Wang (2015), ``mef_ssim.m``: the fused image against a structure patch synthesised
    from the source sequence.

    For every 11x11 patch: each source's signal strength :math:`\|x_k - \mu_k\|` (+0.001), the consistency
    :math:`R = \|\sum_k x_k - \overline{\sum_k x_k}\| / \sum_k \|x_k - \mu_k\|`, weights
    :math:`w_k \propto (\|x_k - \mu_k\|/11)^{\tan(\pi R/2)}` (exponent capped at 10), the reference patch
    :math:`\hat x = \sum_k w_k (x_k - \mu_k)/\|x_k - \mu_k\|` rescaled to the largest strength, and
    :math:`q = (2\sigma_{\hat x f} + C)/(\sigma_{\hat x}^2 + \sigma_f^2 + C)` with a Gaussian window (11, 1.5),
    :math:`C = (0.03 \cdot 255)^2`. The score is the mean of :math:`q`.

    Args:
        seq: (B, K, H, W) source images.
        fused: (B, H, W).
    """
    bsz, nk, h, w = seq.shape
    n = win_size * win_size
    g = fspecial_gaussian(win_size, 1.5)
    eps = float(np.finfo(np.float64).eps)
    flat_seq = seq.reshape(bsz * nk, h, w)
    s = _box_sum(flat_seq, win_size).reshape(bsz, nk, h - win_size + 1, w - win_size + 1)
    s2 = _box_sum(flat_seq * flat_seq, win_size).reshape(s.shape)
    mu = s / n
    sq_dev = (s2 - s * mu).clamp(min=0)  # sum over the patch of (x - mu)^2
    ed = torch.sqrt(sq_dev) + 0.001
    # A constant patch has exactly zero deviation; detect it exactly rather than trusting the cancellation above.
    mx, mn = _window_extremes(flat_seq, win_size)
    const = mx.reshape(s.shape) == mn.reshape(s.shape)
    sq_dev = torch.where(const, torch.zeros_like(sq_dev), sq_dev)
    ed = torch.where(const, torch.full_like(ed, 0.001), ed)
    total = seq.sum(dim=1)
    ts = _box_sum(total, win_size)
    ts2 = _box_sum(total * total, win_size)
    num = torch.sqrt((ts2 - ts * ts / n).clamp(min=0))
    tmx, tmn = _window_extremes(total, win_size)
    num = torch.where(tmx == tmn, torch.zeros_like(num), num)
    den = torch.sqrt(sq_dev).sum(dim=1)
    r = (num + eps) / (den + eps)
    r = torch.where(r > 1, torch.full_like(r, 1 - eps), r)
    r = torch.where(r < 0, torch.full_like(r, eps), r)
    p = torch.tan(np.pi / 2 * r).clamp(max=10)
    wmap = (ed / win_size) ** p[:, None] + eps
    wmap = wmap / wmap.sum(dim=1, keepdim=True)
    max_ed = ed.max(dim=1).values
    c = wmap / ed  # reference patch = sum_k c_k (x_k - mu_k), before rescaling

    # Gaussian-window moments of the (unscaled) reference patch y and of the fused patch f, from pairwise products.
    def gsum(x: torch.Tensor) -> torch.Tensor:
        return filter2(g, x, "valid")

    gx = gsum(flat_seq).reshape(s.shape)
    f_mu = gsum(fused)
    f_var = gsum(fused * fused) - f_mu * f_mu
    y_mean = (c * (gx - mu)).sum(dim=1)
    y_gsq = torch.zeros_like(f_mu)
    y_norm2 = torch.zeros_like(f_mu)
    for i in range(nk):
        for j in range(nk):
            xi, xj = seq[:, i], seq[:, j]
            gxx = gsum(xi * xj)
            sxx = _box_sum(xi * xj, win_size)
            cij = c[:, i] * c[:, j]
            y_gsq = y_gsq + cij * (gxx - mu[:, j] * gx[:, i] - mu[:, i] * gx[:, j] + mu[:, i] * mu[:, j])
            y_norm2 = y_norm2 + cij * (sxx - n * mu[:, i] * mu[:, j])
    y_f = torch.zeros_like(f_mu)
    for i in range(nk):
        y_f = y_f + c[:, i] * (gsum(seq[:, i] * fused) - mu[:, i] * f_mu)
    y_norm2 = y_norm2.clamp(min=0)
    all_const = const.all(dim=1)
    scale = torch.where(
        all_const | (y_norm2 <= 0), torch.zeros_like(max_ed), max_ed / torch.sqrt(y_norm2.clamp(min=1e-300))
    )
    s1 = (scale * scale * (y_gsq - y_mean * y_mean)).clamp(min=0)
    s12 = scale * (y_f - y_mean * f_mu)
    cst = (k * 255) ** 2
    q = (2 * s12 + cst) / (s1 + f_var + cst)
    return q.mean(dim=(1, 2))


def mef_ms_ssim(
    seq: torch.Tensor, fused: torch.Tensor, *, levels: int = 3, weights: tuple[float, ...] = (0.0448, 0.2856, 0.3001)
) -> torch.Tensor:
    """MEF-MS-SSIM (``mef_ms_ssim.m`` / ``analysis_ms_ssim.m``): :func:`mef_ssim` at ``levels`` scales (2x2 averaging
    and decimation between them), combined as :math:`\\prod_l Q_l^{w_l}` with the weights normalised to sum 1."""
    w = np.asarray(weights[:levels], dtype=np.float64)
    w = w / w.sum()
    out = torch.ones(fused.shape[0], dtype=torch.float64, device=fused.device)
    for lvl in range(levels):
        q = mef_ssim(seq, fused)
        out = out * q ** float(w[lvl])
        if lvl < levels - 1:
            bsz, nk, h, wd = seq.shape
            seq = _downsample2(seq.reshape(bsz * nk, h, wd)).reshape(bsz, nk, (h + 1) // 2, (wd + 1) // 2)
            fused = _downsample2(fused)
    return out


def _ssim_stats(
    a: torch.Tensor, b: torch.Tensor, win: np.ndarray, c1: float, c2: float
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """'valid' SSIM map and the local variances/covariance ``(map, var_a, var_b, cov_ab)``."""
    mu1, mu2 = _corr_valid(a, win), _corr_valid(b, win)
    s1 = _corr_valid(a * a, win) - mu1 * mu1
    s2 = _corr_valid(b * b, win) - mu2 * mu2
    s12 = _corr_valid(a * b, win) - mu1 * mu2
    smap = ((2 * mu1 * mu2 + c1) * (2 * s12 + c2)) / ((mu1 * mu1 + mu2 * mu2 + c1) * (s1 + s2 + c2))
    return smap, s1, s2, s12


def _nanmean(x: torch.Tensor) -> torch.Tensor:
    v = x.reshape(x.shape[0], -1)
    ok = ~torch.isnan(v)
    return torch.where(ok, v, torch.zeros_like(v)).sum(dim=1) / ok.sum(dim=1)


_YANG_WIN = fspecial_gaussian(7, 1.5)


def q_yang(a: torch.Tensor, b: torch.Tensor, fused: torch.Tensor) -> torch.Tensor:
    r"""Qy, Yang et al. (Information Fusion 2008), Z. Liu's ``metricYang.m``.

    SSIM maps (Gaussian 7x7, :math:`\sigma = 1.5`, :math:`C_1 = C_2 = 2\cdot10^{-16}`). Where
    :math:`SSIM(A, B) \ge 0.75`: :math:`\lambda\,SSIM(A,F) + (1-\lambda)\,SSIM(B,F)` with
    :math:`\lambda = \sigma_A^2/(\sigma_A^2 + \sigma_B^2)`; elsewhere :math:`\max(SSIM(A,F), SSIM(B,F))`.
    The score is the mean over non-NaN positions.
    """
    s_ab, va, vb, _ = _ssim_stats(a, b, _YANG_WIN, 2e-16, 2e-16)
    s_af = _ssim_stats(a, fused, _YANG_WIN, 2e-16, 2e-16)[0]
    s_bf = _ssim_stats(b, fused, _YANG_WIN, 2e-16, 2e-16)[0]
    binmap = (s_ab >= 0.75).to(a.dtype)
    lam = va / (va + vb)
    q = (lam * s_af + (1 - lam) * s_bf) * binmap + torch.maximum(s_af, s_bf) * (1 - binmap)
    return _nanmean(q)


def q_cvejic(a: torch.Tensor, b: torch.Tensor, fused: torch.Tensor) -> torch.Tensor:
    r"""Qc, Cvejic et al. (2006), Z. Liu's ``metricCvejic.m`` (metric 2).

    :math:`\mu = \sigma_{AF} / (\sigma_{AF} + \sigma_{BF})` (local covariances, Gaussian 7x7 window), clipped to
    [0, 1] by setting the similarity to 0 / 1 where :math:`\mu < 0` / :math:`\mu > 1`;
    :math:`Q_c = \overline{\mu\,SSIM(A,F) + (1-\mu)\,SSIM(B,F)}` over non-NaN positions.
    """
    s_af, _, _, c_af = _ssim_stats(a, fused, _YANG_WIN, 2e-16, 2e-16)
    s_bf, _, _, c_bf = _ssim_stats(b, fused, _YANG_WIN, 2e-16, 2e-16)
    mu = c_af / (c_af + c_bf)
    sim = mu * s_af + (1 - mu) * s_bf
    sim = torch.where(mu < 0, torch.zeros_like(sim), sim)
    sim = torch.where(mu > 1, torch.ones_like(sim), sim)
    return _nanmean(sim)


_PREWITT_X = np.array([[1.0, 0.0, -1.0], [1.0, 0.0, -1.0], [1.0, 0.0, -1.0]])
_PREWITT_Y = np.array([[1.0, 1.0, 1.0], [0.0, 0.0, 0.0], [-1.0, -1.0, -1.0]])


def q_piella_edge(a: torch.Tensor, b: torch.Tensor, fused: torch.Tensor) -> torch.Tensor:
    r"""Qw as MEFB computes it (Z. Liu's ``metricPeilla.m``, option 3): Piella's weighted fusion quality index on the
    Prewitt edge-magnitude images.

    With SSIM maps (Gaussian 11x11, L = 255) of the edge images,
    :math:`\lambda = \sigma_A^2/(\sigma_A^2 + \sigma_B^2)` (0.5 added to both where they sum to 0),
    :math:`c_w = \max(\sigma_A^2, \sigma_B^2) / \sum \max(\sigma_A^2, \sigma_B^2)` and
    :math:`Q_w = \sum c_w (\lambda\,SSIM(F, A) + (1 - \lambda)\,SSIM(F, B))`.
    """
    win = fspecial_gaussian(11, 1.5)
    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2

    def edges(x: torch.Tensor) -> torch.Tensor:
        gx = filter2(_PREWITT_X, x, "same")
        gy = filter2(_PREWITT_Y, x, "same")
        return torch.sqrt(gx * gx + gy * gy)

    ea, eb, ef = edges(a), edges(b), edges(fused)
    _, va, vb, _ = _ssim_stats(ea, eb, win, c1, c2)
    zero = ((va + vb) == 0).to(a.dtype) * 0.5
    va, vb = va + zero, vb + zero
    lam = va / (va + vb)
    s1 = _ssim_stats(ef, ea, win, c1, c2)[0]
    s2 = _ssim_stats(ef, eb, win, c1, c2)[0]
    cw = torch.maximum(va, vb)
    cw = cw / cw.sum(dim=(1, 2), keepdim=True)
    return (cw * (lam * s1 + (1 - lam) * s2)).sum(dim=(1, 2))
