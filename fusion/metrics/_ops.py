"""Tensor building blocks that reproduce MATLAB's numerics.

Every function works on batches ``(B, H, W)`` of ``float64`` tensors (CPU or GPU). Reference toolboxes are MATLAB
code, and a few of their results depend on floating-point details (an ``==`` between two gradient magnitudes,
say), so the helpers here follow MATLAB's definitions closely:

* :func:`conv2` sums the kernel taps in MATLAB's order (column-major over the kernel), which makes results
  bit-identical to MATLAB ``conv2`` for the small integer kernels used by edge-based metrics;
* :func:`matlab_round` rounds halves away from zero (numpy/torch round them to even);
* :func:`rgb2gray` uses MATLAB's ``rgb2gray`` weights and rounding.
"""

from __future__ import annotations

import contextlib
import functools
import math
import threading
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

__all__ = [
    "RGB2GRAY_WEIGHTS",
    "matlab_round",
    "rgb2gray",
    "conv2",
    "filter2",
    "filter2_valid_np",
    "filter2_same_np",
    "filter2_valid_taps_np",
    "filter2_valid_batches",
    "imfilter_replicate",
    "gradient",
    "fspecial_gaussian",
    "hist256",
    "joint_hist256",
    "entropy_bits",
    "corr2",
    "freqspace",
    "fft_filter",
    "fft_filter_np",
    "fft_filter_half_np",
    "hermitian_half",
    "planes_alike",
    "distinct_planes",
    "on_distinct_planes",
    "block_reduce",
    "flat",
    "sqrt",
    "use_compiled",
    "torch_reference",
]

RGB2GRAY_WEIGHTS = (0.298936021293775, 0.587043074451121, 0.114020904255103)
"""MATLAB ``rgb2gray`` coefficients (the exact values of its inverse YIQ matrix row)."""

# Above this many non-zero taps conv2 switches from MATLAB-ordered shifted sums to torch's conv2d. Only the small
# integer kernels (Sobel, 3x3) feed equality tests whose outcome depends on the summation order.
_EXACT_TAPS = 25


_STATE = threading.local()


def use_compiled(x: torch.Tensor) -> bool:
    """Whether a metric on ``x`` runs its compiled CPU kernels (:mod:`fusion.metrics._kernels`): CPU tensors that do
    not require gradients, unless this thread is inside :func:`torch_reference`. Other devices, and tensors in an
    autograd graph, run the torch formulation."""
    return x.device.type == "cpu" and not x.requires_grad and getattr(_STATE, "compiled", True)


@contextlib.contextmanager
def torch_reference() -> Iterator[None]:
    """Run the metrics' torch formulation on CPU too, in this thread (the reference the compiled kernels are tested
    against)."""
    old = getattr(_STATE, "compiled", True)
    _STATE.compiled = False
    try:
        yield
    finally:
        _STATE.compiled = old


def sqrt(x: torch.Tensor) -> torch.Tensor:
    """Correctly rounded square root.

    torch's vectorised CPU ``sqrt`` for float64 is off by one ulp on some inputs; metrics that compare gradient
    magnitudes for equality (Qabf, Nabf) would then disagree with MATLAB, so CPU tensors go through numpy.
    """
    if x.device.type == "cpu":
        return torch.from_numpy(np.sqrt(x.detach().contiguous().numpy()))
    return torch.sqrt(x)


def flat(x: torch.Tensor) -> torch.Tensor:
    """(B, H, W) -> (B, H*W)."""
    return x.reshape(x.shape[0], -1)


def matlab_round(x: torch.Tensor) -> torch.Tensor:
    """Round half away from zero, like MATLAB ``round`` and integer casts."""
    return torch.sign(x) * torch.floor(torch.abs(x) + 0.5)


