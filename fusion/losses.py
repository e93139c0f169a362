"""TC-MoA training losses, as the official code computes them (docs/tcmoa.md §3).

Every image argument is an RGB tensor ``(B, 3, H, W)`` in [0, 1] (not ImageNet-normalised). ``f`` is the fused
image, ``a`` and ``b`` the two sources (vif: a = visible, b = infrared; mef: a = over-exposed, b = under-exposed;
mff: a = far focus, b = near focus).

Components (each returns a scalar tensor):

=================== ====================================================================================
:func:`ssim`         single-scale SSIM, 11x11 Gaussian window (sigma 1.5), per channel, zero padding
:func:`pixel_loss`   ``3 * L1(f, (a + b) / 2)``
:func:`max_pixel_loss` ``L1(f, max(a, b))`` (the max is a constant target)
:func:`signed_gradient` the official signed Sobel-like response, summed over RGB into one channel
:func:`max_gradient_loss` ``3 * L1(grad f, J)``, J the source gradient with the larger magnitude per pixel
:func:`mef_ssim`     MEF-SSIM (Ma et al. 2015) with luminance term, batch stacked vertically (official quirk)
:func:`mff_target`   multi-focus target: per 16x16 patch, the source with the larger maximum Sobel magnitude
:func:`prompt_loss`  sum-to-one constraint on the two sources' dominant-intensity prompts
=================== ====================================================================================

:class:`FusionLoss` combines them into the per-task totals, with a warm-up switch at ``warmup_epochs`` and two named
weight presets: ``"current"`` (official HEAD, 2025-02-12 on) and ``"pre2025"`` (the earlier code).
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from fusion.errors import ConfigError
from fusion.tasks import TASK_INDEX, TASKS, task_index

__all__ = [
    "LOSS_PRESETS",
    "TASK_INDEX",
    "FusionLoss",
    "gaussian_window",
    "ssim",
    "ssim_loss_avg",
    "pixel_loss",
    "max_pixel_loss",
    "signed_gradient",
    "max_gradient_loss",
    "mef_ssim",
    "mff_target",
    "prompt_loss",
    "task_index",
]


# Loss weights per task and phase. Term names are the keys of ``FusionLoss.TERMS``; ``aux`` is the routing
# load-balancing sum from the model, divided by (epoch + 1) when the preset's ``aux_decay`` is true.
# Factors inside the official terms (3 in pixel and max-gradient) live in the term functions, not here.
LOSS_PRESETS: dict[str, dict[str, Any]] = {
    "current": {
        "aux_decay": True,
        "vif": {
            "warmup": {"pixel": 1.0, "prompt": 1.0, "ssim_avg": 1.0, "aux": 1.0},
            "main": {"max_grad": 1.5, "max_pixel": 1.5, "prompt": 1.0, "ssim_avg": 2.0, "aux": 1.0},
        },
        "mef": {
            "warmup": {"pixel": 1.0, "prompt": 1.0, "ssim_avg": 1.0, "aux": 1.0},
            # 1.8 * (MaxGrad + Lp + 2 (1 - MEF-SSIM) + Pix) + aux
            "main": {"max_grad": 1.8, "prompt": 1.8, "mef_ssim": 3.6, "pixel": 1.8, "aux": 1.0},
        },
        "mff": {
            "warmup": {"target_l1": 1.0, "prompt": 1.0, "target_ssim": 1.0, "aux": 1.0},
            "main": {"target_grad": 20.0, "target_l1": 20.0, "prompt": 1.0, "target_ssim": 3.0, "aux": 1.0},
        },
    },
    "pre2025": {
        "aux_decay": False,
        "vif": {
            "warmup": {"pixel": 1.0, "prompt": 20.0, "ssim_avg": 1.0, "aux": 1.0},
            "main": {"max_grad": 1.0, "max_pixel": 1.0, "prompt": 20.0, "ssim_avg": 0.5, "aux": 1.0},
        },
        "mef": {
            "warmup": {"pixel": 1.0, "prompt": 20.0, "ssim_avg": 1.0, "aux": 1.0},
            # 1.2 * (MaxGrad + 20 Lp + (1 - MEF-SSIM) + aux + Pix)
            "main": {"max_grad": 1.2, "prompt": 24.0, "mef_ssim": 1.2, "pixel": 1.2, "aux": 1.2},
        },
        "mff": {
            "warmup": {"target_l1": 1.0, "prompt": 20.0, "target_ssim": 1.0, "aux": 1.0},
            "main": {"target_grad": 5.0, "target_l1": 5.0, "prompt": 20.0, "target_ssim": 1.0, "aux": 1.0},
        },
    },
}

_GRAD_KX = ((-0.2, 0.0, 0.2), (-1.0, 0.0, 1.0), (-0.2, 0.0, 0.2))
_GRAD_KY = ((0.2, 1.0, 0.2), (0.0, 0.0, 0.0), (-0.2, -1.0, -0.2))
_SOBEL_X = ((-1.0, 0.0, 1.0), (-2.0, 0.0, 2.0), (-1.0, 0.0, 1.0))
_SOBEL_Y = ((1.0, 2.0, 1.0), (0.0, 0.0, 0.0), (-1.0, -2.0, -1.0))
_GRAY = (0.2989, 0.587, 0.114)


def _check_images(**images: Tensor | None) -> None:
    ref = None
    for name, img in images.items():
        if img is None:
            continue
        if not isinstance(img, Tensor) or img.ndim != 4:
            raise ValueError(f"{name} must be a tensor of shape (B, C, H, W), got {getattr(img, 'shape', type(img))}")
        if ref is None:
            ref = (name, img.shape)
        elif img.shape != ref[1]:
            raise ValueError(f"{name} has shape {tuple(img.shape)} but {ref[0]} has {tuple(ref[1])}")


def gaussian_window(size: int = 11, sigma: float = 1.5, *, dtype=torch.float32, device=None) -> Tensor:
    """Normalised 2-D Gaussian window ``(size, size)`` (the outer product of the 1-D one)."""
    x = torch.arange(size, dtype=torch.float64) - size // 2
    g = torch.exp(-(x**2) / (2.0 * sigma**2))
    g = g / g.sum()
    return torch.outer(g, g).to(dtype=dtype, device=device)


def _kernel(rows, channels: int, ref: Tensor) -> Tensor:
    k = torch.tensor(rows, dtype=ref.dtype, device=ref.device)
    return k.view(1, 1, 3, 3).repeat(1, channels, 1, 1)


# ---------------------------------------------------------------------------------------------------------------
# Components
# ---------------------------------------------------------------------------------------------------------------


def ssim(x: Tensor, y: Tensor, window_size: int = 11, sigma: float = 1.5) -> Tensor:
    """Mean single-scale SSIM of ``x`` and ``y`` ``(B, C, H, W)`` in [0, 1].

    Per channel (grouped convolution), zero padding ``window_size // 2``, C1 = 0.01^2, C2 = 0.03^2, averaged over
    every pixel, channel and sample (the official ``msssim_loss``, which despite its name is single-scale).
    """
    _check_images(x=x, y=y)
    c = x.shape[1]
    win = gaussian_window(window_size, sigma, dtype=x.dtype, device=x.device).expand(c, 1, window_size, window_size)
    pad = window_size // 2

    def blur(t: Tensor) -> Tensor:
        return F.conv2d(t, win, padding=pad, groups=c)

    mu_x, mu_y = blur(x), blur(y)
    mu_xx, mu_yy, mu_xy = mu_x * mu_x, mu_y * mu_y, mu_x * mu_y
    s_xx = blur(x * x) - mu_xx
    s_yy = blur(y * y) - mu_yy
    s_xy = blur(x * y) - mu_xy
    c1, c2 = 0.01**2, 0.03**2
    ssim_map = ((2 * mu_xy + c1) * (2 * s_xy + c2)) / ((mu_xx + mu_yy + c1) * (s_xx + s_yy + c2))
    return ssim_map.mean()


def ssim_loss_avg(f: Tensor, a: Tensor, b: Tensor) -> Tensor:
    """``((1 - SSIM(f, a)) + (1 - SSIM(f, b))) / 2``."""
    return ((1 - ssim(f, a)) + (1 - ssim(f, b))) / 2


def pixel_loss(f: Tensor, a: Tensor, b: Tensor | None = None, weight: float = 3.0) -> Tensor:
    """``weight * L1(f, (a + b) / 2)``; with ``b=None``, ``weight * L1(f, a)`` (official ``PixelLoss(3)``)."""
    _check_images(f=f, a=a, b=b)
    target = a if b is None else (a + b) / 2.0
    return weight * F.l1_loss(f, target)


def max_pixel_loss(f: Tensor, a: Tensor, b: Tensor | None = None, weight: float = 1.0) -> Tensor:
    """``weight * L1(f, max(a, b))`` with the max as a constant target; with ``b=None``, ``weight * L1(f, a)``."""
    _check_images(f=f, a=a, b=b)
    target = a if b is None else torch.maximum(a, b).detach()
    return weight * F.l1_loss(f, target)


def signed_gradient(u: Tensor) -> Tensor:
    """The official signed Sobel-like response ``conv(u, kx) + conv(u, ky)`` summed over channels: ``(B, 1, H, W)``.

    ``kx = [[-.2, 0, .2], [-1, 0, 1], [-.2, 0, .2]]``, ``ky = [[.2, 1, .2], [0, 0, 0], [-.2, -1, -.2]]``,
    zero padding 1. The x and y responses are added with their signs (not their magnitudes), as the official code.
    """
    _check_images(u=u)
    c = u.shape[1]
    return F.conv2d(u, _kernel(_GRAD_KX, c, u), padding=1) + F.conv2d(u, _kernel(_GRAD_KY, c, u), padding=1)


def max_gradient_loss(f: Tensor, a: Tensor, b: Tensor | None = None, weight: float = 3.0) -> Tensor:
    """``weight * L1(grad f, J)`` (official ``MaxGradLoss(3)``).

    ``J`` is ``grad a`` where ``|grad a| >= |grad b|`` and ``grad b`` elsewhere (ties go to ``a``);
    with ``b=None`` the target is ``grad a``. ``grad`` is :func:`signed_gradient`.
    """
    _check_images(f=f, a=a, b=b)
    with torch.no_grad():
        ga = signed_gradient(a)
        if b is None:
            target = ga
        else:
            gb = signed_gradient(b)
            target = torch.where(ga.abs() >= gb.abs(), ga, gb)
    return weight * F.l1_loss(signed_gradient(f), target)


def mef_ssim(
    f: Tensor,
    a: Tensor,
    b: Tensor,
    window_size: int = 11,
    sigma_g: float = 0.2,
    sigma_l: float = 0.2,
) -> Tensor:
    """MEF-SSIM of the fused image ``f`` against the exposure stack ``(a, b)``, official variant.

    As the official training code does, the batch is stacked vertically into one ``(3, B*H, W)`` image per source
    (so windows straddle sample borders), the window is an ``11x11`` Gaussian with sigma ``window_size / 6``
    averaged over the channels, the structure term comes from the source with the larger local variance, the
    luminance reference is the exposedness-weighted mean of the source means (``is_lum=True``), and the value is
    ``mean(l_map) * mean(cs_map)`` (a product of means, single scale).
    """
    _check_images(f=f, a=a, b=b)
    bsz, c, h, w = f.shape

    def stack(t: Tensor) -> Tensor:  # (B, C, H, W) -> (1, C, B*H, W)
        return t.permute(1, 0, 2, 3).reshape(1, c, bsz * h, w)

    x = stack(f)
    ys = torch.cat([stack(a), stack(b)], dim=0).detach()  # (K=2, C, B*H, W)
    k = ys.shape[0]
    win = gaussian_window(window_size, window_size / 6.0, dtype=f.dtype, device=f.device)
    win = (win / c).expand(1, c, window_size, window_size)
    pad = window_size // 2
    hh = bsz * h

    def blur(t: Tensor) -> Tensor:
        return F.conv2d(t, win, padding=pad)

    mu_y = blur(ys).view(k, hh, w)
    sig_y = blur(ys * ys).view(k, hh, w) - mu_y * mu_y
    idx = torch.argmax(sig_y, dim=0)
    mu_x = blur(x).view(hh, w)
    sig_x = blur(x * x).view(hh, w) - mu_x * mu_x
    sig_xy = blur(x.expand_as(ys) * ys).view(k, hh, w) - mu_x.unsqueeze(0) * mu_y
    c1, c2 = 0.01**2, 0.03**2
    cs_seq = (2 * sig_xy + c2) / (sig_x.unsqueeze(0) + sig_y + c2)
    cs_map = torch.gather(cs_seq.view(k, -1), 0, idx.view(1, -1)).view(hh, w)
    denom_g, denom_l = 2 * sigma_g**2, 2 * sigma_l**2
    l_global = torch.mean(mu_y.view(k, -1), dim=1)
    weight_l = torch.exp(-((mu_y - 0.5) ** 2) / denom_l)
    weight_g = torch.exp(-((l_global - 0.5) ** 2) / denom_g)[:, None, None]
    wts = weight_g * weight_l
    mu_ref = (wts * mu_y).sum(0) / wts.sum(0)
    l_map = (2 * mu_x * mu_ref + c1) / (mu_x * mu_x + mu_ref * mu_ref + c1)
    return l_map.mean() * cs_map.mean()


def mff_target(a: Tensor, b: Tensor, patch: int = 16) -> Tensor:
    """Multi-focus pseudo target ``(B, 3, H, W)``: per ``patch x patch`` block, the source that is sharper.

    Sharpness of a block is the maximum of the standard Sobel magnitude ``|gx| + |gy|`` of the grey image
    (weights 0.2989, 0.587, 0.114) inside it; ties go to ``a``. ``H`` and ``W`` must be multiples of ``patch``.
    """
    _check_images(a=a, b=b)
    bsz, c, h, w = a.shape
    if h % patch or w % patch:
        raise ValueError(f"mff_target: image size {h}x{w} must be a multiple of the patch size {patch}")
    with torch.no_grad():
        gray_w = torch.tensor(_GRAY, dtype=a.dtype, device=a.device).view(1, 3, 1, 1)

        def sharp(t: Tensor) -> Tensor:
            g = (t[:, :3] * gray_w).sum(1, keepdim=True) if c >= 3 else t[:, :1]
            mag = F.conv2d(g, _kernel(_SOBEL_X, 1, g), padding=1).abs() + F.conv2d(
                g, _kernel(_SOBEL_Y, 1, g), padding=1
            ).abs()
            return F.max_pool2d(mag, patch)  # (B, 1, H/p, W/p)

        choose_a = sharp(a) >= sharp(b)
        mask = choose_a.repeat_interleave(patch, dim=2).repeat_interleave(patch, dim=3)
        return torch.where(mask, a, b)


def prompt_loss(
    enc_a: Tensor, enc_b: Tensor, dec_a: Tensor | None = None, dec_b: Tensor | None = None
) -> Tensor:
    """``0.75 * MSE(P_a^enc + P_b^enc, 1) + 0.25 * MSE(P_a^dec + P_b^dec, 1)``.

    Each prompt stack is ``(n_modules, B, N, 1)`` (any equal shapes work). Without decoder prompts, the encoder
    term alone (weight 0.75).
    """
    if enc_a.shape != enc_b.shape:
        raise ValueError(f"prompt stacks differ in shape: {tuple(enc_a.shape)} vs {tuple(enc_b.shape)}")
    loss = 0.75 * F.mse_loss(enc_a + enc_b, torch.ones_like(enc_a))
    if dec_a is not None and dec_b is not None:
        if dec_a.shape != dec_b.shape:
            raise ValueError(f"decoder prompt stacks differ in shape: {tuple(dec_a.shape)} vs {tuple(dec_b.shape)}")
        loss = loss + 0.25 * F.mse_loss(dec_a + dec_b, torch.ones_like(dec_a))
    return loss


# ---------------------------------------------------------------------------------------------------------------
# Per-task totals
# ---------------------------------------------------------------------------------------------------------------


def _resolve_preset(preset: str | Mapping[str, Any]) -> dict[str, Any]:
    if isinstance(preset, str):
        if preset not in LOSS_PRESETS:
            raise ConfigError(f"loss preset {preset!r} unknown (known: {', '.join(LOSS_PRESETS)})")
        return copy.deepcopy(LOSS_PRESETS[preset])
    out = copy.deepcopy(dict(preset))
    for task in TASK_INDEX:
        for phase in ("warmup", "main"):
            terms = out.get(task, {}).get(phase)
            if not isinstance(terms, Mapping):
                raise ConfigError(f"loss preset: missing weights for {task}.{phase}")
            unknown = set(terms) - set(FusionLoss.TERMS) - {"aux"}
            if unknown:
                raise ConfigError(f"loss preset {task}.{phase}: unknown terms {sorted(unknown)}")
    out.setdefault("aux_decay", True)
    return out


class FusionLoss(nn.Module):
    """Per-task TC-MoA total loss with the official warm-up switch.

    Args:
        preset: ``"current"`` (official HEAD weights), ``"pre2025"``, or a dict shaped like
            ``LOSS_PRESETS["current"]``.
        warmup_epochs: epochs (integer epoch index < this) that use the warm-up weights; official 2.

    Call ``loss(task, fused, a, b, aux, epoch)``:
        task: ``"vif"|"mef"|"mff"`` or 0/1/2; fused, a, b: ``(B, 3, H, W)`` in [0, 1];
        aux: the model's auxiliary dict with ``aux_loss`` and the prompt stacks ``prompts_enc_a``,
        ``prompts_enc_b``, ``prompts_dec_a``, ``prompts_dec_b`` (missing entries count as zero);
        epoch: integer epoch.
    Returns a dict of scalar tensors: ``loss`` (the total to minimise) and every weighted term's raw value.
    The loss is computed in float32 even under autocast, as the official code.
    """

    TERMS: tuple[str, ...] = (
        "pixel",
        "max_pixel",
        "max_grad",
        "ssim_avg",
        "mef_ssim",
        "target_l1",
        "target_grad",
        "target_ssim",
        "prompt",
    )

    def __init__(self, preset: str | Mapping[str, Any] = "current", warmup_epochs: int = 2) -> None:
        super().__init__()
        self.preset_name = preset if isinstance(preset, str) else "custom"
        self.weights = _resolve_preset(preset)
        if warmup_epochs < 0:
            raise ConfigError(f"warmup_epochs must be >= 0, got {warmup_epochs}")
        self.warmup_epochs = int(warmup_epochs)

    def phase(self, epoch: int) -> str:
        """``"warmup"`` or ``"main"`` for an integer epoch."""
        return "warmup" if epoch < self.warmup_epochs else "main"

    def forward(
        self,
        task: str | int,
        fused: Tensor,
        a: Tensor,
        b: Tensor,
        aux: Mapping[str, Any] | None = None,
        epoch: int = 0,
    ) -> dict[str, Tensor]:
        name = TASKS[task_index(task)]
        _check_images(fused=fused, a=a, b=b)
        aux = aux or {}
        weights = self.weights[name][self.phase(int(epoch))]
        with torch.autocast(device_type=fused.device.type, enabled=False):
            f, a, b = fused.float(), a.float(), b.float()
            target = mff_target(a, b) if name == "mff" else None
            terms: dict[str, Tensor] = {}
            total = f.new_zeros(())
            for term, w in weights.items():
                if term == "aux" or not w:
                    continue
                value = self._term(term, f, a, b, target, aux)
                terms[term] = value.detach()
                total = total + w * value
            aux_loss = aux.get("aux_loss")
            if aux_loss is not None and weights.get("aux", 0.0):
                aux_loss = torch.as_tensor(aux_loss, dtype=torch.float32, device=f.device)
                scale = 1.0 / (int(epoch) + 1) if self.weights.get("aux_decay", True) else 1.0
                terms["aux"] = aux_loss.detach()
                total = total + weights["aux"] * scale * aux_loss
        terms["loss"] = total
        return terms

    @staticmethod
    def _term(term: str, f: Tensor, a: Tensor, b: Tensor, target: Tensor | None, aux: Mapping[str, Any]) -> Tensor:
        if term == "pixel":
            return pixel_loss(f, a, b)
        if term == "max_pixel":
            return max_pixel_loss(f, a, b)
        if term == "max_grad":
            return max_gradient_loss(f, a, b)
        if term == "ssim_avg":
            return ssim_loss_avg(f, a, b)
        if term == "mef_ssim":
            return 1 - mef_ssim(f, a, b)
        if term == "target_l1":
            return max_pixel_loss(f, target)
        if term == "target_grad":
            return max_gradient_loss(f, target)
        if term == "target_ssim":
            return 1 - ssim(f, target)
        if term == "prompt":
            enc_a, enc_b = aux.get("prompts_enc_a"), aux.get("prompts_enc_b")
            if enc_a is None or enc_b is None:
                return f.new_zeros(())
            dec_a, dec_b = _maybe_float(aux.get("prompts_dec_a")), _maybe_float(aux.get("prompts_dec_b"))
            return prompt_loss(enc_a.float(), enc_b.float(), dec_a, dec_b)
        raise ConfigError(f"unknown loss term {term!r}")


def _maybe_float(t: Tensor | None) -> Tensor | None:
    return None if t is None else t.float()
