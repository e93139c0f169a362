"""Image statistics and reference-difference metrics: SD, SF, AG, EI, MSE, RMSE, PSNR, CC, SCD.

All functions take batches ``(B, H, W)`` of ``float64`` tensors on whatever scale the calling profile chose and
return ``(B,)``.
"""

from __future__ import annotations

import numpy as np
import torch

from fusion.metrics._ops import corr2, flat, gradient, imfilter_replicate, matlab_round, use_compiled

__all__ = [
    "standard_deviation",
    "standard_deviation_uint8",
    "spatial_frequency",
    "spatial_frequency_sum",
    "average_gradient",
    "average_gradient_mean",
    "edge_intensity",
    "mse",
    "root_sse_per_pixel",
    "correlation_coefficient",
    "scd",
]


def standard_deviation(x: torch.Tensor) -> torch.Tensor:
    r"""SD, population standard deviation :math:`\sqrt{\frac{1}{N}\sum (x - \mu)^2}`."""
    v = flat(x)
    return torch.sqrt(((v - v.mean(dim=1, keepdim=True)) ** 2).mean(dim=1))


def standard_deviation_uint8(x: torch.Tensor) -> torch.Tensor:
    r"""SD as the legacy MATLAB ``SD_evaluation`` computes it on a ``uint8`` image.

    ``F - u`` is a ``uint8`` (rounded half away, negative differences saturate to 0) and its square saturates at 255:
    :math:`\sqrt{\frac{1}{N}\sum \min(\mathrm{sat}(\mathrm{round}(F - \mu))^2, 255)}`. The result (about 8-10 on
    natural images) is not a standard deviation, but it is what many published tables report as "SD".
    """
    v = flat(x)
    d = matlab_round(v - v.mean(dim=1, keepdim=True)).clamp(0, 255)
    return torch.sqrt(torch.clamp(d * d, max=255).sum(dim=1) / v.shape[1])


def spatial_frequency(x: torch.Tensor) -> torch.Tensor:
    r"""SF, :math:`\sqrt{RF^2 + CF^2}` with :math:`RF^2` the mean of the squared vertical differences over the
    :math:`(H-1) \times W` pairs and :math:`CF^2` the mean of the squared horizontal ones over :math:`H \times (W-1)`.
    """
    rf = ((x[:, 1:, :] - x[:, :-1, :]) ** 2).mean(dim=(1, 2))
    cf = ((x[:, :, 1:] - x[:, :, :-1]) ** 2).mean(dim=(1, 2))
    return torch.sqrt(rf + cf)


def spatial_frequency_sum(x: torch.Tensor) -> torch.Tensor:
    r"""SF with both sums divided by :math:`H W` (Eskicioglu & Fisher; VIFB, MEFB)."""
    n = x.shape[1] * x.shape[2]
    rf = ((x[:, :, 1:] - x[:, :, :-1]) ** 2).sum(dim=(1, 2)) / n
    cf = ((x[:, 1:, :] - x[:, :-1, :]) ** 2).sum(dim=(1, 2)) / n
    return torch.sqrt(rf + cf)


def average_gradient(x: torch.Tensor) -> torch.Tensor:
    r"""AG, :math:`\frac{1}{(H-1)(W-1)} \sum \sqrt{(g_x^2 + g_y^2)/2}` with MATLAB ``gradient`` (central differences
    inside, one-sided at the border), summed over all :math:`H W` pixels.
    """
    return _gradient_magnitude_sum(x) / ((x.shape[1] - 1) * (x.shape[2] - 1))


def average_gradient_mean(x: torch.Tensor) -> torch.Tensor:
    r"""AG as the CDDFuse ``Evaluator`` computes it: :math:`\operatorname{mean} \sqrt{(g_x^2 + g_y^2)/2}` over all
    :math:`H W` pixels, with the same central/one-sided differences as MATLAB ``gradient``."""
    return _gradient_magnitude_sum(x) / (x.shape[1] * x.shape[2])


def _gradient_magnitude_sum(x: torch.Tensor) -> torch.Tensor:
    if use_compiled(x):
        from fusion.metrics._kernels import gradient_magnitude_sum

        return torch.from_numpy(gradient_magnitude_sum(np.ascontiguousarray(x.detach().numpy())))
    gx, gy = gradient(x)
    return torch.sqrt((gx * gx + gy * gy) / 2).sum(dim=(1, 2))


_SOBEL = np.array([[1.0, 2.0, 1.0], [0.0, 0.0, 0.0], [-1.0, -2.0, -1.0]])


def edge_intensity(x: torch.Tensor) -> torch.Tensor:
    r"""EI, mean Sobel gradient magnitude :math:`\overline{\sqrt{g_x^2 + g_y^2}}` with replicate borders
    (``imfilter(x, fspecial('sobel'), 'replicate')`` and its transpose).
    """
    if use_compiled(x):
        from fusion.metrics._kernels import sobel_magnitude_mean

        # The kernel's Sobel pair is -_SOBEL.T and -_SOBEL: the same magnitudes.
        return torch.from_numpy(sobel_magnitude_mean(np.pad(x.detach().numpy(), ((0, 0), (1, 1), (1, 1)), mode="edge")))
    gx = imfilter_replicate(x, _SOBEL)
    gy = imfilter_replicate(x, _SOBEL.T.copy())
    return torch.sqrt(gx * gx + gy * gy).mean(dim=(1, 2))


def mse(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    r"""Mean squared error :math:`\frac{1}{N}\sum (a - b)^2`."""
    return ((flat(a) - flat(b)) ** 2).mean(dim=1)


def root_sse_per_pixel(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    r"""VIFB's ``mse`` helper, :math:`\sqrt{\sum (a - b)^2} / N` (neither an MSE nor an RMSE, but what VIFB's RMSE and
    PSNR are built on)."""
    return torch.sqrt(((flat(a) - flat(b)) ** 2).sum(dim=1)) / flat(a).shape[1]


def correlation_coefficient(a: torch.Tensor, b: torch.Tensor, fused: torch.Tensor) -> torch.Tensor:
    r"""CC, mean of the Pearson correlations :math:`(r_{AF} + r_{BF}) / 2`."""
    return (corr2(a, fused) + corr2(b, fused)) / 2


def scd(a: torch.Tensor, b: torch.Tensor, fused: torch.Tensor) -> torch.Tensor:
    r"""SCD, sum of the correlations of differences (Aslantas & Bendes 2015):
    :math:`r(F - B, A) + r(F - A, B)`."""
    return corr2(fused - b, a) + corr2(fused - a, b)