def rgb2gray(img: np.ndarray) -> np.ndarray:
    """MATLAB ``rgb2gray`` of a ``uint8`` ``(H, W, 3)`` array: weighted sum in double, rounded half away from zero."""
    rgb = img.astype(np.float64)
    w0, w1, w2 = RGB2GRAY_WEIGHTS
    g = rgb[..., 0] * w0 + rgb[..., 1] * w1 + rgb[..., 2] * w2
    return np.clip(np.floor(g + 0.5), 0, 255).astype(np.uint8)


def opencv_gray(img: np.ndarray) -> np.ndarray:
    """Grey levels as ``np.round(cv2.cvtColor(img.astype('float32'), BGR2GRAY))`` of an image read by OpenCV (the
    CDDFuse ``Evaluator``): float32 weights 0.299 R + 0.587 G + 0.114 B, then round half to even. ``img`` is RGB
    uint8 ``(H, W, 3)`` or grey ``(H, W)`` (OpenCV reads a grey file as three equal channels, which give the grey
    value back). Returns float32."""
    import cv2

    if img.ndim == 2:
        img = np.repeat(img[:, :, None], 3, axis=2)
    return np.round(cv2.cvtColor(np.ascontiguousarray(img, dtype=np.float32), cv2.COLOR_RGB2GRAY))


