"""FMI, feature mutual information (Haghighat, Aghagolzadeh & Seyedarabi 2011; the fast windowed variant of
Haghighat & Razian 2014), as in ``analysis_fmi.m`` / MEFB ``metricsFMI.m``.

Each image is turned into a feature image (``none``: pixels, ``dct``: the whole-image 2-D DCT, ``wavelet``: the
discrete-Meyer DWT sub-bands tiled ``[cA cH; cV cD]`` and min-max scaled, ``edge``: MATLAB's Sobel ``edge`` map).
In every ``w x w`` window the source and fused feature patches are min-max normalised and turned into PDFs over the
``w*w`` positions (MATLAB column-major order); their joint PDF is built with Nelsen's method from the Fréchet bounds
of the two CDFs scaled by the Pearson correlation of the PDFs, and
:math:`FMI_{XF} = 2\\,MI / (H_X + H_F)` (1 where the patches are equal, 0 where MI is 0). The score is the mean over
windows of :math:`(FMI_{AF} + FMI_{BF}) / 2`.
"""

from __future__ import annotations

import numpy as np
import pywt
import scipy.fft
import torch
import torch.nn.functional as F

from fusion.metrics._ops import imfilter_replicate, use_compiled
from fusion.metrics._parallel import parallel_map

__all__ = ["fmi", "feature_map", "edge_sobel"]

_SOBEL8 = np.array([[1.0, 2.0, 1.0], [0.0, 0.0, 0.0], [-1.0, -2.0, -1.0]]) / 8
_EPS100 = 100 * float(np.finfo(np.float64).eps)


def edge_sobel(x: torch.Tensor) -> torch.Tensor:
    """MATLAB ``edge(I)`` (Sobel, automatic threshold ``sqrt(4 * mean(|g|^2))``, thinning) -> (B, H, W) in {0, 1}.

    Thinning keeps a pixel whose squared magnitude exceeds the cutoff and is a strict local maximum across the
    dominant gradient direction (MATLAB's compiled ``computeedge`` is not public; this follows its documented rule).
    """
    bx = imfilter_replicate(x, _SOBEL8.T.copy())
    by = imfilter_replicate(x, _SOBEL8)
    b = bx * bx + by * by
    cutoff = 4 * b.mean(dim=(1, 2), keepdim=True)
    ax, ay = bx.abs(), by.abs()
    left = torch.cat([b[:, :, :1], b[:, :, :-1]], dim=2)
    right = torch.cat([b[:, :, 1:], b[:, :, -1:]], dim=2)
    up = torch.cat([b[:, :1], b[:, :-1]], dim=1)
    down = torch.cat([b[:, 1:], b[:, -1:]], dim=1)
    horiz = (ax >= ay - _EPS100) & (left < b) & (right < b)
    vert = (ay >= ax - _EPS100) & (up < b) & (down < b)
    return ((b > cutoff) & (horiz | vert)).to(x.dtype)


def _rerange(x: np.ndarray) -> np.ndarray:
    lo, hi = x.min(), x.max()
    return np.ones_like(x) if hi == lo else (x - lo) / (hi - lo)


def feature_map(x: torch.Tensor, feature: str) -> torch.Tensor:
    """Feature image of a batch ``(B, H, W)`` for :func:`fmi`."""
    if feature == "none":
        return x
    if feature == "edge":
        return edge_sobel(x)
    arr = x.detach().cpu().numpy()
    if feature == "dct":
        out = np.stack([scipy.fft.dctn(a, type=2, norm="ortho") for a in arr])
    elif feature == "wavelet":
        tiles = []
        for a in arr:
            ca, (ch, cv, cd) = pywt.dwt2(a, "dmey", mode="symmetric")
            tiles.append(_rerange(np.block([[ca, ch], [cv, cd]])))
        out = np.stack(tiles)
    else:
        raise ValueError(f"fmi: feature must be none, edge, dct or wavelet, got {feature!r}")
    return torch.as_tensor(out, dtype=torch.float64, device=x.device)


def _windows(x: torch.Tensor, w: int) -> torch.Tensor:
    """(B, H, W) -> (B, L, w*w) patches in MATLAB column-major order (``sub(:)``)."""
    p = F.unfold(x[:, None], w)  # (B, w*w, L), row-major within the patch
    idx = torch.arange(w * w, device=x.device).reshape(w, w).t().reshape(-1)
    return p[:, idx, :].transpose(1, 2)


def _normalise(p: torch.Tensor) -> torch.Tensor:
    lo = p.min(dim=-1, keepdim=True).values
    hi = p.max(dim=-1, keepdim=True).values
    flat = hi == lo
    return torch.where(flat, torch.ones_like(p), (p - lo) / torch.where(flat, torch.ones_like(hi), hi - lo))


def _plogp(p: torch.Tensor) -> torch.Tensor:
    nz = p != 0
    # MATLAB takes real(-p .* log2(p)); for negative joint-pdf values that is -p * log2(|p|).
    return torch.where(nz, -p * torch.log2(torch.where(nz, p.abs(), torch.ones_like(p))), torch.zeros_like(p))


