"""Classical fusion baselines: the comparison rows of every table.

All fusers take and return ``uint8`` ``(H, W, 3)`` RGB arrays (see :mod:`fusion.fusers.base`) and are vectorised
with numpy / OpenCV / PyWavelets so that a 640x480 pair takes milliseconds to a few tens of milliseconds.

========== ==================================================================================================
name       rule
========== ==================================================================================================
average    ``round((a + b) / 2)`` (halves rounded up)
maximum    per-pixel, per-channel maximum (the brighter source wins)
laplacian  Laplacian pyramid (Burt & Adelson 1983): base level averaged, detail levels by maximum absolute value
dwt        2-D discrete wavelet transform (PyWavelets): approximation averaged, details by maximum absolute value
gff        guided-filter fusion (Li, Kang & Hu, IEEE TIP 2013): two-scale decomposition, Laplacian saliency,
           weight maps refined by guided filtering
mertens    exposure fusion (Mertens, Kautz & Van Reeth 2007) through ``cv2.createMergeMertens``
focus      multi-focus selection: pixel-wise choice of the source with the larger local Laplacian energy,
           cleaned by a majority filter
========== ==================================================================================================
"""

from __future__ import annotations

from typing import Any

import cv2
import numpy as np
import pywt

from fusion.errors import ConfigError
from fusion.fusers.base import Fuser, check_pair, register_fuser

__all__ = [
    "AverageFuser",
    "MaximumFuser",
    "LaplacianPyramidFuser",
    "DWTFuser",
    "GFFFuser",
    "MertensFuser",
    "FocusFuser",
    "guided_filter",
]

# Rec. 601 luma, used wherever a baseline needs one intensity channel (saliency, focus, guidance).
_LUMA = np.array([0.299, 0.587, 0.114], dtype=np.float32)


def _to_uint8(x: np.ndarray) -> np.ndarray:
    return np.clip(np.rint(x), 0, 255).astype(np.uint8)


def _gray(img: np.ndarray) -> np.ndarray:
    """(H, W, 3) -> (H, W) float32 luma on the image's own scale."""
    return img.astype(np.float32) @ _LUMA


