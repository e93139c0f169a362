"""Edge-preservation metrics: Qabf (Xydeas & Petrovic 2000) and Nabf (Shreyamsha Kumar's modified artefact measure).

Both compare Sobel edge strength and orientation of each source with the fused image. The reference MATLAB code
special-cases exact equalities of gradient magnitudes, so the gradients are computed with MATLAB's summation order
(:func:`fusion.metrics._ops.conv2`); results are then bit-compatible with the MATLAB code on every scale.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

from fusion.metrics._ops import conv2, on_distinct_planes, sqrt, use_compiled
from fusion.metrics._parallel import parallel_map

__all__ = ["qabf", "nabf"]

_H1 = np.array([[1.0, 2.0, 1.0], [0.0, 0.0, 0.0], [-1.0, -2.0, -1.0]])
_H3 = np.array([[-1.0, 0.0, 1.0], [-2.0, 0.0, 2.0], [-1.0, 0.0, 1.0]])


def _strength_orientation(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    sx = conv2(x, _H3, "same")
    sy = conv2(x, _H1, "same")
    g = sqrt(sx * sx + sy * sy)
    safe = torch.where(sx == 0, torch.ones_like(sx), sx)
    a = torch.where(sx == 0, torch.full_like(sx, math.pi / 2), torch.atan(sy / safe))
    return g, a


def qabf(
    a: torch.Tensor,
    b: torch.Tensor,
    fused: torch.Tensor,
    *,
    tg: float = 0.9994,
    kg: float = -15.0,
    dg: float = 0.5,
    ta: float = 0.9879,
    ka: float = -22.0,
    da: float = 0.8,
) -> torch.Tensor:
    r"""Qabf, gradient-based fusion performance (Xydeas & Petrovic), as in ``analysis_Qabf.m``.

    With Sobel strength :math:`g` and orientation :math:`\alpha = \arctan(s_y / s_x)` (:math:`\pi/2` where
    :math:`s_x = 0`) of each image (``conv2(.., 'same')``, zero borders):

    * :math:`G^{AF} = g_F/g_A` if :math:`g_A > g_F`, :math:`g_A/g_F` if :math:`g_A < g_F` and — a quirk of the
      reference code that makes Qabf depend on the image scale — :math:`g_F` itself where :math:`g_A = g_F`;
    * :math:`A^{AF} = 1 - |\alpha_A - \alpha_F| / (\pi/2)`;
    * :math:`Q^{AF} = \frac{T_g}{1 + e^{k_g (G^{AF} - D_g)}} \cdot \frac{T_a}{1 + e^{k_a (A^{AF} - D_a)}}`;
    * :math:`Q^{AB/F} = \sum (Q^{AF} g_A + Q^{BF} g_B) / \sum (g_A + g_B)`.
    """
    if use_compiled(fused):
        return _qabf_cpu(a, b, fused, (tg, kg, dg, ta, ka, da))
    ga, aa = _strength_orientation(a)
    gb, ab = _strength_orientation(b)
    gf, af = _strength_orientation(fused)

    def preservation(g: torch.Tensor, ang: torch.Tensor) -> torch.Tensor:
        big = torch.where(g > gf, g, torch.ones_like(g))
        small = torch.where(gf > g, gf, torch.ones_like(gf))
        rel = torch.where(g > gf, gf / big, torch.where(g == gf, gf, g / small))
        align = 1 - torch.abs(ang - af) / (math.pi / 2)
        qg = tg / (1 + torch.exp(kg * (rel - dg)))
        qa = ta / (1 + torch.exp(ka * (align - da)))
        return qg * qa

    num = (preservation(ga, aa) * ga + preservation(gb, ab) * gb).sum(dim=(1, 2))
    return num / (ga + gb).sum(dim=(1, 2))


def _qabf_cpu(a: torch.Tensor, b: torch.Tensor, fused: torch.Tensor, params: tuple[float, ...]) -> torch.Tensor:
    """:func:`qabf` on CPU: compiled passes for the Sobel responses and the per-pixel arithmetic, numpy's vectorised
    ``arctan``/``exp`` in between and numpy's sums, all in the images' dtype."""
    from fusion.metrics._kernels import qabf_exponents, qabf_maps, sobel_strength

    dt = np.float32 if fused.dtype == torch.float32 else np.float64
    p = np.array([*params, math.pi / 2, 1.0], dtype=dt)

    def strength(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        xp = np.pad(x.astype(dt, copy=False), ((0, 0), (1, 1), (1, 1)))
        g = np.empty(x.shape, dt)
        t = np.empty(x.shape, dt)
        sobel_strength(xp, g, t)
        return g, np.arctan(t, out=t)

    gf, af = strength(fused.detach().numpy())

    def source(x: torch.Tensor) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        g, ang = on_distinct_planes(strength, x.detach().numpy())  # a grey source on colour planes: once
        eg, ea = np.empty_like(g), np.empty_like(g)
        qabf_exponents(g, ang, gf, af, p, eg, ea)
        return g, np.exp(eg, out=eg), np.exp(ea, out=ea)

    (ga, ega, eaa), (gb, egb, eab) = parallel_map(source, [a, b], pixels=a.numel())
    num, den = qabf_maps(ga, ega, eaa, gb, egb, eab, p)
    # numpy's pairwise sums of each image's maps, in the images' dtype: what the CDDFuse Evaluator does in float32
    q = np.array([n.sum() / d.sum() for n, d in zip(num, den, strict=True)], dtype=dt)
    return torch.from_numpy(q)


def _sobel_reflect(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``sobel_fn.m``: correlation with Sobel/8 on a reflect-101 extended image, 3x3 products summed column-wise."""
    xp = F.pad(x[:, None], (1, 1, 1, 1), mode="reflect")[:, 0]
    h, w = x.shape[1:]
    vt = np.array([[-1.0, 0.0, 1.0], [-2.0, 0.0, 2.0], [-1.0, 0.0, 1.0]]) / 8
    ht = np.array([[-1.0, -2.0, -1.0], [0.0, 0.0, 0.0], [1.0, 2.0, 1.0]]) / 8

    def corr(k: np.ndarray) -> torch.Tensor:
        cols = []
        for v in range(3):
            c = None
            for u in range(3):
                term = xp[:, u : u + h, v : v + w] * k[u, v]
                c = term if c is None else c + term
            cols.append(c)
        return (cols[0] + cols[1]) + cols[2]

    return corr(vt), corr(ht)