def _fmi_pair(xs: torch.Tensor, fs: torch.Tensor) -> torch.Tensor:
    """FMI of normalised patches ``(..., l)`` (not equal to each other) -> ``(...)``."""
    l = xs.shape[-1]
    xp = xs / xs.sum(dim=-1, keepdim=True)
    fp = fs / fs.sum(dim=-1, keepdim=True)
    xc = torch.cumsum(xp, dim=-1)
    fc = torch.cumsum(fp, dim=-1)
    # MATLAB's mean is a sequential sum (the last prefix sum): for a flat patch its +-1e-17 residues correlate
    # perfectly and give the window FMI 1, as the toolbox does (checked in Octave); torch's mean would give 0 or 1
    # depending on its reduction order.
    xt = xp - xc[..., -1:] / l
    ft = fp - fc[..., -1:] / l
    num = (xt * ft).sum(dim=-1)
    den = torch.sqrt((xt * xt).sum(dim=-1) * (ft * ft).sum(dim=-1))
    c = torch.where(num == 0, torch.zeros_like(num), num / torch.where(num == 0, torch.ones_like(den), den))
    i = torch.arange(1, l + 1, dtype=xs.dtype, device=xs.device)
    x_sd = torch.sqrt((i * i * xp).sum(-1) - (i * xp).sum(-1) ** 2)
    f_sd = torch.sqrt((i * i * fp).sum(-1) - (i * fp).sum(-1) ** 2)
    fi = fc[..., :, None]  # rows: fused CDF index i
    xj = xc[..., None, :]  # cols: source CDF index j
    upper = 0.5 * (fi + xj - torch.abs(fi - xj))
    lower = 0.5 * (fi + xj - 1 + torch.abs(fi + xj - 1))
    prod = fi * xj
    pos = c >= 0
    bound = torch.where(pos[..., None, None], upper, lower)
    cov = (bound - prod).sum(dim=(-2, -1))
    degenerate = (x_sd == 0) | (f_sd == 0) | (pos & (c == 0))
    corr_b = cov / (f_sd * x_sd)
    k = torch.where(degenerate, torch.zeros_like(c), c / torch.where(degenerate, torch.ones_like(corr_b), corr_b))
    # Joint pdf = finite differences of the bound, blended with the independent product.
    pad = F.pad(bound, (1, 0, 1, 0))
    dbound = pad[..., 1:, 1:] - pad[..., :-1, 1:] - pad[..., 1:, :-1] + pad[..., :-1, :-1]
    jpdf = k[..., None, None] * dbound + (1 - k[..., None, None]) * fp[..., :, None] * xp[..., None, :]
    h_joint = _plogp(jpdf).sum(dim=(-2, -1))
    hx = _plogp(xp).sum(-1)
    hf = _plogp(fp).sum(-1)
    mi = hx + hf - h_joint
    return torch.where(mi == 0, torch.zeros_like(mi), 2 * mi / (hx + hf))


def fmi(
    a: torch.Tensor, b: torch.Tensor, fused: torch.Tensor, *, feature: str = "none", window: int = 3, chunk: int = 8192
) -> torch.Tensor:
    """FMI of the pair against the fused image (see the module docstring). Inputs (B, H, W); returns (B,)."""
    fa, fb, ff = feature_map(a, feature), feature_map(b, feature), feature_map(fused, feature)
    if use_compiled(ff):
        from fusion.metrics._kernels import fmi_mean

        arrs = [x.detach().contiguous().numpy() for x in (fa, fb, ff)]
        parts = parallel_map(lambda i: fmi_mean(*(x[i : i + 1] for x in arrs), window), range(ff.shape[0]),
                             pixels=ff[0].numel())
        return torch.from_numpy(np.concatenate(parts))
    pa, pb, pf = _windows(fa, window), _windows(fb, window), _windows(ff, window)
    out = torch.zeros(a.shape[0], dtype=torch.float64, device=a.device)
    n = pa.shape[1]
    for s in range(0, n, chunk):
        xa, xb, xf = pa[:, s : s + chunk], pb[:, s : s + chunk], pf[:, s : s + chunk]
        eq_a = (xa == xf).all(dim=-1)
        nf = _normalise(xf)
        fmi_a = torch.where(eq_a, torch.ones_like(eq_a, dtype=a.dtype), _fmi_pair(_normalise(xa), nf))
        # The reference normalises the fused patch in place during the first comparison, so the second equality test
        # sees the normalised patch whenever the first one failed.
        f_cmp = torch.where(eq_a[..., None], xf, nf)
        eq_b = (xb == f_cmp).all(dim=-1)
        fmi_b = torch.where(eq_b, torch.ones_like(eq_b, dtype=a.dtype), _fmi_pair(_normalise(xb), nf))
        out = out + ((fmi_a + fmi_b) / 2).sum(dim=1)
    return out / n