def _select_abs_max(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    return np.where(np.abs(x) >= np.abs(y), x, y)


def guided_filter(guide: np.ndarray, src: np.ndarray, radius: int, eps: float) -> np.ndarray:
    """Gray-guided filter (He, Sun & Tang 2010) with box windows of side ``2 * radius + 1``.

    Args:
        guide: (H, W) float32 guidance image.
        src: (H, W) or (H, W, C) float32 image to filter.
        radius: window radius in pixels.
        eps: regularisation (on the scale of ``guide`` squared).

    Returns:
        The filtered ``src``, same shape, float32.
    """
    ksize = (2 * radius + 1, 2 * radius + 1)

    def box(x: np.ndarray) -> np.ndarray:
        return cv2.boxFilter(x, -1, ksize, normalize=True, borderType=cv2.BORDER_REFLECT)

    g = guide.astype(np.float32)
    p = src.astype(np.float32)
    g_b = g[:, :, None] if p.ndim == 3 else g
    mean_g = box(g)
    mean_p = box(p)
    mean_g_b = mean_g[:, :, None] if p.ndim == 3 else mean_g
    var_g = box(g * g) - mean_g * mean_g
    var_g_b = var_g[:, :, None] if p.ndim == 3 else var_g
    cov_gp = box(g_b * p) - mean_g_b * mean_p
    a = cov_gp / (var_g_b + eps)
    b = mean_p - a * mean_g_b
    return box(a) * g_b + box(b)


@register_fuser("average")
class AverageFuser(Fuser):
    """Pixel-wise mean of the two sources."""

    name = "average"

    def fuse(self, a: np.ndarray, b: np.ndarray, task: str = "vif") -> np.ndarray:
        self.check_task(task)
        check_pair(a, b, self.name)
        # Integer arithmetic: exact, and halves round up (the float rint would round them to even).
        return ((a.astype(np.uint16) + b.astype(np.uint16) + 1) // 2).astype(np.uint8)


@register_fuser("maximum")
class MaximumFuser(Fuser):
    """Per-pixel, per-channel maximum ("choose max")."""

    name = "maximum"

    def fuse(self, a: np.ndarray, b: np.ndarray, task: str = "vif") -> np.ndarray:
        self.check_task(task)
        check_pair(a, b, self.name)
        return np.maximum(a, b)


@register_fuser("laplacian")
class LaplacianPyramidFuser(Fuser):
    """Laplacian-pyramid fusion: the coarsest Gaussian level is averaged, each detail level keeps the coefficient
    with the larger magnitude.

    Args:
        levels: number of detail levels (the pyramid is shortened for small images so that every level is >= 8 px).
    """

    name = "laplacian"

    def __init__(self, levels: int = 4) -> None:
        if int(levels) < 1:
            raise ConfigError(f"laplacian: levels must be >= 1, got {levels}")
        self.levels = int(levels)

    def settings(self) -> dict[str, Any]:
        return {"levels": self.levels}

    def _n_levels(self, h: int, w: int) -> int:
        n = 0
        while n < self.levels and min(h, w) >> (n + 1) >= 8:
            n += 1
        return n

    @staticmethod
    def _pyramid(img: np.ndarray, n: int) -> list[np.ndarray]:
        pyr = []
        cur = img
        for _ in range(n):
            down = cv2.pyrDown(cur)
            up = cv2.pyrUp(down, dstsize=(cur.shape[1], cur.shape[0]))
            pyr.append(cur - up)
            cur = down
        pyr.append(cur)
        return pyr

    def fuse(self, a: np.ndarray, b: np.ndarray, task: str = "vif") -> np.ndarray:
        self.check_task(task)
        check_pair(a, b, self.name)
        n = self._n_levels(*a.shape[:2])
        pa = self._pyramid(a.astype(np.float32), n)
        pb = self._pyramid(b.astype(np.float32), n)
        fused = [_select_abs_max(x, y) for x, y in zip(pa[:-1], pb[:-1])]
        cur = 0.5 * (pa[-1] + pb[-1])
        for detail in reversed(fused):
            cur = cv2.pyrUp(cur, dstsize=(detail.shape[1], detail.shape[0])) + detail
        return _to_uint8(cur)


@register_fuser("dwt")
class DWTFuser(Fuser):
    """Discrete-wavelet fusion: approximation averaged, detail coefficients by maximum magnitude.

    Args:
        wavelet: any PyWavelets discrete wavelet name.
        levels: decomposition depth (capped by what the image size allows).
    """

    name = "dwt"

    def __init__(self, wavelet: str = "db2", levels: int = 3) -> None:
        if wavelet not in pywt.wavelist(kind="discrete"):
            raise ConfigError(f"dwt: unknown discrete wavelet {wavelet!r}")
        if int(levels) < 1:
            raise ConfigError(f"dwt: levels must be >= 1, got {levels}")
        self.wavelet = wavelet
        self.levels = int(levels)

    def settings(self) -> dict[str, Any]:
        return {"wavelet": self.wavelet, "levels": self.levels}

    def fuse(self, a: np.ndarray, b: np.ndarray, task: str = "vif") -> np.ndarray:
        self.check_task(task)
        check_pair(a, b, self.name)
        h, w = a.shape[:2]
        level = max(1, min(self.levels, pywt.dwtn_max_level((h, w), self.wavelet)))
        ca = pywt.wavedec2(a.astype(np.float64), self.wavelet, level=level, axes=(0, 1))
        cb = pywt.wavedec2(b.astype(np.float64), self.wavelet, level=level, axes=(0, 1))
        fused: list[Any] = [0.5 * (ca[0] + cb[0])]
        for da, db in zip(ca[1:], cb[1:]):
            fused.append(tuple(_select_abs_max(x, y) for x, y in zip(da, db)))
        out = pywt.waverec2(fused, self.wavelet, axes=(0, 1))
        return _to_uint8(out[:h, :w])


@register_fuser("gff")
class GFFFuser(Fuser):
    """Guided-filter fusion (Li, Kang & Hu, "Image fusion with guided filtering", IEEE TIP 2013).

    Each source is split into a base layer (``avg_size`` mean filter) and a detail layer. Saliency is the
    Gaussian-smoothed absolute Laplacian of the source's luma; the binary "most salient" maps are refined by a guided
    filter (guide = the source's luma) with ``(r1, eps1)`` for the base and ``(r2, eps2)`` for the detail weights.
    Defaults are the paper's (r1=45, eps1=0.3, r2=7, eps2=1e-6, on images scaled to [0, 1]).
    """

    name = "gff"

    def __init__(
        self, r1: int = 45, eps1: float = 0.3, r2: int = 7, eps2: float = 1e-6, avg_size: int = 31
    ) -> None:
        self.r1, self.eps1, self.r2, self.eps2 = int(r1), float(eps1), int(r2), float(eps2)
        self.avg_size = int(avg_size)

    def settings(self) -> dict[str, Any]:
        return {"r1": self.r1, "eps1": self.eps1, "r2": self.r2, "eps2": self.eps2, "avg_size": self.avg_size}

    def fuse(self, a: np.ndarray, b: np.ndarray, task: str = "vif") -> np.ndarray:
        self.check_task(task)
        check_pair(a, b, self.name)
        srcs = [a.astype(np.float32) / 255.0, b.astype(np.float32) / 255.0]
        grays = [x @ _LUMA for x in srcs]
        k = (self.avg_size, self.avg_size)
        bases = [cv2.blur(x, k, borderType=cv2.BORDER_REPLICATE) for x in srcs]
        details = [x - base for x, base in zip(srcs, bases)]
        lap = [np.abs(cv2.Laplacian(g, cv2.CV_32F, ksize=1)) for g in grays]
        sal = [cv2.GaussianBlur(x, (11, 11), 5, borderType=cv2.BORDER_REPLICATE) for x in lap]
        pick_a = (sal[0] >= sal[1]).astype(np.float32)
        masks = [pick_a, 1.0 - pick_a]
        wb = [np.clip(guided_filter(g, m, self.r1, self.eps1), 0, None) for g, m in zip(grays, masks)]
        wd = [np.clip(guided_filter(g, m, self.r2, self.eps2), 0, None) for g, m in zip(grays, masks)]
        sb = wb[0] + wb[1] + 1e-12
        sd = wd[0] + wd[1] + 1e-12
        fused = ((wb[0] / sb)[:, :, None] * bases[0] + (wb[1] / sb)[:, :, None] * bases[1]) + (
            (wd[0] / sd)[:, :, None] * details[0] + (wd[1] / sd)[:, :, None] * details[1]
        )
        return _to_uint8(fused * 255.0)


@register_fuser("mertens")
class MertensFuser(Fuser):
    """Exposure fusion (Mertens et al. 2007) with OpenCV's implementation.

    Args:
        contrast_weight, saturation_weight, exposure_weight: exponents of the three quality measures.
    """

    name = "mertens"

    def __init__(self, contrast_weight: float = 1.0, saturation_weight: float = 1.0, exposure_weight: float = 1.0):
        self.weights = (float(contrast_weight), float(saturation_weight), float(exposure_weight))
        self._merge = cv2.createMergeMertens(*self.weights)

    def settings(self) -> dict[str, Any]:
        c, s, e = self.weights
        return {"contrast_weight": c, "saturation_weight": s, "exposure_weight": e}

    def fuse(self, a: np.ndarray, b: np.ndarray, task: str = "vif") -> np.ndarray:
        self.check_task(task)
        check_pair(a, b, self.name)
        # OpenCV's saturation measure is channel-order agnostic, so RGB can be passed as is.
        out = self._merge.process([np.ascontiguousarray(a), np.ascontiguousarray(b)])
        return _to_uint8(out * 255.0)


@register_fuser("focus")
class FocusFuser(Fuser):
    """Multi-focus fusion by focus-measure selection.

    Focus measure: the local energy of the luma Laplacian in a ``window`` x ``window`` box. Each pixel is taken from
    the source with the larger measure; the binary decision map is then cleaned by a ``majority`` x ``majority``
    majority (median) filter so that isolated wrong choices in flat regions do not show.
    """

    name = "focus"

    def __init__(self, window: int = 9, majority: int = 15) -> None:
        if int(window) < 1 or int(majority) < 1 or int(majority) % 2 == 0:
            raise ConfigError(f"focus: window must be >= 1 and majority an odd number >= 1, got {window}, {majority}")
        self.window = int(window)
        self.majority = int(majority)

    def settings(self) -> dict[str, Any]:
        return {"window": self.window, "majority": self.majority}

    def decision_map(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        """(H, W) bool map, True where ``a`` is in focus."""
        k = (self.window, self.window)
        fm = [
            cv2.blur(cv2.Laplacian(_gray(x), cv2.CV_32F, ksize=1) ** 2, k, borderType=cv2.BORDER_REFLECT)
            for x in (a, b)
        ]
        pick = (fm[0] >= fm[1]).astype(np.uint8) * 255
        if self.majority > 1:
            # cv2.medianBlur on uint8 allows any odd size; on a 0/255 map it is exactly a majority vote.
            pick = cv2.medianBlur(pick, self.majority)
        return pick > 127

    def fuse(self, a: np.ndarray, b: np.ndarray, task: str = "mff") -> np.ndarray:
        self.check_task(task)
        check_pair(a, b, self.name)
        return np.where(self.decision_map(a, b)[:, :, None], a, b)
