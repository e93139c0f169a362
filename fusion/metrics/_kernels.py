"""Compiled per-pixel kernels (numba) for the metrics whose time goes into long chains of element-wise operations.

A chain of numpy or torch operations over a full-size map allocates a temporary per operation and runs at memory
speed; one compiled pass per pixel does the same arithmetic, in the same order, without them. Kernels are compiled on
first use and cached on disk (``cache=True``), release the GIL (``nogil=True``) so the metric threads run them side
by side, never use fast-math, and divide by zero as numpy does (``error_model="numpy"``). They compute the reference
formulas in the reference's order; they agree with the torch formulation to about 1e-12 relative (tested), the
differences being the last digit of library functions, sequential against pairwise sums, and torch dividing a
scalar by a tensor through a reciprocal (the kernels divide, as MATLAB and numpy do).

Sums of logarithms are accumulated as products (:func:`_log_add`): one ``log`` per run of factors instead of one per
pixel, the part of these kernels that cannot be vectorised. Each factor is >= 1 and the running product is flushed
into the sum before it can overflow; each multiplication rounds once, as the reference's own ``1 + x`` does before its
``log10``, so VIF differs from the per-pixel sum by about 1e-15 relative on the shared pairs (tested at 1e-12).

Transcendental functions that numpy vectorises (``arctan``, ``exp``, ``power``) stay in numpy between compiled
passes: numba calls the scalar libm functions, several times slower per value.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

__all__ = [
    "vif_sums", "viff_sums", "uniform_filter_f32", "ssim_f32_mean", "ssim_mean", "sobel_strength", "qabf_exponents",
    "qabf_maps", "sobel_reflect_strength", "nabf_exponents", "nabf_sums", "histogram256", "qcb_mean", "normalize1",
    "sobel_magnitude", "block_sums", "shifted_sum", "fmi_mean", "planes_equal",
    "sobel_magnitude_mean", "gradient_magnitude_sum", "pc_filter_products", "pc_orientation", "pc_accumulate",
]

_FLUSH = 1e200  # running products are folded into the sum above this
_BIG = 1e100  # a factor this large goes into the sum directly (cannot overflow the product)
_LN10 = math.log(10.0)


@njit(cache=True, nogil=True, inline="always")
def _log_add(p: float, acc: float, factor: float) -> tuple[float, float]:
    """Add ``log(factor)`` (``factor >= 1``) to the pair ``(running product p, sum acc)``."""
    if factor > _BIG:
        return p, acc + math.log(factor)
    p *= factor
    if p > _FLUSH:
        return 1.0, acc + math.log(p)
    return p, acc


@njit(cache=True, nogil=True, inline="always")
def _log10_total(p: float, acc: float) -> float:
    """The base-10 sum of logarithms held by a :func:`_log_add` pair."""
    return (acc + math.log(p)) / _LN10


@njit(cache=True, nogil=True, inline="always")
def _vif_pixel(m1: float, m2: float, rr: float, dd: float, rd: float, sigma_nsq: float) -> tuple[float, float, float]:
    """One pixel of Sheikh's VIF from local means and filtered products: ``(g, 1 + g^2 s1 / (sv + sn), 1 + s1/sn)``,
    the masked assignments in the reference code's order (``vifp_mscale.m``)."""
    eps = 1e-10
    s1 = rr - m1 * m1
    s2 = dd - m2 * m2
    s12 = rd - m1 * m2
    if s1 < 0.0:
        s1 = 0.0
    if s2 < 0.0:
        s2 = 0.0
    g = s12 / (s1 + eps)
    sv = s2 - g * s12
    if s1 < eps:
        g = 0.0
        sv = s2
        s1 = 0.0
    if s2 < eps:
        g = 0.0
        sv = 0.0
    if g < 0.0:
        sv = s2
        g = 0.0
    if sv <= eps:
        sv = eps
    return g, 1.0 + g * g * s1 / (sv + sigma_nsq), 1.0 + s1 / sigma_nsq


@njit(cache=True, nogil=True, error_model="numpy")
def vif_sums(mu1: np.ndarray, mu2: np.ndarray, rr: np.ndarray, dd: np.ndarray, rd: np.ndarray,
             sigma_nsq: float) -> tuple[np.ndarray, np.ndarray]:
    """Per image of a ``(B, H, W)`` batch: ``(sum log10(1 + g^2 s1/(sv + sn)), sum log10(1 + s1/sn))``.

    ``mu1``/``mu2``: local means of the reference/distorted image; ``rr``, ``dd``, ``rd``: filtered ``ref*ref``,
    ``dist*dist``, ``ref*dist``.
    """
    b, h, w = mu1.shape
    num = np.zeros(b)
    den = np.zeros(b)
    for i in range(b):
        pn, an, pd, ad = 1.0, 0.0, 1.0, 0.0  # running products and sums of the two logarithms
        for y in range(h):
            for x in range(w):
                _, fn, fd = _vif_pixel(mu1[i, y, x], mu2[i, y, x], rr[i, y, x], dd[i, y, x], rd[i, y, x], sigma_nsq)
                pn, an = _log_add(pn, an, fn)
                pd, ad = _log_add(pd, ad, fd)
        num[i] = _log10_total(pn, an)
        den[i] = _log10_total(pd, ad)
    return num, den


