"""Information-theoretic metrics: EN, MI, CE, NMI, QNCIE, TE.

All functions take batches ``(B, H, W)`` of ``float64`` tensors holding integer grey levels 0..255 (unless a
normalisation is stated) and return ``(B,)``.
"""

from __future__ import annotations

import math

import torch

from fusion.metrics._ops import entropy_bits, flat, hist256, joint_hist256, matlab_round, use_compiled

__all__ = [
    "entropy",
    "mutual_information",
    "mutual_information_vifb",
    "mutual_information_vifb_sum",
    "cross_entropy",
    "normalized_mutual_information",
    "nmi",
    "qncie",
    "tsallis_entropy",
]


def entropy(x: torch.Tensor) -> torch.Tensor:
    r"""EN, Shannon entropy of the 256-bin grey-level histogram in bits.

    :math:`EN = -\sum_{l=0}^{255} p_l \log_2 p_l` (MATLAB ``entropy`` of a ``uint8`` image; values are floored first,
    as VIFB's ``metricsEntropy`` does).
    """
    return entropy_bits(hist256(torch.floor(x)))


def mutual_information(
    src: torch.Tensor, fused: torch.Tensor, *, merge_top: bool = False, base: float = 2.0
) -> torch.Tensor:
    r"""MI between one source and the fused image: :math:`H(S) + H(F) - H(F, S)`, 256 grey levels.

    Args:
        src, fused: (B, H, W) grey levels 0..255.
        merge_top: reproduce the legacy MATLAB ``Hab`` bug: the joint histogram is indexed by ``uint8(x) + 1``, which
            saturates at 255, so grey levels 254 and 255 share one bin (the marginals are not affected).
        base: logarithm base (2: bits, e: nats).
    """
    hs = entropy_bits(hist256(src), base)
    hf = entropy_bits(hist256(fused), base)
    if merge_top:
        hj = entropy_bits(joint_hist256(fused.clamp(max=254), src.clamp(max=254)), base)
    else:
        hj = entropy_bits(joint_hist256(fused, src), base)
    return hs + hf - hj


def _vifb_normalise(x: torch.Tensor) -> torch.Tensor:
    """VIFB ``mutinf``'s min-max scaling to 0..255 (rounded half away); a constant image becomes zeros."""
    if use_compiled(x):
        from fusion.metrics._kernels import normalize1

        return torch.from_numpy(normalize1(x.detach().numpy(), True))
    lo = flat(x).min(dim=1).values[:, None, None]
    hi = flat(x).max(dim=1).values[:, None, None]
    rng = hi - lo
    scaled = torch.where(rng != 0, (x - lo) / torch.where(rng != 0, rng, torch.ones_like(rng)), torch.zeros_like(x))
    return matlab_round(scaled * 255)


def mutual_information_vifb(src: torch.Tensor, fused: torch.Tensor) -> torch.Tensor:
    """VIFB ``mutinf``: both images min-max normalised to 0..255 (rounded half away), MI in nats.

    A constant image is mapped to zeros.
    """
    return mutual_information_vifb_sum([src], fused)


def mutual_information_vifb_sum(sources: list[torch.Tensor], fused: torch.Tensor) -> torch.Tensor:
    """``sum(mutual_information_vifb(s, fused) for s in sources)`` (the same values), the fused image normalised and
    its entropy taken once."""
    f = _vifb_normalise(fused)
    hf = entropy_bits(hist256(f), math.e)
    total = None
    for src in sources:
        a = _vifb_normalise(src)
        mi = entropy_bits(hist256(a), math.e) + hf - entropy_bits(joint_hist256(f, a), math.e)
        total = mi if total is None else total + mi
    return total


def cross_entropy(src: torch.Tensor, fused: torch.Tensor) -> torch.Tensor:
    r"""CE of one source against the fused image (VIFB ``cross_entropy``), in bits.

    :math:`CE(S, F) = \sum_l p_S(l) \log_2 \frac{p_S(l)}{p_F(l)}`, summing only bins non-empty in both histograms.
    """
    ps = hist256(src)
    pf = hist256(fused)
    ps = ps / ps.sum(dim=1, keepdim=True)
    pf = pf / pf.sum(dim=1, keepdim=True)
    ok = (ps > 0) & (pf > 0)
    one = torch.ones_like(ps)
    term = torch.where(ok, ps * torch.log2(torch.where(ok, ps, one) / torch.where(ok, pf, one)), torch.zeros_like(ps))
    return term.sum(dim=1)


