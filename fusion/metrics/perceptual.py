"""Human-perception metrics: VIF (multi-scale pixel domain), Qcb (Chen-Blum) and Qcv (Chen-Varshney)."""

from __future__ import annotations

import functools
import math

import numpy as np
import torch

from fusion.metrics._ops import (
    block_reduce,
    distinct_planes,
    fft_filter,
    fft_filter_half_np,
    filter2,
    filter2_same_np,
    filter2_valid_batches,
    flat,
    freqspace,
    fspecial_gaussian,
    hermitian_half,
    matlab_round,
    use_compiled,
)
from fusion.metrics._parallel import parallel_map

__all__ = ["vif_pixel", "vif_pixel_pair", "vif_pixel_sum", "viff", "qcb", "qcv", "normalize1", "phase_congruency", "qp"]


Array = torch.Tensor | np.ndarray


def _vif_maps(mu1: torch.Tensor, mu2: torch.Tensor, s1: torch.Tensor, s2: torch.Tensor, s12: torch.Tensor,
              sigma_nsq: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(g, info_with_distortion, info_reference)`` from local means and raw second moments.

    ``s2`` is the distorted image's variance, already clamped at 0; ``s1``/``s12`` are filtered ``ref*ref`` and
    ``ref*dist``. The masked assignments follow the reference code's order.
    """
    eps = 1e-10
    s1 = (s1 - mu1 * mu1).clamp(min=0)
    s12 = s12 - mu1 * mu2
    g = s12 / (s1 + eps)
    sv = s2 - g * s12
    low1 = s1 < eps
    g.masked_fill_(low1, 0.0)
    sv = torch.where(low1, s2, sv)
    s1.masked_fill_(low1, 0.0)
    low2 = s2 < eps
    g.masked_fill_(low2, 0.0)
    sv.masked_fill_(low2, 0.0)
    neg = g < 0
    sv = torch.where(neg, s2, sv)
    g.masked_fill_(neg, 0.0)
    sv.masked_fill_(sv <= eps, eps)
    return g, torch.log10(1 + g * g * s1 / (sv + sigma_nsq)), torch.log10(1 + s1 / sigma_nsq)


def _vif_stats(refs: list[Array], dist: Array, saturate_uint8: bool):
    """Yield, for each of the 4 scales of the pixel-domain VIF, the local statistics ``(mus, mu2, rrs, dd, rds)``:
    per reference in ``refs`` (each ``(B, H, W)``, like ``dist``) its local mean and filtered ``ref*ref`` and
    ``ref*dist``, and the distorted image's local mean and filtered ``dist*dist`` (computed once for all references).

    With compiled kernels (CPU) the maps are numpy float64 (:func:`fusion.metrics._ops.filter2_valid_batches`);
    otherwise torch.
    """
    cpu = use_compiled(dist)
    if cpu:
        refs = [r.detach().contiguous().numpy() for r in refs]
        dist = dist.detach().contiguous().numpy()
    k = len(refs)
    for scale in range(1, 5):
        n = 2 ** (4 - scale + 1) + 1
        win = fspecial_gaussian(n, n / 5.0)
        if scale > 1:
            low = filter2_valid_batches(win, [*refs, dist], stride=2)
            refs, dist = low[:-1], low[-1]
        prods = [dist * dist, *(r * r for r in refs), *(r * dist for r in refs)]
        if saturate_uint8 and scale == 1:
            prods = [p.clip(max=255) for p in prods]
        mu2, dd, *rest = filter2_valid_batches(win, [dist, prods[0], *refs, *prods[1:]])
        yield rest[:k], mu2, rest[k : 2 * k], dd, rest[2 * k :]


def _vif_scales(refs: list[torch.Tensor], dist: torch.Tensor, sigma_nsq: float, saturate_uint8: bool):
    """Per scale, one ``(g, info_with_distortion, info_reference)`` tuple of torch maps per reference (the torch
    formulation: other devices, and the reference the compiled CPU kernels are tested against)."""
    for mus, mu2, rrs, dd, rds in _vif_stats(refs, dist, saturate_uint8):
        s2 = (dd - mu2 * mu2).clip(min=0)
        yield [_vif_maps(m, mu2, r, s2, c, sigma_nsq) for m, r, c in zip(mus, rrs, rds, strict=True)]


def _vif_ratio(refs: list[torch.Tensor], dist: torch.Tensor, sigma_nsq: float, saturate_uint8: bool) -> torch.Tensor:
    """``(k, B)``: VIF of each reference against ``dist``."""
    if not use_compiled(dist):
        num = [0.0] * len(refs)
        den = [0.0] * len(refs)
        for maps in _vif_scales(refs, dist, sigma_nsq, saturate_uint8):
            for i, (_, vid, vind) in enumerate(maps):
                num[i] = num[i] + vid.sum(dim=(1, 2))
                den[i] = den[i] + vind.sum(dim=(1, 2))
        return torch.stack([n / d for n, d in zip(num, den, strict=True)])
    from fusion.metrics._kernels import vif_sums

    num = np.zeros((len(refs), dist.shape[0]))
    den = np.zeros_like(num)
    for mus, mu2, rrs, dd, rds in _vif_stats(refs, dist, saturate_uint8):
        jobs = [(m, mu2, r, dd, c) for m, r, c in zip(mus, rrs, rds, strict=True)]
        sums = parallel_map(lambda args: vif_sums(*args, sigma_nsq), jobs, pixels=mu2.size)
        for i, (n, d) in enumerate(sums):
            num[i] += n
            den[i] += d
    return torch.from_numpy(num / den)


def vif_pixel_sum(a: torch.Tensor, b: torch.Tensor, dist: torch.Tensor, *, sigma_nsq: float = 2.0) -> torch.Tensor:
    """``vif_pixel(a, dist) + vif_pixel(b, dist)`` with the distorted image's statistics computed once."""
    vif = _vif_ratio([a, b], dist, sigma_nsq, False)
    return vif[0] + vif[1]


def vif_pixel(
    ref: torch.Tensor, dist: torch.Tensor, *, sigma_nsq: float = 2.0, saturate_uint8: bool = False
) -> torch.Tensor:
    r"""Multi-scale pixel-domain VIF of Sheikh & Bovik (``vifp_mscale.m``), one reference against the fused image.

    Four scales; at scale :math:`s` a Gaussian window of size :math:`N = 2^{5-s} + 1`, :math:`\sigma = N/5` gives
    local statistics (``filter2 'valid'``), and scales > 1 are low-passed and decimated by 2. With
    :math:`g = \sigma_{12}/\sigma_1^2` and :math:`\sigma_v^2 = \sigma_2^2 - g\sigma_{12}`:
    :math:`VIF = \sum \log_{10}(1 + g^2 \sigma_1^2 / (\sigma_v^2 + \sigma_n^2))
    / \sum \log_{10}(1 + \sigma_1^2/\sigma_n^2)`.

    Args:
        ref, dist: (B, H, W) on [0, 255].
        sigma_nsq: HVS noise variance :math:`\sigma_n^2`.
        saturate_uint8: reproduce the legacy MATLAB call on ``uint8`` images, where ``ref.*ref``, ``dist.*dist`` and
            ``ref.*dist`` of the first scale saturate at 255 (later scales are filtered doubles).
    """
    return _vif_ratio([ref], dist, sigma_nsq, saturate_uint8)[0]


def vif_pixel_pair(
    a: torch.Tensor, b: torch.Tensor, dist: torch.Tensor, *, sigma_nsq: float = 2.0, saturate_uint8: bool = False
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(vif_pixel(a, dist), vif_pixel(b, dist))`` with the distorted image's statistics computed once."""
    vif = _vif_ratio([a, b], dist, sigma_nsq, saturate_uint8)
    return vif[0], vif[1]


def viff(a: torch.Tensor, b: torch.Tensor, fused: torch.Tensor) -> torch.Tensor:
    r"""VIFF of Han, Cai, Cao & Xu (Information Fusion 2013), as in MEFB ``metricsVIF``.

    Per scale, the VIF maps of both sources against :math:`F` (noise variance :math:`0.005 \cdot 255^2`) are merged
    by taking, at each position, the source with the smaller gain :math:`g`; the scale's score is
    :math:`\sum (VID + C) / \sum (VIND + C)` (:math:`C = 10^{-7}`), and the four scales are weighted by
    :math:`(1, 0, 0.15, 1)/2.15`.
    """
    sq = 0.005 * 255 * 255
    weights = (1 / 2.15, 0.0, 0.15 / 2.15, 1 / 2.15)
    out = torch.zeros(a.shape[0], dtype=torch.float64, device=a.device)
    if not use_compiled(fused):
        for ((g1, z1, m1), (g2, z2, m2)), w in zip(_vif_scales([a, b], fused, sq, False), weights, strict=True):
            pick1 = g1 < g2
            vid = (torch.where(pick1, z1, z2) + 1e-7).sum(dim=(1, 2))
            vind = (torch.where(pick1, m1, m2) + 1e-7).sum(dim=(1, 2))
            out = out + w * (vid / vind)
        return out
    from fusion.metrics._kernels import viff_sums

    for (mus, mu2, rrs, dd, rds), w in zip(_vif_stats([a, b], fused, False), weights, strict=True):
        if w == 0.0:
            continue
        vid, vind = viff_sums(mus[0], rrs[0], rds[0], mus[1], rrs[1], rds[1], mu2, dd, sq, 1e-7)
        out = out + w * torch.from_numpy(vid / vind)
    return out


def normalize1(x: torch.Tensor) -> torch.Tensor:
    """Z. Liu's ``normalize1``: min-max scale to 0..255 and round (half away); all-zero images are left alone."""
    if use_compiled(x):
        from fusion.metrics._kernels import normalize1 as _normalize1

        return torch.from_numpy(_normalize1(x.detach().numpy()))
    lo = flat(x).min(dim=1).values[:, None, None]
    hi = flat(x).max(dim=1).values[:, None, None]
    keep = (hi == 0) & (lo == 0)
    scaled = matlab_round((x - lo) / (hi - lo) * 255)
    return torch.where(keep, x, scaled)


def _gaussian2d(sigma: float) -> np.ndarray:
    y, x = np.mgrid[-15:16, -15:16].astype(np.float64)
    return np.exp(-(x * x + y * y) / (2 * sigma * sigma)) / (2 * math.pi * sigma * sigma)


@functools.lru_cache(maxsize=8)
def _csf(kind: str, h: int, w: int) -> torch.Tensor:
    """The contrast sensitivity response of Qcb (``chen_blum``) or Qcv (``mannos_sakrison``) for ``h x w`` images,
    laid out like ``freqspace`` (CPU float64; it depends on the size only)."""
    u, v = freqspace(h, w, torch.empty(0, dtype=torch.float64))
    if kind == "chen_blum":
        r = torch.sqrt((u * (w / 30.0)) ** 2 + (v * (h / 30.0)) ** 2)
        return torch.exp(-((r / 15.3870) ** 2)) - 0.7622 * torch.exp(-((r / 1.3456) ** 2))
    r = torch.sqrt((u * (w / 8.0)) ** 2 + (v * (h / 8.0)) ** 2)
    return 2.6 * (0.0192 + 0.144 * r) * torch.exp(-((0.144 * r) ** 1.1))


@functools.lru_cache(maxsize=8)
def _csf_half(kind: str, h: int, w: int) -> np.ndarray:
    """:func:`_csf` as the half spectrum the real transforms multiply by (:func:`hermitian_half`)."""
    return hermitian_half(_csf(kind, h, w).numpy())


def qcb(a: torch.Tensor, b: torch.Tensor, fused: torch.Tensor) -> torch.Tensor:
    r"""Qcb, Chen-Blum contrast-preservation metric (Z. Liu's ``metricChenBlum.m`` as used by VIFB/MEFB).

    Images are normalised to 0..255 (:func:`normalize1`), filtered by the contrast sensitivity function
    :math:`S(r) = e^{-(r/f_0)^2} - a\,e^{-(r/f_1)^2}` (:math:`f_0 = 15.387, f_1 = 1.3456, a = 0.7622`, frequencies
    scaled by size/30); local contrast :math:`C = |G_2 \star I' / G_4 \star I' - 1|` (31x31 Gaussians of sigma 2
    and 4), masked :math:`C' = C^3/(C^2 + 10^{-4})`; preservation :math:`Q_{AF} = \min(C'_A, C'_F)/\max(C'_A, C'_F)`;
    :math:`Q_{cb} = \overline{\lambda_A Q_{AF} + \lambda_B Q_{BF}}` with :math:`\lambda_A = C_A'^2/(C_A'^2 + C_B'^2)`.
    """
    h, w = a.shape[1:]
    g1 = _gaussian2d(2.0)
    g2 = _gaussian2d(4.0)
    if use_compiled(fused):
        return _qcb_cpu(a, b, fused, g1, g2)
    sd = _csf("chen_blum", h, w).to(fused.device)

    def masked_contrast(x: torch.Tensor) -> torch.Tensor:
        y = fft_filter(normalize1(x), sd)
        c = torch.abs(filter2(g1, y, "same") / filter2(g2, y, "same") - 1)
        return c**3 / (c**2 + 0.0001)

    ca, cb, cf = masked_contrast(a), masked_contrast(b), masked_contrast(fused)

    def pres(c: torch.Tensor) -> torch.Tensor:
        # The reference blends both ratios with a 0/1 mask, so 0/0 and x/0 propagate NaN exactly as it does.
        mask = (c < cf).to(c.dtype)
        return (c / cf) * mask + (cf / c) * (1 - mask)

    lam_a = ca * ca / (ca * ca + cb * cb)
    lam_b = cb * cb / (ca * ca + cb * cb)
    return (lam_a * pres(ca) + lam_b * pres(cb)).mean(dim=(1, 2))


def _distinct_images(*batches: torch.Tensor) -> tuple[list[np.ndarray], list[int]]:
    """The images of several ``(B, H, W)`` CPU batches as one list without repeats of a neighbour (a grey source
    repeated over colour planes is computed once), and for each input image (batches in order) its index there."""
    images, where = [], []
    for x in batches:
        arr = x.detach().numpy()
        keep, pos = distinct_planes(arr)
        where.extend(len(images) + p for p in pos)
        images.extend(arr[i : i + 1] for i in keep)
    return images, where


def _qcb_cpu(a: torch.Tensor, b: torch.Tensor, fused: torch.Tensor, g1: np.ndarray, g2: np.ndarray) -> torch.Tensor:
    """:func:`qcb` on CPU: every distinct image through normalisation, the CSF filter (real FFTs) and both Gaussian
    filters as one task on the metric threads, then one compiled pass over the contrast maps per image."""
    from fusion.metrics._kernels import normalize1 as _normalize1
    from fusion.metrics._kernels import qcb_mean

    half = _csf_half("chen_blum", *a.shape[1:])
    images, where = _distinct_images(a, b, fused)

    def contrast_maps(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        y = fft_filter_half_np(_normalize1(x), half)[0]
        return filter2_same_np(g1, y)[None], filter2_same_np(g2, y)[None]

    maps = parallel_map(contrast_maps, images, pixels=images[0].size)
    n = a.shape[0]
    per = parallel_map(lambda i: qcb_mean(*maps[where[i]], *maps[where[n + i]], *maps[where[2 * n + i]]), range(n),
                       pixels=images[0].size)
    return torch.from_numpy(np.concatenate(per))


_FLT1 = np.array([[-1.0, 0.0, 1.0], [-2.0, 0.0, 2.0], [-1.0, 0.0, 1.0]])
_FLT2 = np.array([[-1.0, -2.0, -1.0], [0.0, 0.0, 0.0], [1.0, 2.0, 1.0]])


def qcv(a: torch.Tensor, b: torch.Tensor, fused: torch.Tensor, *, window: int = 16, alpha: float = 5.0) -> torch.Tensor:
    r"""Qcv, Chen-Varshney regional quality (Z. Liu's ``metricChen.m`` as used by VIFB/MEFB). Lower is better.

    Images normalised to 0..255; region saliency :math:`\lambda = \sum_{block} g^\alpha` of the Sobel magnitude over
    ``window`` x ``window`` blocks; the differences :math:`A - F`, :math:`B - F` are filtered by the Mannos-Sakrison
    CSF (frequencies scaled by size/8) and :math:`D = \overline{(\cdot)^2}` per block (partial blocks zero-padded);
    :math:`Q_{cv} = \sum (\lambda_A D_A + \lambda_B D_B) / \sum (\lambda_A + \lambda_B)`.
    """
    h, w = a.shape[1:]
    if use_compiled(fused):
        return _qcv_cpu(a, b, fused, window, alpha)
    a, b, fused = normalize1(a), normalize1(b), normalize1(fused)

    def saliency(x: torch.Tensor) -> torch.Tensor:
        gx = filter2(_FLT1, x, "same")
        gy = filter2(_FLT2, x, "same")
        return block_reduce(torch.sqrt(gx * gx + gy * gy) ** alpha, window, "sum")

    lam_a, lam_b = saliency(a), saliency(b)
    theta_m = _csf("mannos_sakrison", h, w).to(fused.device)
    da = block_reduce(fft_filter(a - fused, theta_m) ** 2, window, "mean")
    db = block_reduce(fft_filter(b - fused, theta_m) ** 2, window, "mean")
    return (lam_a * da + lam_b * db).sum(dim=(1, 2)) / (lam_a + lam_b).sum(dim=(1, 2))


def _qcv_cpu(a: torch.Tensor, b: torch.Tensor, fused: torch.Tensor, window: int, alpha: float) -> torch.Tensor:
    """:func:`qcv` on CPU: the normalisation and saliency of each distinct source image once, and every image's
    part (saliency, or the CSF-filtered difference's block means) as one task on the metric threads."""
    from fusion.metrics._kernels import block_sums, sobel_magnitude
    from fusion.metrics._kernels import normalize1 as _normalize1

    half = _csf_half("mannos_sakrison", *a.shape[1:])
    n = a.shape[0]
    sources, where = _distinct_images(a, b)
    fn = _normalize1(fused.detach().numpy())

    def saliency(x: np.ndarray) -> np.ndarray:
        g = sobel_magnitude(np.pad(x, ((0, 0), (1, 1), (1, 1))))
        return block_sums(np.power(g, alpha, out=g), window)

    def source_task(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        xn = _normalize1(x)
        return xn, saliency(xn)

    src = parallel_map(source_task, sources, pixels=fn[0].size)

    def distortion(k: int) -> np.ndarray:
        i = k % n
        d = fft_filter_half_np(src[where[k]][0] - fn[i : i + 1], half)
        return block_sums(np.square(d, out=d), window) / (window * window)

    dists = parallel_map(distortion, range(2 * n), pixels=fn[0].size)
    lam = [src[where[k]][1] for k in range(2 * n)]
    lam_a, lam_b = np.concatenate(lam[:n]), np.concatenate(lam[n:])
    da, db = np.concatenate(dists[:n]), np.concatenate(dists[n:])
    return torch.from_numpy((lam_a * da + lam_b * db).sum(axis=(1, 2)) / (lam_a + lam_b).sum(axis=(1, 2)))


@functools.lru_cache(maxsize=2)  # 24 float64 maps per size: ~60 MB at 640x480
def _pc_bank(rows: int, cols: int, nscale: int, norient: int, min_wavelength: float, mult: float, sigma_onf: float,
             dtheta_on_sigma: float) -> tuple[list[list[torch.Tensor]], list[tuple[torch.Tensor, ...]],
                                              list[np.ndarray]]:
    """The log-Gabor filter bank of :func:`phase_congruency` for one image size (it does not depend on the image):
    ``filters[o][s]``, per orientation ``(em_n, est_sum_an2, est_sum_aiaj)`` of Kovesi's noise model, and per
    orientation the ``(S, H, W)`` array the filters are views of."""
    dt = torch.float64
    theta_sigma = math.pi / norient / dtheta_on_sigma

    def axis_range(n: int) -> torch.Tensor:
        if n % 2:
            return torch.arange(-(n - 1) / 2, (n - 1) / 2 + 1, dtype=dt) / (n - 1)
        return torch.arange(-n / 2, n / 2, dtype=dt) / n

    y, x = torch.meshgrid(axis_range(rows), axis_range(cols), indexing="ij")
    radius = torch.sqrt(x * x + y * y)
    radius[rows // 2, cols // 2] = 1.0
    theta = torch.atan2(-y, x)
    radius = torch.fft.ifftshift(radius)
    theta = torch.fft.ifftshift(theta)
    sintheta, costheta = torch.sin(theta), torch.cos(theta)
    # lowpassfilter([rows cols], .45, 15): radius grid centred at fix(n/2)+1 with /n for both parities.
    lx = (torch.arange(1, cols + 1, dtype=dt) - (cols // 2 + 1)) / cols
    ly = (torch.arange(1, rows + 1, dtype=dt) - (rows // 2 + 1)) / rows
    lyy, lxx = torch.meshgrid(ly, lx, indexing="ij")
    lp = torch.fft.fftshift(1.0 / (1.0 + (torch.sqrt(lxx * lxx + lyy * lyy) / 0.45) ** 30))
    log_gabor = []
    for s in range(nscale):
        fo = 1.0 / (min_wavelength * mult**s)
        lg = torch.exp(-(torch.log(radius / fo) ** 2) / (2 * math.log(sigma_onf) ** 2)) * lp
        lg[0, 0] = 0
        log_gabor.append(lg)
    filters, noise, stacks = [], [], []
    for o in range(norient):
        angl = o * math.pi / norient
        ds = sintheta * math.cos(angl) - costheta * math.sin(angl)
        dc = costheta * math.cos(angl) + sintheta * math.sin(angl)
        spread = torch.exp(-(torch.abs(torch.atan2(ds, dc)) ** 2) / (2 * theta_sigma**2))
        stacked = torch.stack([log_gabor[s] * spread for s in range(nscale)])
        stacks.append(stacked.numpy())
        bank = list(stacked.unbind(0))
        ifft_filters = [torch.fft.ifft2(f).real * math.sqrt(rows * cols) for f in bank]
        est_sum_an2 = sum((f * f).sum() for f in ifft_filters)
        est_sum_aiaj = sum(
            (ifft_filters[i] * ifft_filters[j]).sum() for i in range(nscale - 1) for j in range(i + 1, nscale)
        )
        filters.append(bank)
        noise.append(((bank[0] * bank[0]).sum(), est_sum_an2, est_sum_aiaj))
    return filters, noise, stacks


def _median_rows(x: torch.Tensor) -> torch.Tensor:
    """Median of each row of ``(B, N)`` (the mean of the two middle values for even ``N``, as MATLAB)."""
    n = x.shape[1]
    mid = [(n - 1) // 2] if n % 2 else [n // 2 - 1, n // 2]
    if x.device.type == "cpu":
        part = np.partition(x.detach().numpy(), mid, axis=1)  # the same order statistics as a sort, in O(N)
        vals = torch.from_numpy(part[:, mid])
    else:
        vals = torch.sort(x, dim=1).values[:, mid]
    return vals[:, 0] if n % 2 else (vals[:, 0] + vals[:, 1]) / 2


def phase_congruency(
    im: torch.Tensor,
    *,
    nscale: int = 4,
    norient: int = 6,
    min_wavelength: float = 3.0,
    mult: float = 2.1,
    sigma_onf: float = 0.55,
    dtheta_on_sigma: float = 1.2,
    k: float = 2.0,
    cut_off: float = 0.5,
    g: float = 10.0,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Kovesi's phase congruency as revised by Z. Liu (``myphasecong3.m``): ``(pc, M, m)`` for a batch (B, H, W).

    ``pc`` is the total weighted phase congruency, ``M``/``m`` the maximum/minimum moments of the phase-congruency
    covariance (edge and corner strength). Log-Gabor filters (``nscale`` scales, ``norient`` orientations) are
    applied in the Fourier domain with Kovesi's noise compensation (median-based, ``k`` standard deviations).
    """
    eps = 1e-4
    b, rows, cols = im.shape
    dev, dt = im.device, torch.float64
    imagefft = torch.fft.fft2(im)
    filters, noise, stacks = _pc_bank(rows, cols, nscale, norient, min_wavelength, mult, sigma_onf, dtheta_on_sigma)
    if use_compiled(im):
        return _phase_congruency_cpu(imagefft, stacks, noise, k, cut_off, g, eps)
    zero = torch.zeros((b, rows, cols), dtype=dt, device=dev)
    total_energy, total_sum_an = zero.clone(), zero.clone()
    covx2, covy2, covxy = zero.clone(), zero.clone(), zero.clone()
    for o in range(norient):
        angl = o * math.pi / norient
        sum_e, sum_o, sum_an, energy = zero.clone(), zero.clone(), zero.clone(), zero.clone()
        eo_list = []
        max_an = None
        for s in range(nscale):
            eo = torch.fft.ifft2(imagefft * filters[o][s].to(dev))
            eo_list.append(eo)
            an = torch.abs(eo)
            sum_an = sum_an + an
            sum_e = sum_e + eo.real
            sum_o = sum_o + eo.imag
            max_an = an if s == 0 else torch.maximum(max_an, an)
        x_energy = torch.sqrt(sum_e * sum_e + sum_o * sum_o) + eps
        mean_e, mean_o = sum_e / x_energy, sum_o / x_energy
        for eo in eo_list:
            e, od = eo.real, eo.imag
            energy = energy + e * mean_e + od * mean_o - torch.abs(e * mean_o - od * mean_e)
        t = _noise_threshold(torch.abs(eo_list[0]) ** 2, noise[o], k)
        energy = torch.clamp(energy - t[:, None, None], min=0)
        width = sum_an / (max_an + eps) / nscale
        weight = 1.0 / (1 + torch.exp((cut_off - width) * g))
        total_sum_an = total_sum_an + sum_an
        total_energy = total_energy + weight * energy
        pc_o = weight * energy / sum_an
        covx = pc_o * math.cos(angl)
        covy = pc_o * math.sin(angl)
        covx2 = covx2 + covx * covx
        covy2 = covy2 + covy * covy
        covxy = covxy + covx * covy
    return _pc_moments(total_energy, total_sum_an, covx2, covy2, covxy, norient, eps)


def _pc_moments(total_energy: torch.Tensor, total_sum_an: torch.Tensor, covx2: torch.Tensor, covy2: torch.Tensor,
                covxy: torch.Tensor, norient: int, eps: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(pc, M, m)`` from the totals over orientations: phase congruency and the covariance's moments."""
    pc = total_energy / (total_sum_an + eps)
    covx2 = covx2 / (norient / 2)
    covy2 = covy2 / (norient / 2)
    covxy = covxy / norient
    denom = torch.sqrt(covxy * covxy + (covx2 - covy2) ** 2) + eps
    return pc, (covy2 + covx2 + denom) / 2, (covy2 + covx2 - denom) / 2


def _noise_threshold(e2: torch.Tensor, noise: tuple[torch.Tensor, ...], k: float) -> torch.Tensor:
    """Kovesi's noise threshold per image from the squared smallest-scale amplitudes ``e2`` ``(B, H, W)``."""
    median = _median_rows(e2.reshape(e2.shape[0], -1))
    mean_e2n = -median / math.log(0.5)
    em_n, est_sum_an2, est_sum_aiaj = (v.to(e2.device) for v in noise)
    noise_power = mean_e2n / em_n
    est_noise_energy2 = 2 * noise_power * est_sum_an2 + 4 * noise_power * est_sum_aiaj
    tau = torch.sqrt(est_noise_energy2 / 2)
    return (tau * math.sqrt(math.pi / 2) + k * torch.sqrt((2 - math.pi / 2) * tau * tau)) / 1.7


def _phase_congruency_cpu(imagefft: torch.Tensor, stacks: list[np.ndarray], noise: list[tuple[torch.Tensor, ...]],
                          k: float, cut_off: float, g: float, eps: float
                          ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """:func:`phase_congruency`'s per-pixel arithmetic in two compiled passes per orientation (the transforms stay
    torch's, numpy's vectorised ``exp`` between the passes)."""
    from fusion.metrics._kernels import pc_accumulate, pc_filter_products, pc_orientation

    spec = imagefft.numpy()
    b, rows, cols = spec.shape
    norient, nscale = len(stacks), stacks[0].shape[0]
    totals = [np.zeros((b, rows, cols)) for _ in range(5)]  # energy, sum_an, covx2, covy2, covxy
    products = np.empty((nscale, b, rows, cols), dtype=np.complex128)
    for o in range(norient):
        angl = o * math.pi / norient
        pc_filter_products(spec, stacks[o], products)
        eo = torch.fft.ifft2(torch.from_numpy(products)).numpy()
        sum_an, energy, width, e2 = pc_orientation(eo, eps)
        t = _noise_threshold(torch.from_numpy(e2), noise[o], k).numpy()
        ewidth = np.exp((cut_off - width) * g, out=width)
        pc_accumulate(energy, sum_an, ewidth, t, math.cos(angl), math.sin(angl), *totals)
    return _pc_moments(*(torch.from_numpy(x) for x in totals), norient, eps)


def _phase_congruency_each(*batches: torch.Tensor) -> list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
    """:func:`phase_congruency` of each ``(B, H, W)`` batch; on CPU every distinct image is one task on the metric
    threads (a grey source repeated over colour planes is computed once)."""
    if not use_compiled(batches[-1]):
        return [phase_congruency(x) for x in batches]
    images, where = _distinct_images(*batches)
    outs = parallel_map(lambda x: phase_congruency(torch.from_numpy(x)), images, pixels=images[0].size)
    n = batches[0].shape[0]
    return [tuple(torch.cat([outs[where[k * n + i]][j] for i in range(n)]) for j in range(3))
            for k in range(len(batches))]


def qp(a: torch.Tensor, b: torch.Tensor, fused: torch.Tensor, *, threshold: float = 0.1) -> torch.Tensor:
    r"""QP, Zhao, Laganière & Liu's phase-congruency metric (Z. Liu's ``metricZhao.m``, MEFB ``metricsQp``).

    From phase congruency :math:`P` and its maximum/minimum moments :math:`M`, :math:`m` of A, B, F and the
    pixel-wise "max" source (the one with larger :math:`P`), each feature gets
    :math:`\max_{X \in \{A, B, \max\}} (\sigma_{XF} + C)/(\sqrt{|\sigma_X^2 \sigma_F^2|} + C)` over pixels where
    :math:`P_X > 0.1` (Gaussian 11x11 window, ``filter2 'same'``, :math:`C = 10^{-4}`), averaged over the
    :math:`P_{\max} > 0.1` area; :math:`Q_P = P_p P_M P_m`.
    """
    (pc1, big1, small1), (pc2, big2, small2), (pcf, bigf, smallf) = _phase_congruency_each(a, b, fused)
    mask = pc1 > pc2
    masks = (pc1 > threshold, pc2 > threshold, torch.where(mask, pc1, pc2) > threshold)
    win = fspecial_gaussian(11, 1.5)
    cst = 1e-4

    def corr(x1: torch.Tensor, x2: torch.Tensor, xf: torch.Tensor) -> torch.Tensor:
        xmax = torch.where(mask, x1, x2)
        muf = filter2(win, xf, "same")
        sf = filter2(win, xf * xf, "same") - muf * muf
        best = None
        for x, m in zip((x1, x2, xmax), masks, strict=True):
            xm = x * m.to(x.dtype)
            mu = filter2(win, xm, "same")
            sx = filter2(win, xm * xm, "same") - mu * mu
            sxf = filter2(win, xm * xf, "same") - mu * muf
            r = torch.where(m, (sxf + cst) / (torch.sqrt(torch.abs(sx * sf)) + cst), torch.zeros_like(sx))
            best = r if best is None else torch.maximum(best, r)
        return best.sum(dim=(1, 2)) / masks[2].sum(dim=(1, 2))

    return corr(pc1, pc2, pcf) * corr(big1, big2, bigf) * corr(small1, small2, smallf)