@njit(cache=True, nogil=True, error_model="numpy")
def viff_sums(mu_a: np.ndarray, rr_a: np.ndarray, rd_a: np.ndarray, mu_b: np.ndarray, rr_b: np.ndarray,
              rd_b: np.ndarray, mu2: np.ndarray, dd: np.ndarray, sigma_nsq: float,
              c: float) -> tuple[np.ndarray, np.ndarray]:
    """VIFF's merged sums per image: at each pixel the source with the smaller gain ``g`` (``a`` where
    ``g_a < g_b``, else ``b``) gives ``log10(...) + c`` to both sums."""
    bsz, h, w = mu2.shape
    num = np.zeros(bsz)
    den = np.zeros(bsz)
    for i in range(bsz):
        pn, an, pd, ad = 1.0, 0.0, 1.0, 0.0
        for y in range(h):
            for x in range(w):
                m2, d2 = mu2[i, y, x], dd[i, y, x]
                ga, fna, fda = _vif_pixel(mu_a[i, y, x], m2, rr_a[i, y, x], d2, rd_a[i, y, x], sigma_nsq)
                gb, fnb, fdb = _vif_pixel(mu_b[i, y, x], m2, rr_b[i, y, x], d2, rd_b[i, y, x], sigma_nsq)
                if ga < gb:
                    pn, an = _log_add(pn, an, fna)
                    pd, ad = _log_add(pd, ad, fda)
                else:
                    pn, an = _log_add(pn, an, fnb)
                    pd, ad = _log_add(pd, ad, fdb)
        n = h * w * c
        num[i] = _log10_total(pn, an) + n
        den[i] = _log10_total(pd, ad) + n
    return num, den


@njit(cache=True, nogil=True, inline="always")
def _reflect(j: int, n: int) -> int:
    """Index ``j`` folded into ``0..n-1`` by scipy.ndimage's 'reflect' rule (d c b a | a b c d | d c b a)."""
    while j < 0 or j >= n:
        if j < 0:
            j = -j - 1
        if j >= n:
            j = 2 * n - j - 1
    return j


@njit(cache=True, nogil=True, error_model="numpy")
def uniform_filter_f32(x: np.ndarray, size: int) -> np.ndarray:
    """``scipy.ndimage.uniform_filter(x, size)`` of a float32 ``(H, W)`` image, bit for bit (tested).

    scipy filters along axis 0, stores float32, then along axis 1; each line is a running sum in float64 (the first
    ``size`` values summed in order, then ``+= (entering - leaving)``) divided by ``size`` per output, 'reflect'
    borders. Axis 0 runs as row vectors (the same additions per column, in the same order).
    """
    h, w = x.shape
    s1 = size // 2
    s2 = size - s1 - 1
    n = float(size)
    tmp = np.empty((h, w), np.float32)
    out = np.empty((h, w), np.float32)
    acc = np.zeros(w)
    for k in range(size):
        r = _reflect(k - s1, h)
        for c in range(w):
            acc[c] += x[r, c]
    for c in range(w):
        tmp[0, c] = np.float32(acc[c] / n)
    for r in range(1, h):
        ra = _reflect(r + s2, h)
        rb = _reflect(r - s1 - 1, h)
        for c in range(w):
            acc[c] += np.float64(x[ra, c]) - np.float64(x[rb, c])
            tmp[r, c] = np.float32(acc[c] / n)
    buf = np.empty(w + size - 1)
    for r in range(h):
        for k in range(w + size - 1):
            buf[k] = tmp[r, _reflect(k - s1, w)]
        t = 0.0
        for k in range(size):
            t += buf[k]
        out[r, 0] = np.float32(t / n)
        for k in range(1, w):
            t += buf[k + size - 1] - buf[k - 1]
            out[r, k] = np.float32(t / n)
    return out


@njit(cache=True, nogil=True, error_model="numpy")
def ssim_f32_mean(x: np.ndarray, y: np.ndarray, ux: np.ndarray, uxx: np.ndarray, size: int, c1: float,
                  c2: float) -> float:
    """scikit-image 0.19's ``structural_similarity`` of float32 ``(H, W)`` images with a uniform window: the SSIM map
    in float32, operation for operation as scikit-image evaluates it, cropped by ``(size - 1) // 2`` and averaged in
    float64. ``ux``/``uxx``: :func:`uniform_filter_f32` of ``x`` and ``x * x`` (shared by several ``y``)."""
    h, w = x.shape
    xy = np.empty((h, w), np.float32)
    yy = np.empty((h, w), np.float32)
    for r in range(h):
        for c in range(w):
            xy[r, c] = x[r, c] * y[r, c]
            yy[r, c] = y[r, c] * y[r, c]
    uy = uniform_filter_f32(y, size)
    uyy = uniform_filter_f32(yy, size)
    uxy = uniform_filter_f32(xy, size)
    np_ = size * size
    cov = np.float32(np_ / (np_ - 1.0))
    two = np.float32(2.0)
    k1 = np.float32(c1)
    k2 = np.float32(c2)
    pad = (size - 1) // 2
    total = 0.0
    for r in range(pad, h - pad):
        for c in range(pad, w - pad):
            a, b = ux[r, c], uy[r, c]
            vx = cov * (uxx[r, c] - a * a)
            vy = cov * (uyy[r, c] - b * b)
            vxy = cov * (uxy[r, c] - a * b)
            a1 = two * a * b + k1
            a2 = two * vxy + k2
            b1 = a * a + b * b + k1
            b2 = vx + vy + k2
            total += np.float64((a1 * a2) / (b1 * b2))
    return total / ((h - 2 * pad) * (w - 2 * pad))



