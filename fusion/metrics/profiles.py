"""The built-in metric profiles: ``tang``, ``tang_legacy``, ``vifb``, ``mefb``, ``cddfuse`` and ``artefacts``.

Each profile reproduces one reference implementation, quirks included; the conventions are listed in
``Profile.conventions`` and in the metrics README. ``A`` and ``B`` below are the two sources (ir, vis), ``F`` the
fused image.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch

from fusion.metrics import artefacts as art
from fusion.metrics import information as info
from fusion.metrics import statistics as st
from fusion.metrics._ops import RGB2GRAY_WEIGHTS
from fusion.metrics.fmi import fmi
from fusion.metrics.gradient import nabf, qabf
from fusion.metrics.perceptual import normalize1, qcb, qcv, qp, vif_pixel_pair, vif_pixel_sum, viff
from fusion.metrics.registry import MetricDef, Profile, Sample, register_profile
from fusion.metrics.structural import (
    mef_ms_ssim,
    mef_ssim,
    q_cvejic,
    q_piella_edge,
    q_yang,
    ssim_matlab_sum,
    ssim_skimage_float32_sum,
    ssim_sum,
)

Fn3 = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]


def gray(fn: Fn3) -> Callable[[Sample], torch.Tensor]:
    """Lift ``fn(F, A, B) -> (N,)`` on ``(N, H, W)`` grey planes to a sample of a grey profile."""

    def run(s: Sample) -> torch.Tensor:
        return fn(s.fused[:, 0], s.ir[:, 0], s.vis[:, 0])

    return run


def per_channel(fn: Fn3) -> Callable[[Sample], torch.Tensor]:
    """Lift ``fn(F, A, B)`` to run on every colour channel and average the channel values (VIFB/MEFB style)."""

    def run(s: Sample) -> torch.Tensor:
        n, c = s.fused.shape[:2]
        f, a, b = s.planes()
        return fn(f, a, b).reshape(n, c).mean(dim=1)

    return run


def _m(name: str, fn: Callable[[Sample], torch.Tensor], doc: str, higher: bool = True) -> MetricDef:
    return MetricDef(name=name, fn=fn, higher_is_better=higher, doc=doc)


def _psnr_from_mse01(m: torch.Tensor) -> torch.Tensor:
    return 20 * torch.log10(255 / torch.sqrt(m))


def _mse01(f: torch.Tensor, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return 0.5 * st.mse(f / 255, a / 255) + 0.5 * st.mse(f / 255, b / 255)


def _stack(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return torch.stack([a, b], dim=1)


# --------------------------------------------------------------------------------------------------------------------
# tang_legacy
# --------------------------------------------------------------------------------------------------------------------

_LEGACY = {
    "EN": _m("EN", gray(lambda f, a, b: info.entropy(f)), "entropy of F, bits"),
    "SF": _m("SF", gray(lambda f, a, b: st.spatial_frequency(f / 255)), "spatial frequency of F on [0, 1]"),
    "SD": _m("SD", gray(lambda f, a, b: st.standard_deviation_uint8(f)), "uint8-saturated 'standard deviation'"),
    "PSNR": _m("PSNR", gray(lambda f, a, b: _psnr_from_mse01(_mse01(f, a, b))), "20 log10(255 / sqrt(MSE[0,1]))"),
    "MSE": _m("MSE", gray(_mse01), "mean of the two MSEs on [0, 1]", higher=False),
    "MI": _m(
        "MI",
        gray(lambda f, a, b: info.mutual_information(a, f, merge_top=True) + info.mutual_information(b, f, merge_top=True)),  # noqa: E501
        "MI(A,F) + MI(B,F) in bits, joint-histogram levels 254/255 merged",
    ),
    "VIF": _m(
        "VIF",
        gray(lambda f, a, b: sum(vif_pixel_pair(a, b, f, saturate_uint8=True))),
        "VIF(A,F) + VIF(B,F), first-scale products saturated as uint8",
    ),
    "AG": _m("AG", gray(lambda f, a, b: st.average_gradient(f)), "average gradient on [0, 255]"),
    "CC": _m("CC", gray(lambda f, a, b: st.correlation_coefficient(a, b, f)), "(r(A,F) + r(B,F)) / 2"),
    "SCD": _m("SCD", gray(lambda f, a, b: st.scd(a, b, f)), "r(F-B, A) + r(F-A, B)"),
    "Qabf": _m("Qabf", gray(lambda f, a, b: qabf(a / 255, b / 255, f / 255)), "Qabf on [0, 1]"),
    "Nabf": _m("Nabf", gray(lambda f, a, b: nabf(f / 255, a / 255, b / 255)), "Nabf on [0, 1]", higher=False),
    "SSIM": _m("SSIM", gray(lambda f, a, b: mef_ssim(_stack(a, b), f)), "MEF-SSIM of F against (A, B)"),
    "MS_SSIM": _m("MS_SSIM", gray(lambda f, a, b: mef_ms_ssim(_stack(a, b), f)), "MEF-MS-SSIM, 3 scales"),
    "FMI_pixel": _m(
        "FMI_pixel",
        gray(lambda f, a, b: fmi(a, b, f, feature="edge")),
        "FMI with analysis_fmi's default feature, which is the Sobel edge map (not raw pixels)",
    ),
    "FMI_dct": _m("FMI_dct", gray(lambda f, a, b: fmi(a, b, f, feature="dct")), "FMI on DCT features"),
    "FMI_w": _m("FMI_w", gray(lambda f, a, b: fmi(a, b, f, feature="wavelet")), "FMI on dmey wavelet features"),
}

register_profile(
    Profile(
        name="tang_legacy",
        description=(
            "Legacy Linfeng-Tang/Evaluation-for-Image-Fusion MATLAB code (SeAFusion era), which produced many "
            "published IR-VIS tables (incl. TC-MoA's)."
        ),
        color="gray",
        metrics=_LEGACY,
        default=("EN", "SF", "SD", "PSNR", "MSE", "MI", "VIF", "AG", "CC", "SCD", "Qabf"),
        conventions=(
            "gray via MATLAB rgb2gray weights (0.298936021293775, 0.587043074451121, 0.114020904255103), rounded",
            "EN, MI, SD, AG, VIF on uint8 values; SF, PSNR, MSE, CC, SCD, Qabf, Nabf on [0, 1]",
            "SD through uint8 saturating arithmetic: sqrt(sum(min(sat_u8(round(F - mean))^2, 255)) / N)",
            "MI in bits, summed over the two sources, joint histogram with grey levels 254 and 255 merged",
            "VIF summed over the two sources, first-scale squares/products saturated at 255",
            "PSNR = 10 log10(255^2 / MSE) with MSE on [0, 1] (the mean of the two sources' MSEs)",
            "SSIM and MS_SSIM are MEF-SSIM / MEF-MS-SSIM of F against the source pair",
            "FMI_pixel uses analysis_fmi's default feature, the Sobel edge map; FMI_dct/FMI_w: DCT/dmey features",
        ),
    )
)

# --------------------------------------------------------------------------------------------------------------------
# tang
# --------------------------------------------------------------------------------------------------------------------

_TANG = {
    "EN": _m("EN", gray(lambda f, a, b: info.entropy(f)), "entropy of F, bits"),
    "SF": _m("SF", gray(lambda f, a, b: st.spatial_frequency(f)), "spatial frequency on [0, 255]"),
    "SD": _m("SD", gray(lambda f, a, b: st.standard_deviation(f)), "standard deviation on [0, 255]"),
    "PSNR": _m("PSNR", gray(lambda f, a, b: _psnr_from_mse01(_mse01(f, a, b))), "20 log10(255 / sqrt(MSE[0,1]))"),
    "MSE": _m("MSE", gray(_mse01), "mean of the two MSEs on [0, 1]", higher=False),
    "MI": _m(
        "MI",
        gray(lambda f, a, b: info.mutual_information(a, f, merge_top=True) + info.mutual_information(b, f, merge_top=True)),  # noqa: E501
        "MI(A,F) + MI(B,F) in bits, joint histogram indexed by uint8(x) + 1 (levels 254/255 share a bin; Hab.m)",
    ),
    "VIF": _m("VIF", gray(lambda f, a, b: vif_pixel_sum(a, b, f)), "VIF(A,F) + VIF(B,F)"),
    "AG": _m("AG", gray(lambda f, a, b: st.average_gradient(f)), "average gradient on [0, 255]"),
    "CC": _m("CC", gray(lambda f, a, b: st.correlation_coefficient(a, b, f)), "(r(A,F) + r(B,F)) / 2"),
    "SCD": _m("SCD", gray(lambda f, a, b: st.scd(a, b, f)), "r(F-B, A) + r(F-A, B)"),
    "Qabf": _m("Qabf", gray(lambda f, a, b: qabf(a, b, f)), "Qabf on [0, 255]"),
    "Nabf": _m(
        "Nabf",
        gray(lambda f, a, b: nabf(a, b, f)),
        "what the toolbox reports: analysis_nabf(ir, vis, F), i.e. the infrared image in the fused image's place",
        higher=False,
    ),
    "Nabf_fixed": _m("Nabf_fixed", gray(lambda f, a, b: nabf(f, a, b)), "Nabf with F as the fused image", higher=False),
    "SSIM": _m(
        "SSIM",
        gray(lambda f, a, b: ssim_matlab_sum(f, [a, b], data_range=1.0) / 2),
        "(ssim(F,A) + ssim(F,B)) / 2 with MATLAB's ssim on doubles 0..255 and its default DynamicRange 1",
    ),
    "SSIM_wang": _m(
        "SSIM_wang", gray(lambda f, a, b: ssim_sum(f, [a, b]) / 2), "Wang's ssim_index (L=255, valid), averaged"
    ),
    "MS_SSIM": _m("MS_SSIM", gray(lambda f, a, b: mef_ms_ssim(_stack(a, b), f)), "MEF-MS-SSIM, 3 scales"),
    "FMI_pixel": _m(
        "FMI_pixel",
        gray(lambda f, a, b: fmi(a, b, f, feature="edge")),
        "FMI with analysis_fmi's default feature, which is the Sobel edge map (not raw pixels)",
    ),
    "FMI_raw": _m("FMI_raw", gray(lambda f, a, b: fmi(a, b, f, feature="none")), "FMI on raw pixels"),
    "FMI_dct": _m("FMI_dct", gray(lambda f, a, b: fmi(a, b, f, feature="dct")), "FMI on DCT features"),
    "FMI_w": _m("FMI_w", gray(lambda f, a, b: fmi(a, b, f, feature="wavelet")), "FMI on dmey wavelet features"),
}

register_profile(
    Profile(
        name="tang",
        description=(
            "Current Linfeng-Tang/Evaluation-for-Image-Fusion MATLAB code (sources and fused image as float "
            "[0, 255], EN/MI on uint8), the evaluation most IR-VIS papers use today."
        ),
        color="gray",
        metrics=_TANG,
        default=("EN", "SD", "SF", "MI", "SCD", "VIF", "Qabf", "Nabf", "SSIM", "AG", "CC", "PSNR", "MSE"),
        conventions=(
            "follows Linfeng-Tang/Evaluation-for-Image-Fusion at commit 0e87153, Evaluation/analysis_Reference.m as "
            "called by Evaluation_for_Single_Algorithm.m (img1 = infrared, img2 = visible)",
            "gray via MATLAB rgb2gray weights, rounded; every metric on float [0, 255] except MSE/PSNR on [0, 1]",
            "MI in bits (MI_evaluation.m): MATLAB entropy of each image plus Hab.m's joint histogram indexed by "
            "uint8(x) + 1, so grey levels 254 and 255 share a bin; summed over the two sources",
            "VIF summed over the two sources",
            "SSIM = (ssim(F, ir) + ssim(F, vis)) / 2 with MATLAB's built-in ssim on double images holding 0..255: its "
            "default DynamicRange 1 gives C1 = 1e-4 and C2 = 9e-4; Gaussian 11x11, sigma 1.5, replicate padding, mean "
            "of the whole map (SSIM_wang: the former Wang ssim_index variant)",
            "Nabf = analysis_nabf(ir, vis, F): analysis_nabf's signature is (f, I1, I2), so the toolbox scores the "
            "infrared image as if it were the fused one; that is the number papers using it report. Nabf_fixed is "
            "analysis_nabf(F, ir, vis)",
            "SD = population standard deviation; SF = sqrt(mean(dy^2) + mean(dx^2))",
            "PSNR = 10 log10(255^2 / MSE) with MSE on [0, 1] (as the MATLAB code normalises before PSNR)",
        ),
    )
)

# --------------------------------------------------------------------------------------------------------------------
# vifb
# --------------------------------------------------------------------------------------------------------------------


def _vifb_sf(s: Sample) -> torch.Tensor:
    # MATLAB's two-output size() of an m x n x 3 array gives n*3 columns: the channels sit side by side.
    wide = torch.cat([s.fused[:, k] for k in range(s.channels)], dim=2)
    return st.spatial_frequency_sum(wide)


def _vifb_psnr(f: torch.Tensor, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    m = (st.root_sse_per_pixel(a, f) + st.root_sse_per_pixel(b, f)) / 2
    return 20 * torch.log10(255 / torch.sqrt(m))


_VIFB = {
    "CE": _m(
        "CE",
        per_channel(lambda f, a, b: (info.cross_entropy(b, f) + info.cross_entropy(a, f)) / 2),
        "(CE(vis,F) + CE(ir,F)) / 2 in bits",
        higher=False,
    ),
    "EN": _m("EN", per_channel(lambda f, a, b: info.entropy(f)), "entropy of F"),
    "MI": _m(
        "MI",
        per_channel(lambda f, a, b: info.mutual_information_vifb_sum([b, a], f)),
        "MI(vis,F) + MI(ir,F) in nats, images min-max normalised",
    ),
    "PSNR": _m("PSNR", per_channel(_vifb_psnr), "20 log10(255 / sqrt(mean of sqrt(SSE)/N))"),
    "AG": _m("AG", per_channel(lambda f, a, b: st.average_gradient(f)), "average gradient"),
    "EI": _m("EI", per_channel(lambda f, a, b: st.edge_intensity(f)), "edge intensity (Sobel, replicate borders)"),
    "Qabf": _m("Qabf", per_channel(lambda f, a, b: qabf(b * 255, a * 255, f * 255)), "Qabf on [0, 255*255]"),
    "SD": _m("SD", per_channel(lambda f, a, b: st.standard_deviation(f)), "VIFB 'Variance' (a standard deviation)"),
    "SF": _m("SF", _vifb_sf, "spatial frequency of the H x 3W channel mosaic, sums / (H*3W)"),
    "RMSE": _m(
        "RMSE",
        per_channel(lambda f, a, b: (st.root_sse_per_pixel(b, f) + st.root_sse_per_pixel(a, f)) / 2),
        "(sqrt(SSE(vis,F)) + sqrt(SSE(ir,F))) / (2N)",
        higher=False,
    ),
    "SSIM": _m("SSIM", per_channel(lambda f, a, b: ssim_sum(f, [b, a])), "SSIM(vis,F) + SSIM(ir,F)"),
    "Qcb": _m("Qcb", per_channel(lambda f, a, b: qcb(b, a, f)), "Chen-Blum"),
    "Qcv": _m("Qcv", per_channel(lambda f, a, b: qcv(b, a, f)), "Chen-Varshney", higher=False),
}

VIFB_NAMES = {
    "Cross_entropy": "CE",
    "Entropy": "EN",
    "Mutinf": "MI",
    "Psnr": "PSNR",
    "Avg_gradient": "AG",
    "Edge_intensity": "EI",
    "Qabf": "Qabf",
    "Variance": "SD",
    "Spatial_frequency": "SF",
    "Rmse": "RMSE",
    "Ssim": "SSIM",
    "Qcb": "Qcb",
    "Qcv": "Qcv",
}
"""VIFB's own metric names -> the names used here."""