def nabf(
    fused: torch.Tensor,
    a: torch.Tensor,
    b: torch.Tensor,
    *,
    td: float = 2.0,
    wt_min: float = 0.001,
    lg: float = 1.5,
    nrg: float = 0.9999,
    kg: float = 19.0,
    sigmag: float = 0.5,
    nra: float = 0.9995,
    ka: float = 22.0,
    sigmaa: float = 0.5,
) -> torch.Tensor:
    r"""Nabf, modified fusion-artefact measure (Shreyamsha Kumar 2013) as in ``analysis_nabf.m``.

    Edge preservation :math:`Q^{AF} = \sqrt{Q_g^{AF} Q_\alpha^{AF}}` with logistic functions of the relative strength
    and orientation; weights :math:`w_A = g_A^{L_g}` where :math:`g_A \ge T_d`, else :math:`w_{min}`;
    :math:`N^{AB/F} = \sum_{g_F > g_A, g_F > g_B} \left[(1 - Q^{AF}) w_A + (1 - Q^{BF}) w_B\right] / \sum (w_A + w_B)`.
    ``td`` is on the image's own scale (the reference code applies 2 to whatever scale it is given).
    """
    if use_compiled(fused):
        return _nabf_cpu(fused, a, b, (td, wt_min, lg, nrg, kg, sigmag, nra, ka, sigmaa))
    gva, gha = _sobel_reflect(a)
    gvb, ghb = _sobel_reflect(b)
    gvf, ghf = _sobel_reflect(fused)
    ga = sqrt(gha * gha + gva * gva)
    gb = sqrt(ghb * ghb + gvb * gvb)
    gf = sqrt(ghf * ghf + gvf * gvf)

    def rel(g: torch.Tensor) -> torch.Tensor:
        zero = (g == 0) | (gf == 0)
        one = torch.ones_like(g)
        r = torch.where(g > gf, gf / torch.where(g > gf, g, one), g / torch.where(gf == 0, one, gf))
        return torch.where(zero, torch.zeros_like(g), r)

    def orient(gv: torch.Tensor, gh: torch.Tensor) -> torch.Tensor:
        both0 = (gv == 0) & (gh == 0)
        return torch.where(both0, torch.zeros_like(gv), torch.atan(gv / torch.where(both0, torch.ones_like(gh), gh)))

    aa, ab, af = orient(gva, gha), orient(gvb, ghb), orient(gvf, ghf)
    aaf = torch.abs(torch.abs(aa - af) - math.pi / 2) * 2 / math.pi
    abf = torch.abs(torch.abs(ab - af) - math.pi / 2) * 2 / math.pi
    qaf = torch.sqrt(nrg / (1 + torch.exp(-kg * (rel(ga) - sigmag))) * (nra / (1 + torch.exp(-ka * (aaf - sigmaa)))))
    qbf = torch.sqrt(nrg / (1 + torch.exp(-kg * (rel(gb) - sigmag))) * (nra / (1 + torch.exp(-ka * (abf - sigmaa)))))
    wa = torch.where(ga >= td, ga**lg, torch.full_like(ga, wt_min))
    wb = torch.where(gb >= td, gb**lg, torch.full_like(gb, wt_min))
    na = ((gf > ga) & (gf > gb)).to(ga.dtype)
    num = (na * ((1 - qaf) * wa + (1 - qbf) * wb)).sum(dim=(1, 2))
    return num / (wa + wb).sum(dim=(1, 2))


def _nabf_cpu(fused: torch.Tensor, a: torch.Tensor, b: torch.Tensor, params: tuple[float, ...]) -> torch.Tensor:
    """:func:`nabf` on CPU: compiled passes for the Sobel responses and the per-pixel arithmetic, numpy's vectorised
    ``arctan``/``exp``/``power`` in between (the same operations in float64)."""
    from fusion.metrics._kernels import nabf_exponents, nabf_sums, sobel_reflect_strength

    p = np.array(params, dtype=np.float64)
    td, wt_min, lg = params[:3]

    def strength(x: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
        xp = np.pad(x.detach().numpy().astype(np.float64, copy=False), ((0, 0), (1, 1), (1, 1)), mode="reflect")
        g = np.empty(x.shape)
        t = np.empty(x.shape)
        sobel_reflect_strength(xp, g, t)
        return g, np.arctan(t, out=t)

    gf, af = strength(fused)

    def source(x: torch.Tensor) -> tuple[np.ndarray, ...]:
        g, ang = strength(x)
        eg, ea = np.empty_like(g), np.empty_like(g)
        nabf_exponents(g, ang, gf, af, p, eg, ea)
        wts = np.where(g >= td, np.power(g, lg), wt_min)
        return g, wts, np.exp(eg, out=eg), np.exp(ea, out=ea)

    sa, sb = parallel_map(source, [a, b], pixels=a.numel())
    num, den = nabf_sums(*sa, *sb, gf, p)
    return torch.from_numpy(num / den)