@njit(cache=True, nogil=True, inline="always")
def _sobel3(x: np.ndarray, i: int, r: int, c: int) -> tuple[float, float]:
    """``filter2([-1 0 1; -2 0 2; -1 0 1], x, 'same')`` and ``filter2([-1 -2 -1; 0 0 0; 1 2 1], x, 'same')`` at
    ``(r, c)`` of a zero-padded image (one border pixel more on every side), the taps added in the order of
    :func:`fusion.metrics._ops.conv2` (column-major over the rotated kernel); products by -1 and 2 written as the
    exact negation and doubling."""
    up, u1, u2 = x[i, r - 1, c - 1], x[i, r - 1, c], x[i, r - 1, c + 1]
    m0, m2 = x[i, r, c - 1], x[i, r, c + 1]
    d0, d1, d2 = x[i, r + 1, c - 1], x[i, r + 1, c], x[i, r + 1, c + 1]
    gx = d2
    gx = gx + (m2 + m2)
    gx = gx + u2
    gx = gx + -d0
    gx = gx + -(m0 + m0)
    gx = gx + -up
    gy = d2
    gy = gy + -u2
    gy = gy + (d1 + d1)
    gy = gy + -(u1 + u1)
    gy = gy + d0
    gy = gy + -up
    return gx, gy


@njit(cache=True, nogil=True, error_model="numpy")
def sobel_strength(x: np.ndarray, g: np.ndarray, t: np.ndarray) -> None:
    """Sobel strength ``g`` and slope ``t = s_y / s_x`` (``inf`` where ``s_x = 0``, so that ``arctan(t)`` is the
    reference's pi/2) of a zero-padded ``(B, H + 2, W + 2)`` batch, written into ``(B, H, W)`` arrays of its dtype.

    ``s_x = conv2(x, [-1 0 1; -2 0 2; -1 0 1], 'same')`` is the negated :func:`_sobel3` x-response at every partial
    sum (negation is exact), ``s_y = conv2(x, [1 2 1; 0 0 0; -1 -2 -1], 'same')`` its y-response: the MATLAB tap
    order, so equal gradients stay equal.
    """
    bsz, h, w = g.shape
    for i in range(bsz):
        for r in range(1, h + 1):
            for c in range(1, w + 1):
                gx, sy = _sobel3(x, i, r, c)
                sx = -gx
                g[i, r - 1, c - 1] = math.sqrt(sx * sx + sy * sy)
                t[i, r - 1, c - 1] = np.inf if sx == 0 else sy / sx


@njit(cache=True, nogil=True, error_model="numpy")
def qabf_exponents(g: np.ndarray, ang: np.ndarray, gf: np.ndarray, af: np.ndarray, p: np.ndarray,
                   eg: np.ndarray, ea: np.ndarray) -> None:
    """Qabf's logistic exponents for one source against ``F``, written into ``eg`` (strength) and ``ea``
    (orientation); ``p``: tg, kg, dg, ta, ka, da, pi/2, 1 in the images' dtype. ``G = g_F/g`` where ``g > g_F``,
    ``g_F`` itself where they are equal (the reference's quirk), else ``g/g_F``; ``A = 1 - |a - a_F| / (pi/2)``."""
    bsz, h, w = g.shape
    for i in range(bsz):
        for r in range(h):
            for c in range(w):
                x, xf = g[i, r, c], gf[i, r, c]
                if x > xf:
                    rel = xf / x
                elif x == xf:
                    rel = xf
                else:
                    rel = x / xf
                align = p[7] - abs(ang[i, r, c] - af[i, r, c]) / p[6]
                eg[i, r, c] = p[1] * (rel - p[2])
                ea[i, r, c] = p[4] * (align - p[5])