def _as_kernel(k: np.ndarray | torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    return torch.as_tensor(np.asarray(k, dtype=np.float64), dtype=like.dtype, device=like.device)


def conv2(x: torch.Tensor, k: np.ndarray | torch.Tensor, mode: str = "same") -> torch.Tensor:
    """MATLAB ``conv2(x, k, mode)`` (true convolution, zero padding) on a batch ``(B, H, W)``.

    ``mode`` is ``"full"``, ``"same"`` (central part, MATLAB's offset ``ceil((kh-1)/2)``) or ``"valid"``.
    Small kernels are applied as shifted sums in MATLAB's tap order, so results match MATLAB bit for bit.
    """
    kk = np.asarray(k.detach().cpu().numpy() if isinstance(k, torch.Tensor) else k, dtype=np.float64)
    kh, kw = kk.shape
    b, h, w = x.shape
    if mode == "full":
        r0, c0, ho, wo = 0, 0, h + kh - 1, w + kw - 1
    elif mode == "same":
        r0, c0, ho, wo = (kh - 1 + 1) // 2, (kw - 1 + 1) // 2, h, w
    elif mode == "valid":
        r0, c0, ho, wo = kh - 1, kw - 1, h - kh + 1, w - kw + 1
        if ho <= 0 or wo <= 0:
            raise ValueError(f"conv2 'valid': image {h}x{w} is smaller than the kernel {kh}x{kw}")
    else:
        raise ValueError(f"conv2: mode must be full, same or valid, got {mode!r}")
    taps = [(u, v) for v in range(kw) for u in range(kh) if kk[u, v] != 0.0]
    if len(taps) > _EXACT_TAPS:
        # Pad only what the requested region reads, then correlate with the flipped kernel.
        top, left = kh - 1 - r0, kw - 1 - c0
        bottom = max(0, r0 + ho - h)
        right = max(0, c0 + wo - w)
        # no copy when nothing is padded ('valid')
        xp = F.pad(x[:, None], (left, right, top, bottom)) if left or right or top or bottom else x[:, None]
        flipped = kk[::-1, ::-1].copy()
        sep = _separable_cached(flipped.tobytes(), flipped.shape)
        if sep is not None and x.device.type == "cpu" and kh % 2 and kw % 2:
            arr = xp[:, 0].detach().contiguous().numpy()
            out = np.stack([_sep_valid(img, sep) for img in arr])
            return torch.from_numpy(np.ascontiguousarray(out[:, :ho, :wo]))
        if sep is not None:
            col, row = sep
            out = F.conv2d(xp, _as_kernel(col[:, None], x)[None, None])
            out = F.conv2d(out, _as_kernel(row[None, :], x)[None, None])
        else:
            out = F.conv2d(xp, _as_kernel(flipped, x)[None, None])
        return out[:, 0, :ho, :wo]
    if not taps:
        return x.new_zeros((b, ho, wo))
    if use_compiled(x) and x.dtype == torch.float64:
        from fusion.metrics._kernels import shifted_sum

        # the rows/columns of the padded image each tap reads; x * 1.0 == x exactly, so every tap multiplies
        xp = np.pad(x.detach().numpy(), ((0, 0), (kh - 1, kh - 1), (kw - 1, kw - 1)))
        rows = np.array([r0 - u + kh - 1 for u, _ in taps], dtype=np.int64)
        cols = np.array([c0 - v + kw - 1 for _, v in taps], dtype=np.int64)
        return torch.from_numpy(shifted_sum(xp, rows, cols, np.array([kk[u, v] for u, v in taps]), ho, wo))
    xp = F.pad(x, (kw - 1, kw - 1, kh - 1, kh - 1))
    out = None
    for u, v in taps:
        # full[r, c] = sum k[u, v] * x[r - u, c - v]; x[r - u] sits at padded row r - u + kh - 1.
        sl = xp[:, r0 - u + kh - 1 : r0 - u + kh - 1 + ho, c0 - v + kw - 1 : c0 - v + kw - 1 + wo]
        term = sl * kk[u, v] if kk[u, v] != 1.0 else sl
        out = term.clone() if out is None else out + term
    return out


@functools.lru_cache(maxsize=64)
def _separable_cached(data: bytes, shape: tuple[int, int]) -> tuple[np.ndarray, np.ndarray] | None:
    return _separable(np.frombuffer(data, dtype=np.float64).reshape(shape))


def _separable(k: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
    """``(col, row)`` with ``k == outer(col, row)`` (to rounding) when ``k`` has rank one, else ``None``."""
    u, sv, vt = np.linalg.svd(k)
    if sv[0] == 0 or (len(sv) > 1 and sv[1] > sv[0] * 1e-13):
        return None
    col = u[:, 0] * np.sqrt(sv[0])
    row = vt[0] * np.sqrt(sv[0])
    if not np.allclose(np.outer(col, row), k, rtol=1e-12, atol=1e-15 * np.abs(k).max()):
        return None
    return col, row


def _sep_valid(img: np.ndarray, sep: tuple[np.ndarray, np.ndarray]) -> np.ndarray:
    """Correlation of a ``(H, W)`` float64 image with ``outer(col, row)`` (odd sizes), 'valid' part only (a view).

    OpenCV's separable filter (float64, SIMD, releases the GIL) is about 2x scipy's and many times torch's float64
    conv2d on CPU; only the interior, where the border rule plays no part, is kept.
    """
    kh, kw = len(sep[0]), len(sep[1])
    out = np.empty(img.shape)
    _sep_into(img, sep, out)
    return out[kh // 2 : img.shape[0] - kh // 2, kw // 2 : img.shape[1] - kw // 2]


def _sep_into(img: np.ndarray, sep: tuple[np.ndarray, np.ndarray], dst: np.ndarray) -> None:
    """:func:`_sep_valid`'s filter of the whole image written into ``dst`` (a C-contiguous float64 plane of the
    image's size)."""
    import cv2

    col, row = sep
    cv2.sepFilter2D(np.ascontiguousarray(img, dtype=np.float64), cv2.CV_64F, row, col, dst=dst,
                    borderType=cv2.BORDER_CONSTANT)


def filter2_valid_np(k: np.ndarray, x: np.ndarray) -> np.ndarray:
    """MATLAB ``filter2(k, x, 'valid')`` of one ``(H, W)`` float64 numpy image: the arithmetic of :func:`filter2` on
    CPU tensors (OpenCV's separable filter for odd separable kernels of more than 25 taps, MATLAB-ordered shifted
    sums below). Returns a view into the filtered image for the former."""
    kk = np.ascontiguousarray(k, dtype=np.float64)
    sep = _separable_cached(kk.tobytes(), kk.shape)
    small = np.count_nonzero(kk) <= _EXACT_TAPS
    if small or sep is None or not (kk.shape[0] % 2 and kk.shape[1] % 2):
        return filter2(kk, torch.from_numpy(np.ascontiguousarray(x, dtype=np.float64))[None], "valid")[0].numpy()
    if x.shape[0] < kk.shape[0] or x.shape[1] < kk.shape[1]:
        raise ValueError(f"filter2 'valid': image {x.shape[0]}x{x.shape[1]} is smaller than the kernel "
                         f"{kk.shape[0]}x{kk.shape[1]}")
    return _sep_valid(np.ascontiguousarray(x, dtype=np.float64), sep)


def filter2_valid_taps_np(k: np.ndarray, x: np.ndarray, stride: int = 1) -> np.ndarray:
    """``filter2(k, x, 'valid')[:, ::stride, ::stride]`` of a ``(B, H, W)`` float64 numpy batch by :func:`conv2`'s
    MATLAB-ordered shifted sums (bit-identical), computing only the kept pixels. For small kernels."""
    from fusion.metrics._kernels import shifted_sum

    kk = np.asarray(k, dtype=np.float64)[::-1, ::-1]  # filter2 = conv2 with the rotated kernel
    kh, kw = kk.shape
    b, h, w = x.shape
    if h < kh or w < kw:
        raise ValueError(f"filter2 'valid': image {h}x{w} is smaller than the kernel {kh}x{kw}")
    taps = [(u, v) for v in range(kw) for u in range(kh) if kk[u, v] != 0.0]
    if not taps:
        return np.zeros((b, -(-(h - kh + 1) // stride), -(-(w - kw + 1) // stride)))
    # conv2 'valid': out[r, c] = sum k[u, v] x[r + kh - 1 - u, c + kw - 1 - v]
    rows = np.array([kh - 1 - u for u, _ in taps], dtype=np.int64)
    cols = np.array([kw - 1 - v for _, v in taps], dtype=np.int64)
    vals = np.array([kk[u, v] for u, v in taps])
    ho, wo = -(-(h - kh + 1) // stride), -(-(w - kw + 1) // stride)
    return shifted_sum(np.ascontiguousarray(x, dtype=np.float64), rows, cols, vals, ho, wo, stride)


def filter2_valid_batches(k: np.ndarray, xs: list, stride: int = 1) -> list:
    """``filter2(k, x, 'valid')[:, ::stride, ::stride]`` of each ``(B, H, W)`` batch in ``xs`` (numpy float64, or
    torch tensors, which take :func:`filter2`). Numpy batches: kernels of up to 25 taps take :func:`conv2`'s exact
    shifted sums in one compiled call for all images, computing only the kept pixels; larger ones are filtered image
    by image by OpenCV on the metric threads (a view, not a copy, for a single image at stride 1)."""
    from fusion.metrics._parallel import parallel_map

    if not isinstance(xs[0], np.ndarray):
        return [filter2(k, x, "valid")[:, ::stride, ::stride] for x in xs]
    if np.count_nonzero(k) <= _EXACT_TAPS:
        whole = filter2_valid_taps_np(k, np.concatenate(xs), stride)
        return np.split(whole, np.cumsum([x.shape[0] for x in xs])[:-1])
    kk = np.ascontiguousarray(k, dtype=np.float64)
    sep = _separable_cached(kk.tobytes(), kk.shape)
    kh, kw = kk.shape
    jobs = [(i, j) for i, x in enumerate(xs) for j in range(x.shape[0])]
    if sep is None or not (kh % 2 and kw % 2):
        out = parallel_map(lambda ij: filter2_valid_np(k, xs[ij[0]][ij[1]]), jobs, pixels=xs[0][0].size)
        res, n = [], 0
        for x in xs:
            res.append(np.ascontiguousarray(np.stack(out[n : n + x.shape[0]])[:, ::stride, ::stride]))
            n += x.shape[0]
        return res
    for x in xs:
        if x.shape[1] < kh or x.shape[2] < kw:
            raise ValueError(f"filter2 'valid': image {x.shape[1]}x{x.shape[2]} is smaller than the kernel {kh}x{kw}")
    # each image is filtered into its plane of one array per batch; the valid part is a view of it (no copies)
    full = [np.empty(x.shape) for x in xs]
    parallel_map(lambda ij: _sep_into(xs[ij[0]][ij[1]], sep, full[ij[0]][ij[1]]), jobs, pixels=xs[0][0].size)
    res = []
    for f in full:
        h, w = f.shape[1:]
        part = f[:, kh // 2 : h - kh // 2 : stride, kw // 2 : w - kw // 2 : stride]
        res.append(np.ascontiguousarray(part) if stride > 1 else part)
    return res


def filter2_same_np(k: np.ndarray, x: np.ndarray) -> np.ndarray:
    """MATLAB ``filter2(k, x, 'same')`` (zero borders) of one ``(H, W)`` float64 numpy image, for odd separable
    ``k``: OpenCV's separable filter with a constant zero border, without the padded copy :func:`filter2` makes
    (equal up to rounding: OpenCV's vector loops split odd widths differently)."""
    import cv2

    kk = np.ascontiguousarray(k, dtype=np.float64)
    sep = _separable_cached(kk.tobytes(), kk.shape)
    if np.count_nonzero(kk) <= _EXACT_TAPS or sep is None or not (kk.shape[0] % 2 and kk.shape[1] % 2):
        return filter2(kk, torch.from_numpy(np.ascontiguousarray(x, dtype=np.float64))[None], "same")[0].numpy()
    col, row = sep
    return cv2.sepFilter2D(np.ascontiguousarray(x, dtype=np.float64), cv2.CV_64F, row, col,
                           borderType=cv2.BORDER_CONSTANT)


def filter2(k: np.ndarray | torch.Tensor, x: torch.Tensor, mode: str = "same") -> torch.Tensor:
    """MATLAB ``filter2(k, x, mode)``: correlation, i.e. ``conv2(x, rot90(k, 2), mode)``."""
    kk = np.asarray(k.detach().cpu().numpy() if isinstance(k, torch.Tensor) else k, dtype=np.float64)
    return conv2(x, kk[::-1, ::-1].copy(), mode)


def imfilter_replicate(x: torch.Tensor, k: np.ndarray) -> torch.Tensor:
    """MATLAB ``imfilter(x, k, 'replicate')`` for odd kernels: correlation on a replicate-padded image."""
    kh, kw = np.asarray(k).shape
    xp = F.pad(x[:, None], (kw // 2, kw // 2, kh // 2, kh // 2), mode="replicate")[:, 0]
    return filter2(k, xp, "valid")


def gradient(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """MATLAB ``[gx, gy] = gradient(x)``: central differences inside, one-sided at the borders.

    Returns ``(gx, gy)``: ``gx`` along the width (columns), ``gy`` along the height (rows).
    """
    gx = torch.empty_like(x)
    gy = torch.empty_like(x)
    if x.shape[2] > 1:
        gx[:, :, 0] = x[:, :, 1] - x[:, :, 0]
        gx[:, :, -1] = x[:, :, -1] - x[:, :, -2]
        gx[:, :, 1:-1] = (x[:, :, 2:] - x[:, :, :-2]) / 2
    else:
        gx.zero_()
    if x.shape[1] > 1:
        gy[:, 0, :] = x[:, 1, :] - x[:, 0, :]
        gy[:, -1, :] = x[:, -1, :] - x[:, -2, :]
        gy[:, 1:-1, :] = (x[:, 2:, :] - x[:, :-2, :]) / 2
    else:
        gy.zero_()
    return gx, gy


def fspecial_gaussian(size: int, sigma: float) -> np.ndarray:
    """MATLAB ``fspecial('gaussian', size, sigma)`` (tiny values zeroed, normalised to sum 1)."""
    m = (size - 1) / 2.0
    y, x = np.ogrid[-m : m + 1, -m : m + 1]
    h = np.exp(-(x * x + y * y) / (2.0 * sigma * sigma))
    h[h < np.finfo(np.float64).eps * h.max()] = 0
    s = h.sum()
    return h / s if s != 0 else h


def hist256(x: torch.Tensor) -> torch.Tensor:
    """Counts of the integer values 0..255 per batch item: (B, H, W) -> (B, 256) float64."""
    if use_compiled(x):
        from fusion.metrics._kernels import histogram256

        xs = x.detach().numpy()
        return torch.from_numpy(np.ascontiguousarray(histogram256(xs, xs, False)[:, :, 0]))
    b = x.shape[0]
    idx = flat(x).long() + torch.arange(b, device=x.device)[:, None] * 256
    return torch.bincount(idx.reshape(-1), minlength=b * 256).reshape(b, 256).to(torch.float64)


def joint_hist256(a: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
    """Joint counts of integer values 0..255: (B, H, W) x (B, H, W) -> (B, 256, 256), rows index ``a``."""
    if use_compiled(a):
        from fusion.metrics._kernels import histogram256

        return torch.from_numpy(histogram256(a.detach().numpy(), c.detach().numpy(), True))
    b = a.shape[0]
    idx = flat(a).long() * 256 + flat(c).long() + torch.arange(b, device=a.device)[:, None] * 65536
    return torch.bincount(idx.reshape(-1), minlength=b * 65536).reshape(b, 256, 256).to(torch.float64)


def entropy_bits(counts: torch.Tensor, base: float = 2.0) -> torch.Tensor:
    """Shannon entropy of histograms ``(B, ...)`` (normalised here), skipping empty bins."""
    c = counts.reshape(counts.shape[0], -1)
    if use_compiled(c):
        # numpy's vectorised log is ~10x torch's float64 log on CPU (the two differ in the last digit on some values)
        cn = c.detach().numpy()
        pn = cn / cn.sum(axis=1, keepdims=True)
        with np.errstate(divide="ignore", invalid="ignore"):
            terms = np.where(pn > 0, pn * np.log(np.where(pn > 0, pn, 1.0)), 0.0)
        return torch.from_numpy(-terms.sum(axis=1) / math.log(base))
    p = c / c.sum(dim=1, keepdim=True)
    logp = torch.where(p > 0, torch.log(torch.where(p > 0, p, torch.ones_like(p))), torch.zeros_like(p))
    return -(p * logp).sum(dim=1) / math.log(base)


def corr2(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """MATLAB ``corr2``: Pearson correlation of two images, per batch item -> (B,)."""
    a = flat(a)
    b = flat(b)
    a = a - a.mean(dim=1, keepdim=True)
    b = b - b.mean(dim=1, keepdim=True)
    return (a * b).sum(dim=1) / torch.sqrt((a * a).sum(dim=1) * (b * b).sum(dim=1))


def freqspace(h: int, w: int, like: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """MATLAB ``[u, v] = freqspace([h w], 'meshgrid')``: normalised frequencies, zero at index ``floor(n/2)``."""
    fu = (torch.arange(w, dtype=torch.float64, device=like.device) - w // 2) * (2.0 / w)
    fv = (torch.arange(h, dtype=torch.float64, device=like.device) - h // 2) * (2.0 / h)
    v, u = torch.meshgrid(fv, fu, indexing="ij")
    return u, v


def fft_filter(x: torch.Tensor, centred_response: torch.Tensor) -> torch.Tensor:
    """``real(ifft2(ifftshift(fftshift(fft2(x)) .* H)))`` for a response ``H`` laid out like ``freqspace``."""
    if use_compiled(x):
        return torch.from_numpy(fft_filter_np(x.detach().numpy(), centred_response.detach().cpu().numpy()))
    spec = torch.fft.fft2(x) * torch.fft.ifftshift(centred_response, dim=(-2, -1))
    return torch.fft.ifft2(spec).real


def hermitian_half(centred_response: np.ndarray) -> np.ndarray:
    """The half spectrum ``(..., H, W // 2 + 1)`` that :func:`fft_filter_half_np` multiplies by: the Hermitian part
    ``(H(k) + H(-k)) / 2`` of a real response laid out like ``freqspace``.

    ``real(ifft2(X H))`` of a real image is the inverse transform of ``X`` times that part, which a real inverse
    transform takes exactly (``H`` real); for the radially symmetric responses of the metrics it differs from ``H``
    only on the Nyquist row and column of even sizes.
    """
    w = centred_response.shape[-1]
    resp = np.fft.ifftshift(centred_response, axes=(-2, -1))
    mirrored = np.roll(resp[..., ::-1, ::-1], (1, 1), axis=(-2, -1))  # resp[(-k) mod n]
    return np.ascontiguousarray(((resp + mirrored) / 2)[..., : w // 2 + 1])


def fft_filter_half_np(x: np.ndarray, half: np.ndarray) -> np.ndarray:
    """:func:`fft_filter` of a numpy image or batch with real transforms, the response given as its
    :func:`hermitian_half`.

    SciPy's transforms on the calling thread: the metric threads already run images side by side (torch's MKL
    transforms are faster alone but were slower here, their OpenMP threads contending with the metric threads)."""
    h, w = x.shape[-2:]
    if half.shape[-2:] != (h, w // 2 + 1):
        raise ValueError(f"half spectrum of shape {half.shape} does not belong to images of {h}x{w}")
    import scipy.fft

    spec = scipy.fft.rfft2(x, workers=1)
    spec *= half
    return scipy.fft.irfft2(spec, s=(h, w), workers=1, overwrite_x=True)


def fft_filter_np(x: np.ndarray, centred_response: np.ndarray) -> np.ndarray:
    """:func:`fft_filter` of a numpy image or batch with real transforms (see :func:`hermitian_half`)."""
    return fft_filter_half_np(x, hermitian_half(centred_response))


def planes_alike(x: np.ndarray) -> list[int]:
    """For each image of a ``(B, H, W)`` batch, the index of the first image equal to it among the run of equal
    neighbours it belongs to (``[0, 0, 0]`` for a grey image repeated as three colour planes; ``[0, 1, 2]`` when all
    differ). Lets per-channel metrics compute what depends on one source plane once (NaNs never compare equal)."""
    from fusion.metrics._kernels import planes_equal

    rep = list(range(x.shape[0]))
    for i in range(1, x.shape[0]):
        if planes_equal(x, rep[i - 1], i):
            rep[i] = rep[i - 1]
    return rep


def distinct_planes(x: np.ndarray) -> tuple[list[int], list[int]]:
    """``(keep, pos)`` for a ``(B, H, W)`` batch: the indices of its distinct planes (:func:`planes_alike`) and, for
    each plane, the position of its representative in ``keep``."""
    rep = planes_alike(x)
    keep = sorted(set(rep))
    return keep, [keep.index(r) for r in rep]


def on_distinct_planes(fn: Callable[[np.ndarray], Any], x: np.ndarray) -> Any:
    """``fn(x)`` for a ``(B, H, W)`` batch, computed on its distinct planes only (:func:`distinct_planes`) and
    expanded back. ``fn`` must treat the images independently and return an array, or a tuple of arrays, batch
    first."""
    keep, pos = distinct_planes(x)
    if len(keep) == x.shape[0]:
        return fn(x)
    out = fn(np.ascontiguousarray(x[keep]))
    return tuple(o[pos] for o in out) if isinstance(out, tuple) else out[pos]


def block_reduce(x: torch.Tensor, size: int, op: str) -> torch.Tensor:
    """MATLAB ``blkproc(x, [size size], fun)`` with zero padding of partial blocks: ``op`` is ``sum`` or ``mean``.

    Returns (B, ceil(H/size), ceil(W/size)); ``mean`` divides by ``size**2`` (padding included, as blkproc does).
    """
    b, h, w = x.shape
    ph = (-h) % size
    pw = (-w) % size
    xp = F.pad(x, (0, pw, 0, ph))
    blocks = xp.reshape(b, (h + ph) // size, size, (w + pw) // size, size)
    s = blocks.sum(dim=(2, 4))
    return s / (size * size) if op == "mean" else s
