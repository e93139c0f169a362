"""fusion.losses: every component against an independent computation, and the per-task totals and presets."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy import ndimage

from fusion.errors import ConfigError
from fusion.losses import (
    LOSS_PRESETS,
    FusionLoss,
    gaussian_window,
    max_gradient_loss,
    max_pixel_loss,
    mef_ssim,
    mff_target,
    pixel_loss,
    prompt_loss,
    signed_gradient,
    ssim,
    ssim_loss_avg,
)


def _rand(*shape, seed=0):
    return torch.rand(*shape, generator=torch.Generator().manual_seed(seed))


def _ssim_reference(x: np.ndarray, y: np.ndarray) -> float:
    """Independent SSIM: scipy correlation with zero ('constant') borders, per channel, float64."""
    g = gaussian_window(11, 1.5, dtype=torch.float64).numpy()
    c1, c2 = 0.01**2, 0.03**2
    maps = []
    for b in range(x.shape[0]):
        for c in range(x.shape[1]):
            u, v = x[b, c], y[b, c]

            def blur(t, g=g):
                return ndimage.correlate(t, g, mode="constant", cval=0.0)

            mu_u, mu_v = blur(u), blur(v)
            s_uu = blur(u * u) - mu_u**2
            s_vv = blur(v * v) - mu_v**2
            s_uv = blur(u * v) - mu_u * mu_v
            maps.append(((2 * mu_u * mu_v + c1) * (2 * s_uv + c2)) / ((mu_u**2 + mu_v**2 + c1) * (s_uu + s_vv + c2)))
    return float(np.mean(maps))


def test_gaussian_window_is_normalised_and_symmetric():
    w = gaussian_window(11, 1.5)
    assert w.shape == (11, 11)
    assert torch.isclose(w.sum(), torch.tensor(1.0))
    assert torch.allclose(w, w.T) and torch.allclose(w, w.flip(0))
    assert w[5, 5] == w.max()


def test_ssim_matches_independent_reference():
    x, y = _rand(2, 3, 24, 20, seed=1), _rand(2, 3, 24, 20, seed=2)
    y = 0.6 * x + 0.4 * y
    got = ssim(x.double(), y.double()).item()
    assert got == pytest.approx(_ssim_reference(x.double().numpy(), y.double().numpy()), abs=1e-10)
    assert ssim(x, x).item() == pytest.approx(1.0, abs=1e-6)
    assert ssim_loss_avg(x, x, x).item() == pytest.approx(0.0, abs=1e-6)


def test_pixel_and_max_pixel_losses():
    a, b = _rand(1, 3, 8, 8, seed=3), _rand(1, 3, 8, 8, seed=4)
    assert pixel_loss((a + b) / 2, a, b).item() == pytest.approx(0.0, abs=1e-7)
    assert pixel_loss(a, a, b).item() == pytest.approx(3 * ((a - b).abs() / 2).mean().item(), rel=1e-6)
    assert max_pixel_loss(torch.maximum(a, b), a, b).item() == pytest.approx(0.0, abs=1e-7)
    assert max_pixel_loss(a, a, b).item() == pytest.approx((torch.maximum(a, b) - a).mean().item(), rel=1e-6)
    assert max_pixel_loss(b, a).item() == pytest.approx((a - b).abs().mean().item(), rel=1e-6)


def test_signed_gradient_on_a_ramp():
    ramp = torch.arange(10, dtype=torch.float64).mul(0.1).view(1, 1, 1, 10).expand(1, 3, 6, 10)
    g = signed_gradient(ramp)
    assert g.shape == (1, 1, 6, 10)
    # x kernel: (0.2 + 1 + 0.2) * 0.2 per channel, summed over 3 channels; y kernel sees no change along rows
    assert torch.allclose(g[0, 0, 1:-1, 1:-1], torch.full((4, 8), 3 * 1.4 * 0.2, dtype=torch.float64))
    col = torch.arange(6, dtype=torch.float64).mul(0.1).view(1, 1, 6, 1).expand(1, 3, 6, 10)
    # y kernel is positive above: rows increasing downwards give a negative response
    want = torch.full((4, 8), -3 * 1.4 * 0.2, dtype=torch.float64)
    assert torch.allclose(signed_gradient(col)[0, 0, 1:-1, 1:-1], want)


def test_max_gradient_loss_targets_the_stronger_gradient():
    a = _rand(1, 3, 16, 16, seed=5) * 0.2  # weak texture
    b = _rand(1, 3, 16, 16, seed=6)  # strong texture
    flat = torch.full_like(a, 0.5)  # zero padding makes its border gradients non-zero: a real image
    assert max_gradient_loss(a, a, a * 0.5).item() == pytest.approx(0.0, abs=1e-7)
    ga, gb = signed_gradient(a), signed_gradient(b)
    target = torch.where(ga.abs() >= gb.abs(), ga, gb)
    want = 3 * (signed_gradient(flat) - target).abs().mean().item()
    assert max_gradient_loss(flat, a, b).item() == pytest.approx(want, rel=1e-6)
    assert max_gradient_loss(a, b).item() == pytest.approx(3 * (ga - gb).abs().mean().item(), rel=1e-6)


def test_mef_ssim_properties():
    a = _rand(2, 3, 24, 24, seed=7)
    assert mef_ssim(a, a, a).item() == pytest.approx(1.0, abs=1e-5)
    dark, bright = a * 0.3, 0.7 + a * 0.3
    good = mef_ssim(0.5 * (dark + bright), dark, bright).item()
    flat = mef_ssim(torch.full_like(a, 0.5), dark, bright).item()
    assert good > flat
    # official quirk: the batch is one image stacked vertically
    stacked = [torch.cat(list(t), dim=1).unsqueeze(0) for t in (0.5 * (dark + bright), dark, bright)]
    assert mef_ssim(*stacked).item() == pytest.approx(good, rel=1e-6)


def test_mff_target_picks_the_sharper_patch_and_ties_go_to_a():
    rng = torch.Generator().manual_seed(8)
    sharp = torch.rand(1, 3, 32, 32, generator=rng)
    blurred = torch.full_like(sharp, 0.5)
    a = torch.cat([sharp[..., :16], blurred[..., 16:]], dim=-1)  # a sharp on the left
    b = torch.cat([blurred[..., :16], sharp[..., 16:]], dim=-1)  # b sharp on the right
    t = mff_target(a, b)
    assert torch.equal(t[..., :16], sharp[..., :16]) and torch.equal(t[..., 16:], sharp[..., 16:])
    assert torch.equal(mff_target(b, b), b)
    with pytest.raises(ValueError, match="multiple of the patch"):
        mff_target(a[..., :30], b[..., :30])


def test_prompt_loss_value():
    p = torch.full((3, 2, 5, 1), 0.25)
    assert prompt_loss(p, p).item() == pytest.approx(0.75 * 0.25)
    q = torch.full((2, 2, 5, 1), 0.5)
    assert prompt_loss(p, p, q, q).item() == pytest.approx(0.75 * 0.25)
    assert prompt_loss(q, q, p, p).item() == pytest.approx(0.25 * 0.25)
    with pytest.raises(ValueError):
        prompt_loss(p, q)


def _aux(b=2, n=4, value=0.5, aux=0.3):
    enc = torch.full((3, b, n, 1), value)
    dec = torch.full((2, b, n, 1), value)
    return {"aux_loss": torch.tensor(aux), "prompts_enc_a": enc, "prompts_enc_b": enc * 0.5,
            "prompts_dec_a": dec, "prompts_dec_b": dec}


def test_vif_total_current_and_pre2025():
    a, b = _rand(2, 3, 32, 32, seed=9), _rand(2, 3, 32, 32, seed=10)
    f = (0.3 * a + 0.7 * b).requires_grad_(True)
    aux = _aux()
    lp = prompt_loss(aux["prompts_enc_a"], aux["prompts_enc_b"], aux["prompts_dec_a"], aux["prompts_dec_b"])
    out = FusionLoss("current")("vif", f, a, b, aux, epoch=3)
    want = (1.5 * max_gradient_loss(f, a, b) + 1.5 * max_pixel_loss(f, a, b) + lp + 2 * ssim_loss_avg(f, a, b)
            + 0.3 / 4)
    assert out["loss"].item() == pytest.approx(want.item(), rel=1e-6)
    assert set(out) == {"max_grad", "max_pixel", "prompt", "ssim_avg", "aux", "loss"}
    out["loss"].backward()
    assert f.grad is not None and f.grad.abs().sum() > 0
    warm = FusionLoss("current")("vif", f, a, b, aux, epoch=1)
    want_w = pixel_loss(f, a, b) + lp + ssim_loss_avg(f, a, b) + 0.3 / 2
    assert warm["loss"].item() == pytest.approx(want_w.item(), rel=1e-6)
    old = FusionLoss("pre2025")("vif", f, a, b, aux, epoch=3)
    want_o = max_gradient_loss(f, a, b) + max_pixel_loss(f, a, b) + 20 * lp + 0.5 * ssim_loss_avg(f, a, b) + 0.3
    assert old["loss"].item() == pytest.approx(want_o.item(), rel=1e-6)


def test_mef_and_mff_totals():
    a, b = _rand(2, 3, 32, 32, seed=11), _rand(2, 3, 32, 32, seed=12)
    f = 0.5 * (a + b)
    aux = _aux(aux=0.0)
    lp = prompt_loss(aux["prompts_enc_a"], aux["prompts_enc_b"], aux["prompts_dec_a"], aux["prompts_dec_b"])
    mef = FusionLoss("current")("mef", f, a, b, aux, epoch=2)["loss"]
    want = 1.8 * (max_gradient_loss(f, a, b) + lp + 2 * (1 - mef_ssim(f, a, b)) + pixel_loss(f, a, b))
    assert mef.item() == pytest.approx(want.item(), rel=1e-6)
    t = mff_target(a, b)
    mff = FusionLoss("current")("mff", f, a, b, aux, epoch=2)["loss"]
    want = 20 * (max_gradient_loss(f, t) + max_pixel_loss(f, t)) + lp + 3 * (1 - ssim(f, t))
    assert mff.item() == pytest.approx(want.item(), rel=1e-6)
    assert FusionLoss("current", warmup_epochs=0)("mff", t, a, b, {}, epoch=0)["loss"].item() == pytest.approx(
        3 * (1 - ssim(t, t)).item(), abs=1e-5)


def test_presets_and_errors():
    assert set(LOSS_PRESETS) == {"current", "pre2025"}
    for preset in LOSS_PRESETS.values():
        for task in ("vif", "mef", "mff"):
            assert set(preset[task]) == {"warmup", "main"}
    with pytest.raises(ConfigError, match="unknown"):
        FusionLoss("nope")
    bad = {t: {"warmup": {"pixel": 1}, "main": {"bogus": 1}} for t in ("vif", "mef", "mff")}
    with pytest.raises(ConfigError, match="bogus"):
        FusionLoss(bad)
    x = torch.zeros(1, 3, 16, 16)
    with pytest.raises(ValueError, match="task"):
        FusionLoss()("hdr", x, x, x)
    with pytest.raises(ValueError, match="shape"):
        FusionLoss()("vif", x, x, torch.zeros(1, 3, 16, 8))