@njit(cache=True, nogil=True, error_model="numpy")
def qabf_maps(ga: np.ndarray, ega: np.ndarray, eaa: np.ndarray, gb: np.ndarray, egb: np.ndarray, eab: np.ndarray,
              p: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per pixel, in the images' dtype: ``Q^AF g_A + Q^BF g_B`` and ``g_A + g_B``, from the exponentials of
    :func:`qabf_exponents` (``Q = tg / (1 + e_g) * ta / (1 + e_a)``); the caller sums them as the reference does."""
    num = np.empty_like(ga)
    den = np.empty_like(ga)
    bsz, h, w = ga.shape
    for i in range(bsz):
        for r in range(h):
            for c in range(w):
                x, y = ga[i, r, c], gb[i, r, c]
                qa = (p[0] / (p[7] + ega[i, r, c])) * (p[3] / (p[7] + eaa[i, r, c]))
                qb = (p[0] / (p[7] + egb[i, r, c])) * (p[3] / (p[7] + eab[i, r, c]))
                num[i, r, c] = qa * x + qb * y
                den[i, r, c] = x + y
    return num, den


@njit(cache=True, nogil=True, error_model="numpy")
def sobel_reflect_strength(x: np.ndarray, g: np.ndarray, t: np.ndarray) -> None:
    """``sobel_fn.m`` on a reflect-101 padded float64 ``(B, H + 2, W + 2)`` batch: ``g = sqrt(g_h^2 + g_v^2)`` and
    ``t = g_v / g_h`` (0 where both are 0, so ``arctan(t)`` is the reference's orientation), into ``(B, H, W)``.

    ``g_v``/``g_h``: correlation with the vertical/horizontal Sobel kernel / 8, each kernel column's 3 products summed
    top to bottom, then the columns left to right, zero taps included (as :func:`fusion.metrics.gradient.
    _sobel_reflect`)."""
    bsz, h, w = g.shape
    for i in range(bsz):
        for r in range(1, h + 1):
            for c in range(1, w + 1):
                a00, a01, a02 = x[i, r - 1, c - 1], x[i, r - 1, c], x[i, r - 1, c + 1]
                a10, a11, a12 = x[i, r, c - 1], x[i, r, c], x[i, r, c + 1]
                a20, a21, a22 = x[i, r + 1, c - 1], x[i, r + 1, c], x[i, r + 1, c + 1]
                gv = ((a00 * -0.125 + a10 * -0.25) + a20 * -0.125) + ((a01 * 0.0 + a11 * 0.0) + a21 * 0.0)
                gv = gv + ((a02 * 0.125 + a12 * 0.25) + a22 * 0.125)
                gh = ((a00 * -0.125 + a10 * 0.0) + a20 * 0.125) + ((a01 * -0.25 + a11 * 0.0) + a21 * 0.25)
                gh = gh + ((a02 * -0.125 + a12 * 0.0) + a22 * 0.125)
                g[i, r - 1, c - 1] = math.sqrt(gh * gh + gv * gv)
                t[i, r - 1, c - 1] = 0.0 if (gv == 0 and gh == 0) else gv / gh


@njit(cache=True, nogil=True, error_model="numpy")
def nabf_exponents(g: np.ndarray, ang: np.ndarray, gf: np.ndarray, af: np.ndarray, p: np.ndarray, eg: np.ndarray,
                   ea: np.ndarray) -> None:
    """Nabf's logistic exponents for one source against ``F`` (``p``: td, wt_min, lg, nrg, kg, sigmag, nra, ka,
    sigmaa): ``-kg (G - sigmag)`` with ``G`` the smaller over the larger strength (0 where either is 0) and
    ``-ka (A - sigmaa)`` with ``A = ||a - a_F| - pi/2| 2 / pi``."""
    kg, sigmag, ka, sigmaa = p[4], p[5], p[7], p[8]
    half_pi = math.pi / 2
    bsz, h, w = g.shape
    for i in range(bsz):
        for r in range(h):
            for c in range(w):
                x, xf = g[i, r, c], gf[i, r, c]
                if x == 0 or xf == 0:
                    rel = 0.0
                elif x > xf:
                    rel = xf / x
                else:
                    rel = x / xf
                aa = abs(abs(ang[i, r, c] - af[i, r, c]) - half_pi) * 2 / math.pi
                eg[i, r, c] = -kg * (rel - sigmag)
                ea[i, r, c] = -ka * (aa - sigmaa)


@njit(cache=True, nogil=True, error_model="numpy")
def nabf_sums(ga: np.ndarray, wa: np.ndarray, ega: np.ndarray, eaa: np.ndarray, gb: np.ndarray, wb: np.ndarray,
              egb: np.ndarray, eab: np.ndarray, gf: np.ndarray, p: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per image: ``sum over g_F > g_A, g_B of (1 - Q^AF) w_A + (1 - Q^BF) w_B`` and ``sum(w_A + w_B)``, with
    ``Q = sqrt(nrg / (1 + e_g) * (nra / (1 + e_a)))`` from the exponentials of :func:`nabf_exponents`."""
    nrg, nra = p[3], p[6]
    bsz, h, w = ga.shape
    num = np.zeros(bsz)
    den = np.zeros(bsz)
    for i in range(bsz):
        sn, sd = 0.0, 0.0
        for r in range(h):
            for c in range(w):
                x, y, z = wa[i, r, c], wb[i, r, c], gf[i, r, c]
                sd += x + y
                qa = math.sqrt(nrg / (1 + ega[i, r, c]) * (nra / (1 + eaa[i, r, c])))
                qb = math.sqrt(nrg / (1 + egb[i, r, c]) * (nra / (1 + eab[i, r, c])))
                # a 0/1 mask times the term, as the reference (0 * NaN stays NaN)
                sn += (1.0 if (z > ga[i, r, c] and z > gb[i, r, c]) else 0.0) * ((1 - qa) * x + (1 - qb) * y)
        num[i] = sn
        den[i] = sd
    return num, den


@njit(cache=True, nogil=True, error_model="numpy")
def ssim_mean(ux: np.ndarray, uy: np.ndarray, uxx: np.ndarray, uyy: np.ndarray, uxy: np.ndarray, c1: float,
              c2: float) -> np.ndarray:
    """Mean SSIM map per image of ``(B, H, W)`` float64 local statistics (``u*``: filtered ``x``, ``y``, ``x*x``,
    ``y*y``, ``x*y``): ``((2 ux uy + c1)(2 sxy + c2)) / ((ux^2 + uy^2 + c1)(sx + sy + c2))`` with
    ``sx = uxx - ux^2`` etc., in the order the torch version evaluates it."""
    bsz, h, w = ux.shape
    out = np.zeros(bsz)
    for i in range(bsz):
        total = 0.0
        for r in range(h):
            for c in range(w):
                a, b = ux[i, r, c], uy[i, r, c]
                sx = uxx[i, r, c] - a * a
                sy = uyy[i, r, c] - b * b
                sxy = uxy[i, r, c] - a * b
                total += ((2 * a * b + c1) * (2 * sxy + c2)) / ((a * a + b * b + c1) * (sx + sy + c2))
        out[i] = total / (h * w)
    return out


@njit(cache=True, nogil=True, error_model="numpy")
def histogram256(x: np.ndarray, y: np.ndarray, joint: bool) -> np.ndarray:
    """Counts of the grey levels 0..255 (values truncated towards zero, as ``Tensor.long()``) per image of a
    ``(B, H, W)`` batch: ``(B, 256)`` of ``x``, or with ``joint`` the ``(B, 256, 256)`` joint counts (rows ``x``,
    columns ``y``). A value outside 0..255 raises ``ValueError``."""
    bsz, h, w = x.shape
    out = np.zeros((bsz, 256, 256 if joint else 1))
    for i in range(bsz):
        for r in range(h):
            for c in range(w):
                u = x[i, r, c]
                if not (u > -1.0 and u < 256.0):
                    raise ValueError("grey level outside 0..255")
                v = 0
                if joint:
                    t = y[i, r, c]
                    if not (t > -1.0 and t < 256.0):
                        raise ValueError("grey level outside 0..255")
                    v = int(t)
                out[i, int(u), v] += 1.0
    return out


@njit(cache=True, nogil=True, inline="always")
def _masked_contrast(y1: float, y2: float) -> float:
    c = abs(y1 / y2 - 1)
    return c * c * c / (c * c + 0.0001)


@njit(cache=True, nogil=True, error_model="numpy")
def qcb_mean(a1: np.ndarray, a2: np.ndarray, b1: np.ndarray, b2: np.ndarray, f1: np.ndarray,
             f2: np.ndarray) -> np.ndarray:
    """Chen-Blum's mean quality per image from the CSF-filtered images convolved with the two Gaussians (``x1``:
    sigma 2, ``x2``: sigma 4) of ``A``, ``B`` and ``F``: masked contrast ``C' = C^3 / (C^2 + 1e-4)`` with
    ``C = |x1 / x2 - 1|``; preservation blended with a 0/1 mask so that 0/0 and x/0 give NaN as the reference code."""
    bsz, h, w = a1.shape
    out = np.zeros(bsz)
    for i in range(bsz):
        total = 0.0
        for r in range(h):
            for c in range(w):
                ca = _masked_contrast(a1[i, r, c], a2[i, r, c])
                cb = _masked_contrast(b1[i, r, c], b2[i, r, c])
                cf = _masked_contrast(f1[i, r, c], f2[i, r, c])
                ma = 1.0 if ca < cf else 0.0
                mb = 1.0 if cb < cf else 0.0
                pa = (ca / cf) * ma + (cf / ca) * (1 - ma)
                pb = (cb / cf) * mb + (cf / cb) * (1 - mb)
                den = ca * ca + cb * cb
                total += (ca * ca / den) * pa + (cb * cb / den) * pb
        out[i] = total / (h * w)
    return out


def normalize1(x: np.ndarray, constant_to_zero: bool = False) -> np.ndarray:
    """Z. Liu's ``normalize1`` per image of a ``(B, H, W)`` float64 batch: ``round((x - min) / (max - min) * 255)``,
    rounding half away from zero; an image whose minimum and maximum are both 0 is returned as it is (a constant
    non-zero image gives NaN, as the reference's 0/0; so does an image holding a NaN). ``constant_to_zero``: every
    constant image becomes zeros (VIFB's ``mutinf``)."""
    out = np.empty(x.shape)
    # numpy's min/max propagate NaN
    _normalize_pass(x, x.min(axis=(1, 2)), x.max(axis=(1, 2)), constant_to_zero, out)
    return out


@njit(cache=True, nogil=True, error_model="numpy")
def _normalize_pass(x: np.ndarray, lo: np.ndarray, hi: np.ndarray, constant_to_zero: bool, out: np.ndarray) -> None:
    bsz, h, w = x.shape
    for i in range(bsz):
        a, b = lo[i], hi[i]
        if a != a or b != b:
            out[i] = np.nan
        elif constant_to_zero and b == a:
            out[i] = 0.0
        elif b == 0 and a == 0:
            out[i] = x[i]
        elif b == a:
            out[i] = np.nan
        else:
            d = b - a
            for r in range(h):
                for c in range(w):
                    # t >= 0, where MATLAB's round (sign(t) floor(|t| + 1/2)) is floor(t + 1/2)
                    out[i, r, c] = math.floor((x[i, r, c] - a) / d * 255 + 0.5)


@njit(cache=True, nogil=True)
def planes_equal(x: np.ndarray, i: int, j: int) -> bool:
    """Whether images ``i`` and ``j`` of a ``(B, H, W)`` batch are equal (stops at the first difference)."""
    _, h, w = x.shape
    for r in range(h):
        for c in range(w):
            if x[i, r, c] != x[j, r, c]:
                return False
    return True


@njit(cache=True, nogil=True, error_model="numpy")
def sobel_magnitude(x: np.ndarray) -> np.ndarray:
    """``sqrt(g_x^2 + g_y^2)`` (:func:`_sobel3`) of a zero-padded ``(B, H + 2, W + 2)`` float64 batch ->
    ``(B, H, W)``."""
    bsz, h, w = x.shape[0], x.shape[1] - 2, x.shape[2] - 2
    out = np.empty((bsz, h, w))
    for i in range(bsz):
        for r in range(1, h + 1):
            for c in range(1, w + 1):
                gx, gy = _sobel3(x, i, r, c)
                out[i, r - 1, c - 1] = math.sqrt(gx * gx + gy * gy)
    return out


@njit(cache=True, nogil=True, error_model="numpy")
def sobel_magnitude_mean(x: np.ndarray) -> np.ndarray:
    """Mean of ``sqrt(g_x^2 + g_y^2)`` (:func:`_sobel3`) over each image of a padded ``(B, H + 2, W + 2)`` float64
    batch -> ``(B,)``."""
    bsz, h, w = x.shape[0], x.shape[1] - 2, x.shape[2] - 2
    out = np.empty(bsz)
    for i in range(bsz):
        total = 0.0
        for r in range(1, h + 1):
            row = 0.0  # row sums first: closer to the pairwise sums of numpy and torch than one running sum
            for c in range(1, w + 1):
                gx, gy = _sobel3(x, i, r, c)
                row += math.sqrt(gx * gx + gy * gy)
            total += row
        out[i] = total / (h * w)
    return out


@njit(cache=True, nogil=True, error_model="numpy")
def gradient_magnitude_sum(x: np.ndarray) -> np.ndarray:
    """``sum sqrt((g_x^2 + g_y^2) / 2)`` per image of a ``(B, H, W)`` float64 batch, ``g`` from MATLAB's
    ``gradient`` (central differences halved inside, one-sided at the borders, zero along a side of length 1)."""
    bsz, h, w = x.shape
    out = np.empty(bsz)
    for i in range(bsz):
        total = 0.0
        for r in range(h):
            row = 0.0
            for c in range(w):
                if w == 1:
                    gx = 0.0
                elif c == 0:
                    gx = x[i, r, 1] - x[i, r, 0]
                elif c == w - 1:
                    gx = x[i, r, w - 1] - x[i, r, w - 2]
                else:
                    gx = (x[i, r, c + 1] - x[i, r, c - 1]) / 2
                if h == 1:
                    gy = 0.0
                elif r == 0:
                    gy = x[i, 1, c] - x[i, 0, c]
                elif r == h - 1:
                    gy = x[i, h - 1, c] - x[i, h - 2, c]
                else:
                    gy = (x[i, r + 1, c] - x[i, r - 1, c]) / 2
                row += math.sqrt((gx * gx + gy * gy) / 2)
            total += row
        out[i] = total
    return out


@njit(cache=True, nogil=True, error_model="numpy")
def pc_filter_products(spec: np.ndarray, filters: np.ndarray, out: np.ndarray) -> None:
    """``out[s, i] = spec[i] * filters[s]``: an image spectrum ``(B, H, W)`` complex times each real log-Gabor filter
    ``(S, H, W)`` of one orientation (as torch multiplies by a real tensor: each part by the filter)."""
    ns = filters.shape[0]
    bsz, h, w = spec.shape
    for s in range(ns):
        for i in range(bsz):
            for r in range(h):
                for c in range(w):
                    z = spec[i, r, c]
                    f = filters[s, r, c]
                    out[s, i, r, c] = complex(z.real * f, z.imag * f)


@njit(cache=True, nogil=True, error_model="numpy")
def pc_orientation(eo: np.ndarray, eps: float) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """One orientation of :func:`fusion.metrics.perceptual.phase_congruency` from its filter responses ``eo``
    ``(S, B, H, W)`` complex: ``(sum_an, energy, width, e2)`` with ``sum_an`` the summed amplitudes, ``energy`` the
    phase-deviation energy before the noise threshold, ``width = sum_an / (max_an + eps) / S`` and ``e2`` the squared
    amplitude of the smallest scale (for the noise median); sums in scale order, as the torch code."""
    ns, bsz, h, w = eo.shape
    sum_an = np.empty((bsz, h, w))
    energy = np.empty((bsz, h, w))
    width = np.empty((bsz, h, w))
    e2 = np.empty((bsz, h, w))
    for i in range(bsz):
        for r in range(h):
            for c in range(w):
                sa, se, so, mx = 0.0, 0.0, 0.0, 0.0
                for s in range(ns):
                    z = eo[s, i, r, c]
                    # |z| by the plain formula: within an ulp of libm's hypot (torch's abs), several times faster;
                    # filter responses of 0..255 images neither overflow nor underflow here
                    an = math.sqrt(z.real * z.real + z.imag * z.imag)
                    sa = sa + an
                    se = se + z.real
                    so = so + z.imag
                    if s == 0:
                        mx = an
                        e2[i, r, c] = an * an
                    elif mx == mx and (an > mx or an != an):  # torch.maximum: a NaN wins and stays
                        mx = an
                xe = math.sqrt(se * se + so * so) + eps
                me, mo = se / xe, so / xe
                en = 0.0
                for s in range(ns):
                    e, od = eo[s, i, r, c].real, eo[s, i, r, c].imag
                    en = en + e * me + od * mo - abs(e * mo - od * me)
                sum_an[i, r, c] = sa
                energy[i, r, c] = en
                width[i, r, c] = sa / (mx + eps) / ns
    return sum_an, energy, width, e2


@njit(cache=True, nogil=True, error_model="numpy")
def pc_accumulate(energy: np.ndarray, sum_an: np.ndarray, ewidth: np.ndarray, t: np.ndarray, cos_a: float,
                  sin_a: float, total_energy: np.ndarray, total_sum_an: np.ndarray, covx2: np.ndarray,
                  covy2: np.ndarray, covxy: np.ndarray) -> None:
    """Add one orientation to the phase-congruency totals: the energy above the noise threshold ``t`` (per image)
    weighted by ``1 / (1 + ewidth)`` (``ewidth = exp((cut_off - width) g)``), and its covariance terms."""
    bsz, h, w = energy.shape
    for i in range(bsz):
        ti = t[i]
        for r in range(h):
            for c in range(w):
                v = energy[i, r, c] - ti
                en = v if (v != v or v > 0.0) else 0.0  # torch.clamp(min=0) keeps NaN
                weight = 1.0 / (1 + ewidth[i, r, c])
                sa = sum_an[i, r, c]
                total_sum_an[i, r, c] = total_sum_an[i, r, c] + sa
                total_energy[i, r, c] = total_energy[i, r, c] + weight * en
                pc_o = weight * en / sa
                cx = pc_o * cos_a
                cy = pc_o * sin_a
                covx2[i, r, c] = covx2[i, r, c] + cx * cx
                covy2[i, r, c] = covy2[i, r, c] + cy * cy
                covxy[i, r, c] = covxy[i, r, c] + cx * cy


@njit(cache=True, nogil=True, error_model="numpy")
def block_sums(x: np.ndarray, window: int) -> np.ndarray:
    """Sums over ``window x window`` blocks of a ``(B, H, W)`` batch (partial blocks: their pixels only)."""
    bsz, h, w = x.shape
    out = np.zeros((bsz, (h + window - 1) // window, (w + window - 1) // window))
    for i in range(bsz):
        for r in range(h):
            for c in range(w):
                out[i, r // window, c // window] += x[i, r, c]
    return out


@njit(cache=True, nogil=True, error_model="numpy")
def shifted_sum(xp: np.ndarray, rows: np.ndarray, cols: np.ndarray, k: np.ndarray, ho: int, wo: int,
                stride: int = 1) -> np.ndarray:
    """``out[i, r, c] = sum_t xp[i, stride r + rows[t], stride c + cols[t]] * k[t]``, the terms added in the order
    given (the first one taken as it is): :func:`fusion.metrics._ops.conv2`'s shifted sums in one pass, optionally
    only at every ``stride``-th output pixel."""
    bsz = xp.shape[0]
    n = len(k)
    out = np.empty((bsz, ho, wo))
    # tap by tap over whole rows (vectorised); every pixel still adds its taps in the given order
    for i in range(bsz):
        for t in range(n):
            dr, dc, kt = rows[t], cols[t], k[t]
            for r in range(ho):
                src = xp[i, stride * r + dr]
                dst = out[i, r]
                if t == 0:
                    for c in range(wo):
                        dst[c] = src[stride * c + dc] * kt
                else:
                    for c in range(wo):
                        dst[c] = dst[c] + src[stride * c + dc] * kt
    return out


@njit(cache=True, nogil=True, inline="always")
def _normalise_patch(p: np.ndarray, out: np.ndarray) -> None:
    lo, hi = p[0], p[0]
    for v in p:
        if v != v:  # NaN propagates through the reference's min/max
            lo = hi = v
            break
        lo = min(lo, v)
        hi = max(hi, v)
    for k in range(len(p)):
        out[k] = 1.0 if hi == lo else (p[k] - lo) / (hi - lo)


@njit(cache=True, nogil=True, inline="always")
def _plogp(p: float) -> float:
    # MATLAB takes real(-p .* log2(p)); for negative joint-pdf values that is -p * log2(|p|)
    return 0.0 if p == 0 else -p * math.log2(abs(p))


@njit(cache=True, nogil=True, error_model="numpy")
def _fmi_pair(xs: np.ndarray, fs: np.ndarray, xp: np.ndarray, fp: np.ndarray, xc: np.ndarray, fc: np.ndarray,
              bound: np.ndarray) -> float:
    """FMI of two normalised column-major patches (Nelsen's joint pdf from the Frechet bounds). The patch sums, means,
    CDFs, moments and the covariance are summed in the order ``analysis_fmi.m`` takes them (the flat-window outcome
    depends on it); the joint entropy is summed row by row (the toolbox: corner, first column, first row, then row
    by row), which changes only rounding."""
    n = len(xs)
    w = int(round(math.sqrt(n)))
    sx, sf = 0.0, 0.0
    for col in range(w):  # MATLAB's sum(sum(patch)): column sums, then their sum
        cx, cf = 0.0, 0.0
        for row in range(w):
            cx += xs[col * w + row]
            cf += fs[col * w + row]
        sx += cx
        sf += cf
    mx, mf = 0.0, 0.0
    for k in range(n):
        xp[k] = xs[k] / sx
        fp[k] = fs[k] / sf
        mx += xp[k]
        mf += fp[k]
    # MATLAB's mean: a sequential sum over n. For a flat patch it is not exactly the (equal) pdf values: the +-1e-17
    # residues correlate perfectly and give the window FMI 1, as the toolbox does (checked in Octave).
    mx /= n
    mf /= n
    cx, cf = 0.0, 0.0
    num, vx, vf, ix, ix2, jf, jf2 = 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0
    for k in range(n):
        cx += xp[k]
        cf += fp[k]
        xc[k] = cx
        fc[k] = cf
        xt = xp[k] - mx
        ft = fp[k] - mf
        num += xt * ft
        vx += xt * xt
        vf += ft * ft
        i = k + 1.0
        ix2 += i * i * xp[k]
        ix += i * xp[k]
        jf2 += i * i * fp[k]
        jf += i * fp[k]
    c = 0.0 if num == 0 else num / math.sqrt(vx * vf)
    x_sd = math.sqrt(ix2 - ix * ix)
    f_sd = math.sqrt(jf2 - jf * jf)
    pos = c >= 0
    cov = 0.0
    for i in range(n):
        for j in range(n):
            fi, xj = fc[i], xc[j]
            if pos:
                bnd = 0.5 * (fi + xj - abs(fi - xj))
            else:
                bnd = 0.5 * (fi + xj - 1 + abs(fi + xj - 1))
            bound[i, j] = bnd
            cov = cov + bnd - fi * xj
    degenerate = x_sd == 0 or f_sd == 0 or (pos and c == 0)
    k = 0.0 if degenerate else c / (cov / (f_sd * x_sd))
    hj = 0.0
    for i in range(n):
        for j in range(n):
            d = bound[i, j]
            if i > 0:
                d = d - bound[i - 1, j]
            if j > 0:
                d = d - bound[i, j - 1]
            if i > 0 and j > 0:
                d = d + bound[i - 1, j - 1]
            hj += _plogp(k * d + (1 - k) * fp[i] * xp[j])
    hx, hf = 0.0, 0.0
    for t in range(n):
        hx += _plogp(xp[t])
        hf += _plogp(fp[t])
    mi = hx + hf - hj
    return 0.0 if mi == 0 else 2 * mi / (hx + hf)


@njit(cache=True, nogil=True, error_model="numpy")
def fmi_mean(fa: np.ndarray, fb: np.ndarray, ff: np.ndarray, w: int) -> np.ndarray:
    """Mean over all ``w x w`` windows of ``(FMI_AF + FMI_BF) / 2`` per image of ``(B, H, W)`` feature images,
    patches in MATLAB column-major order; equal patches score 1, and the fused patch the second comparison sees is
    the normalised one whenever the first comparison found it different (the reference normalises it in place)."""
    bsz, h, wd = ff.shape
    n = w * w
    out = np.zeros(bsz)
    xa, xb, xf = np.empty(n), np.empty(n), np.empty(n)
    na, nb, nf = np.empty(n), np.empty(n), np.empty(n)
    xp, fp, xc, fc = np.empty(n), np.empty(n), np.empty(n), np.empty(n)
    bound = np.empty((n, n))
    count = (h - w + 1) * (wd - w + 1)
    for i in range(bsz):
        total = 0.0
        for r in range(h - w + 1):
            for c in range(wd - w + 1):
                eq_a = True
                for k in range(n):
                    rr, cc = r + k % w, c + k // w
                    xa[k], xb[k], xf[k] = fa[i, rr, cc], fb[i, rr, cc], ff[i, rr, cc]
                    eq_a = eq_a and xa[k] == xf[k]
                _normalise_patch(xf, nf)
                if eq_a:
                    fmi_a = 1.0
                else:
                    _normalise_patch(xa, na)
                    fmi_a = _fmi_pair(na, nf, xp, fp, xc, fc, bound)
                eq_b = True
                for k in range(n):
                    eq_b = eq_b and xb[k] == (xf[k] if eq_a else nf[k])
                if eq_b:
                    fmi_b = 1.0
                else:
                    _normalise_patch(xb, nb)
                    fmi_b = _fmi_pair(nb, nf, xp, fp, xc, fc, bound)
                total += (fmi_a + fmi_b) / 2
        out[i] = total / count
    return out