register_profile(
    Profile(
        name="vifb",
        description="VIFB toolbox (Zhang, Ye & Xiao, CVPRW 2020), 13 metrics computed per colour channel.",
        color="channels",
        metrics=_VIFB,
        default=tuple(_VIFB),
        conventions=(
            "per colour channel (a grey source is used for every channel), then averaged over channels",
            "'Variance' is a standard deviation (named SD here); SF on the H x 3W matrix MATLAB's size() gives",
            "MI in nats on min-max normalised images; CE in bits; SSIM summed over the two sources",
            "RMSE/PSNR built on sqrt(SSE)/N (not an MSE), PSNR = 20 log10(255 / sqrt(.))",
            "Qabf on 255 * the 0..255 values (VIFB applies im2double to doubles); this changes Qabf's equality case",
        ),
    )
)

# --------------------------------------------------------------------------------------------------------------------
# mefb
# --------------------------------------------------------------------------------------------------------------------


def _norm3(fn: Fn3) -> Fn3:
    """Apply Z. Liu's ``normalize1`` to the three images first (MEFB's NMI, QNCIE, TE do)."""

    def run(f: torch.Tensor, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return fn(normalize1(f), normalize1(a), normalize1(b))

    return run


def _mefb_ag(s: Sample) -> torch.Tensor:
    if "fused_gray_exact" in s.extra:
        return st.average_gradient(s.extra["fused_gray_exact"][:, 0])
    return per_channel(lambda f, a, b: st.average_gradient(f))(s)


def _mefb_mef_ssim(s: Sample) -> torch.Tensor:
    def g(x: torch.Tensor) -> torch.Tensor:
        if x.shape[1] == 1:
            return x[:, 0]
        w0, w1, w2 = RGB2GRAY_WEIGHTS
        return torch.floor(x[:, 0] * w0 + x[:, 1] * w1 + x[:, 2] * w2 + 0.5)

    fused = s.fused[:, 0] if "fused_gray_exact" not in s.extra else torch.floor(s.extra["fused_gray_exact"][:, 0] + 0.5)
    fused = g(s.fused) if "fused_gray_exact" not in s.extra else fused
    return mef_ms_ssim(_stack(g(s.vis), g(s.ir)), fused)


_MEFB = {
    "AG": _m("AG", _mefb_ag, "average gradient"),
    "CE": _m(
        "CE",
        per_channel(lambda f, a, b: (info.cross_entropy(b, f) + info.cross_entropy(a, f)) / 2),
        "(CE(A,F) + CE(B,F)) / 2 in bits",
        higher=False,
    ),
    "EI": _m("EI", per_channel(lambda f, a, b: st.edge_intensity(f)), "edge intensity"),
    "EN": _m("EN", per_channel(lambda f, a, b: info.entropy(f)), "entropy of F"),
    "FMI": _m("FMI", per_channel(lambda f, a, b: fmi(b, a, f, feature="edge")), "FMI on Sobel edge maps, 3x3 windows"),
    "MEF_SSIM": _m("MEF_SSIM", _mefb_mef_ssim, "MEF-MS-SSIM on MATLAB-grey images (Ma et al. 2015)"),
    "NMI": _m("NMI", per_channel(_norm3(lambda f, a, b: info.nmi(b, a, f))), "Hossny's normalised MI"),
    "PSNR": _m("PSNR", per_channel(_vifb_psnr), "20 log10(255 / sqrt(mean of sqrt(SSE)/N)) (as VIFB)"),
    "Qabf": _m("Qabf", per_channel(lambda f, a, b: qabf(b * 255, a * 255, f * 255)), "Qabf on [0, 255*255]"),
    "Qc": _m("Qc", per_channel(lambda f, a, b: q_cvejic(b, a, f)), "Cvejic's SSIM-based metric"),
    "Qcb": _m("Qcb", per_channel(lambda f, a, b: qcb(b, a, f)), "Chen-Blum"),
    "Qcv": _m("Qcv", per_channel(lambda f, a, b: qcv(b, a, f)), "Chen-Varshney", higher=False),
    "QP": _m("QP", per_channel(lambda f, a, b: qp(b, a, f)), "phase-congruency metric of Zhao et al."),
    "QNCIE": _m("QNCIE", per_channel(_norm3(lambda f, a, b: info.qncie(b, a, f))), "nonlinear correlation entropy"),
    "Qw": _m("Qw", per_channel(lambda f, a, b: q_piella_edge(b, a, f)), "Piella's index on edge images"),
    "Qy": _m("Qy", per_channel(lambda f, a, b: q_yang(b, a, f)), "Yang's SSIM-based metric"),
    "SD": _m("SD", per_channel(lambda f, a, b: st.standard_deviation(f)), "standard deviation"),
    "SF": _m("SF", per_channel(lambda f, a, b: st.spatial_frequency_sum(f)), "spatial frequency, sums / (H*W)"),
    "TE": _m(
        "TE",
        per_channel(_norm3(lambda f, a, b: info.tsallis_entropy(b, a, f))),
        "Tsallis entropy, q = 1.85",
    ),
    "VIF": _m("VIF", per_channel(lambda f, a, b: viff(b, a, f)), "VIFF of Han et al. 2013"),
}

register_profile(
    Profile(
        name="mefb",
        description="MEFB toolbox (Zhang, Information Fusion 2021) for multi-exposure fusion, per colour channel.",
        color="mefb",
        metrics=_MEFB,
        default=tuple(_MEFB),
        conventions=(
            "per colour channel, averaged; grey sources with a colour fused image: the fused image's first channel",
            "NMI, QNCIE, TE on images min-max normalised to 0..255 (normalize1); MI-type logs in bits",
            "VIF is Han et al.'s VIFF (not Sheikh's VIF); Qw is Piella's index on Prewitt edge images",
            "MEF_SSIM on MATLAB-grey images (3 scales); PSNR and Qabf as in VIFB",
        ),
    )
)

# --------------------------------------------------------------------------------------------------------------------
# cddfuse
# --------------------------------------------------------------------------------------------------------------------


def _cdd_mse(f: torch.Tensor, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return (st.mse(a, f) + st.mse(b, f)) / 2


def _cdd_psnr(f: torch.Tensor, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    peak = f.flatten(1).max(dim=1).values
    return 10 * torch.log10(peak * peak / _cdd_mse(f, a, b))


_CDDFUSE = {
    "EN": _m("EN", gray(lambda f, a, b: info.entropy(f)), "entropy of F, bits"),
    "SD": _m("SD", gray(lambda f, a, b: st.standard_deviation(f)), "standard deviation on [0, 255]"),
    "SF": _m("SF", gray(lambda f, a, b: st.spatial_frequency(f)), "sqrt(mean(dx^2) + mean(dy^2)) on [0, 255]"),
    "AG": _m("AG", gray(lambda f, a, b: st.average_gradient_mean(f)), "mean of sqrt((gx^2 + gy^2) / 2) over H*W"),
    "MI": _m(
        "MI",
        gray(lambda f, a, b: info.mutual_information(a, f, base=math.e) + info.mutual_information(b, f, base=math.e)),
        "MI(F,A) + MI(F,B) in nats",
    ),
    "MSE": _m("MSE", gray(_cdd_mse), "(MSE(A,F) + MSE(B,F)) / 2 on [0, 255]", higher=False),
    "CC": _m("CC", gray(lambda f, a, b: st.correlation_coefficient(a, b, f)), "(r(A,F) + r(B,F)) / 2"),
    "PSNR": _m("PSNR", gray(_cdd_psnr), "10 log10(max(F)^2 / MSE), MSE on [0, 255]"),
    "SCD": _m("SCD", gray(lambda f, a, b: st.scd(a, b, f)), "r(F-B, A) + r(F-A, B)"),
    "VIF": _m("VIF", gray(lambda f, a, b: vif_pixel_sum(a, b, f)), "VIF(A,F) + VIF(B,F) (its 'VIFF')"),
    "Qabf": _m(
        "Qabf",
        gray(lambda f, a, b: qabf(a.float(), b.float(), f.float()).double()),
        "Qabf on [0, 255], in float32 as the Evaluator computes it",
    ),
    "SSIM": _m(
        "SSIM",
        gray(lambda f, a, b: ssim_skimage_float32_sum(f, [a, b])),
        "SSIM(F,A) + SSIM(F,B), scikit-image 0.19 on float32, data range 2",
    ),
}

register_profile(
    Profile(
        name="cddfuse",
        description=(
            "The CDDFuse Python Evaluator (Zhaozixiang1228/MMIF-CDDFuse utils/Evaluator.py), copied by EMMA, "
            "IF-FILM, DDFM and others, with the scikit-image its repository pins (0.19.2)."
        ),
        color="opencv_gray",
        metrics=_CDDFUSE,
        default=tuple(_CDDFUSE),
        conventions=(
            "grey via OpenCV: np.round(cvtColor(float32 image, BGR2GRAY)), weights 0.299/0.587/0.114 in float32, "
            "round half to even; every metric on the 0..255 values",
            "EN in bits on uint8(round(F)); MI = MI(F,A) + MI(F,B) in nats (scikit-learn mutual_info_score of the "
            "grey levels); SD population; SF = sqrt(mean(dx^2) + mean(dy^2)); AG = mean of sqrt((gx^2+gy^2)/2) over "
            "all H*W pixels (MATLAB-style gradient)",
            "MSE = (MSE(A,F) + MSE(B,F)) / 2 on 0..255 (not normalised); PSNR = 10 log10(max(F)^2 / MSE): the peak is "
            "the fused image's maximum, not 255",
            "CC = (r(A,F) + r(B,F)) / 2; SCD = r(A, F-B) + r(B, F-A); Qabf as Xydeas-Petrovic on 0..255 with the "
            "g_A = g_F quirk, in float32 as the Evaluator (its Sobel responses are exact integers either way); "
            "VIF (the Evaluator's 'VIFF') = Sheikh's multi-scale pixel VIF(A,F) + VIF(B,F), "
            "sigma_n^2 = 2",
            "SSIM = SSIM(F,A) + SSIM(F,B) (a sum, up to 2) by scikit-image 0.19.2 on float32 images: data range 2 "
            "(the float dtype range), 7x7 uniform window, sample covariance, map cropped by 3, float32 arithmetic",
        ),
    )
)

# --------------------------------------------------------------------------------------------------------------------
# artefacts
# --------------------------------------------------------------------------------------------------------------------


def _ratio(num: torch.Tensor, den: torch.Tensor) -> torch.Tensor:
    return torch.where(den > 0, num / den.clamp(min=1e-300), torch.full_like(num, float("nan")))


_ARTEFACTS = {
    "Blockiness": _m("Blockiness", lambda s: art.blockiness(s.fused), "8x8 border / inside mean |gradient| of F, luma",
                     higher=False),
    "Blockiness_vs_sources": _m(
        "Blockiness_vs_sources",
        lambda s: _ratio(art.blockiness(s.fused), (art.blockiness(s.ir) + art.blockiness(s.vis)) / 2),
        "Blockiness(F) / mean of the two sources' (1 = no more blocky than the sources)",
        higher=False,
    ),
    "Chroma": _m("Chroma", lambda s: art.chroma(s.fused), "mean BT.601 sqrt(Cb^2 + Cr^2) of F"),
    "Chroma_kept": _m(
        "Chroma_kept",
        lambda s: _ratio(art.chroma(s.fused), torch.maximum(art.chroma(s.vis), art.chroma(s.ir))),
        "Chroma(F) / chroma of the more colourful source (1 = the visible colour kept)",
    ),
}

register_profile(
    Profile(
        name="artefacts",
        description="What a person sees: 8x8 block artefacts and lost colour (fusion.metrics.artefacts).",
        color="channels",
        metrics=_ARTEFACTS,
        default=tuple(_ARTEFACTS),
        conventions=(
            "colour kept (a grey fused image is scored grey, with grey sources: its Chroma is 0 and Chroma_kept "
            "undefined, NaN); grey sources count as chroma 0",
            "Blockiness on BT.601 luma: mean |gradient| across 8-pixel block borders over the mean inside blocks",
            "Chroma = mean sqrt(Cb^2 + Cr^2), BT.601, 0..255 scale",
        ),
    )
)