def normalized_mutual_information(src: torch.Tensor, fused: torch.Tensor, *, base: float = 2.0) -> torch.Tensor:
    r"""NMI term of Hossny et al.: :math:`2\,MI(S, F) / (H(S) + H(F))` with 256 grey levels."""
    hs = entropy_bits(hist256(src), base)
    hf = entropy_bits(hist256(fused), base)
    mi = hs + hf - entropy_bits(joint_hist256(fused, src), base)
    return 2.0 * mi / (hs + hf)


def _mi_bits(x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(MI, H(x), H(y)) in bits from the 256x256 joint histogram (marginals taken from the joint, as Z. Liu's
    ``mutual_info.m`` does)."""
    j = joint_hist256(x, y)
    hx = entropy_bits(j.sum(dim=2))
    hy = entropy_bits(j.sum(dim=1))
    return hx + hy - entropy_bits(j), hx, hy


def qncie(a: torch.Tensor, b: torch.Tensor, fused: torch.Tensor) -> torch.Tensor:
    r"""QNCIE, nonlinear correlation information entropy (Wang, Shen & Jin 2008), Z. Liu's ``metricWang.m``.

    The nonlinear correlation coefficients are MI normalised by :math:`\log_2 256`:
    :math:`NCC(X, Y) = (H_X + H_Y - H_{XY}) / 8`; with the eigenvalues :math:`\lambda_i` of
    :math:`R = \begin{pmatrix} 1 & NCC_{AB} & NCC_{AF} \\ \cdot & 1 & NCC_{BF} \\ \cdot & \cdot & 1\end{pmatrix}`,
    :math:`QNCIE = 1 + \sum_i \frac{\lambda_i}{3} \log_{256} \frac{\lambda_i}{3}`. Inputs: grey levels 0..255.
    """
    nab = _mi_bits(a, b)[0] / 8
    naf = _mi_bits(a, fused)[0] / 8
    nbf = _mi_bits(b, fused)[0] / 8
    r = torch.eye(3, dtype=torch.float64, device=a.device).repeat(a.shape[0], 1, 1)
    r[:, 0, 1] = r[:, 1, 0] = nab
    r[:, 0, 2] = r[:, 2, 0] = naf
    r[:, 1, 2] = r[:, 2, 1] = nbf
    lam = torch.linalg.eigvalsh(r)
    t = lam / 3.0
    pos = t > 0
    logt = torch.where(pos, torch.log2(torch.where(pos, t, torch.ones_like(t))), torch.zeros_like(t))
    return 1.0 + (t * logt).sum(dim=1) / 8


def nmi(a: torch.Tensor, b: torch.Tensor, fused: torch.Tensor) -> torch.Tensor:
    r"""NMI of Hossny et al. (2008), Z. Liu's ``metricMI.m`` (revised MI):
    :math:`2\left(\frac{MI(A,F)}{H(A) + H(F)} + \frac{MI(B,F)}{H(B) + H(F)}\right)`, bits, 256 grey levels."""
    mia, ha, hfa = _mi_bits(a, fused)
    mib, hb, hfb = _mi_bits(b, fused)
    return 2 * (mia / (ha + hfa) + mib / (hb + hfb))


def tsallis_entropy(a: torch.Tensor, b: torch.Tensor, fused: torch.Tensor, *, q: float = 1.85) -> torch.Tensor:
    r"""TE, Tsallis-entropy fusion metric (Cvejic et al. 2006) exactly as Z. Liu's ``tsallis`` in MEFB ``metricsTE``.

    :math:`I_q(X, F) = \frac{1}{1-q}\left(1 - \sum_{ij} \frac{p_{XF}(i,j)^q}{(p_F(i)\,p_X(j))^{q-1}}\right)`
    (note the reference pairs the joint bin :math:`(i, j)` with the marginals :math:`p_F(i) p_X(j)`, i.e. with swapped
    indices; reproduced here), summed over bins whose marginal product is non-zero; :math:`TE = I_q(A,F) + I_q(B,F)`.
    """
    out = torch.zeros(a.shape[0], dtype=torch.float64, device=a.device)
    for s in (a, b):
        j = joint_hist256(s, fused)
        j = j / j.sum(dim=(1, 2), keepdim=True)
        p_f = j.sum(dim=1)  # MATLAB sum(h): column sums -> distribution of the fused grey levels
        p_s = j.sum(dim=2)
        denom = p_f[:, :, None] * p_s[:, None, :]
        ok = denom != 0
        term = torch.where(ok, j**q / torch.where(ok, denom, torch.ones_like(denom)) ** (q - 1), torch.zeros_like(j))
        out = out + (1.0 - term.sum(dim=(1, 2))) / (1.0 - q)
    return out
