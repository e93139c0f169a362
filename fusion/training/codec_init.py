"""An analytic "codec" initialisation that makes a small TC-MoA a working fuser before any training.

Why: the official recipe freezes a pretrained MAE. No MAE exists for the small widths (``tcmoa_tiny``: 192/128),
and a ViT trained from scratch on a few dozen pairs, on a CPU, only learns to blur. This initialisation writes
weights (no architecture change: the model stays the official network) such that the network computes a
classical two-scale fusion of its sources, which training with the official losses then refines:

* each 8x8 block of the original image (one token: a 16x16 patch of the 2x up-sampled input) is encoded
  linearly into 96 codes: the 64 2-D DCT coefficients of luma and 2x2-pooled 4x4 DCTs of the two colour
  differences (a JPEG-4:2:0-like code); the patch embedding inverts the bilinear up-sampling exactly;
* the codes live in an orthonormal subspace of the token space, next to one large constant direction (K, from
  the patch-embedding bias) that keeps every LayerNorm (final encoder norm, decoder norm) in a linear regime;
* position embeddings are zero and every backbone block is an identity (zero attention and MLP output
  projections), so tokens carry the codes unchanged;
* encoder TC-MoA module 0 (the **base**): its vif router prompts ``p_a = sigmoid(slope d + bias - hot_slope
  relu(-d - hot_margin) - dark_slope relu(dark_level - mean_a))``, ``d`` the difference of the two blocks' mean luma
  (the brighter block wins, the visible image with a head start except where it is very dark, a clearly warmer
  infrared block outright; mef and mff: 0.5), and its fusion convolution
  writes ``S(p_a DC_a + p_b DC_b)`` (the prompted block means, smoothed by a 3x3 binomial over tokens) into an
  auxiliary direction;
* module 1 (the **details**, constant prompts 0.5) moves b's high-frequency luma codes into stream a (alpha 1.5 so
  that they count 1.15x a's) and writes ``S(DC_a + DC_b)`` into a second auxiliary direction;
* module 2 (constant prompts 0.45 / 0.55) moves b's low-frequency luma and colour codes into stream a and adds the
  bilinear up-sampling of ``S(mix) - S(DC_a + DC_b)`` from the 3x3 neighbouring tokens: the base changes smoothly
  across token borders instead of switching per 8x8 block;
* the adapters' reduction reads the blocks' DC codes (the routers' brightness features) and the constant (which
  drives the gates): vif is routed to experts 0-1, mef and mff to experts 2-3, so that training the latter leaves
  vif untouched;
* decoder module 0 averages the two sources' colour for mef and mff (for vif the infrared adds none); the decoder
  embedding and pixel head map the codes back to pixels.

The result, per pixel, is ``U(S(mix)) + (a - U(S(a))) + (b - U(S(b)))`` in luma (``U`` the bilinear up-sampling of
block means: a smooth prompted base plus both sources' details above it, b's high frequencies at 1.15x) and, in
colour, a's chroma plus b's for vif (a grey infrared adds none: the visible colour is kept) and their mean for mef
and mff; see :func:`reference_fusion`. An infrared block takes the base over once ``d`` falls below about
``-hot_margin - bias / hot_slope`` (-0.35).
The fusion convolutions' 3x3 token neighbourhood is zero-padded at the frame border, so inference pads
``config.frame_margin`` (16) pixels on every side and training scores only the inside of each crop.

Requirements: patch size 16, up-sampling 2, ``embed_dim >= 192`` (the 48-channel bottleneck), at least 3 encoder
TC-MoA modules and ``decoder_embed_dim >= 98``.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn

from fusion.errors import ConfigError

__all__ = ["codec_init", "zero_dead_weights", "reference_fusion", "CODEC_GAINS", "encode_patches", "decode_patches"]

_MEAN = np.array([0.485, 0.456, 0.406])
_STD = np.array([0.229, 0.224, 0.225])
_LUMA = np.array([0.299, 0.587, 0.114])
N_CODES = 96
_LOW_LUMA = [u * 8 + v for u in range(4) for v in range(4)]
_HIGH_LUMA = [i for i in range(64) if i not in _LOW_LUMA]
HIGH = _HIGH_LUMA  # 48 codes: the rest of luma

HIGH_KEPT = [i for i in HIGH if i not in (62, 63)]  # 46: b's two highest luma frequencies are not transferred
CHROMA = list(range(64, 96))
CHROMA_KEPT = [i for i in CHROMA if i not in (79, 95)]  # 30: b's highest chroma frequency is not transferred

DECODER_PROMPT_OFF = 1e-5
"""The prompt of a decoder colour module that stays out of a task (sigmoid(-11.5))."""

CODEC_GAINS = {"alpha": (0.5, 1.5, 0.5), "K": 3.0e3, "ref": 100.0, "route": 1.5, "slope": 2.0, "bias": 1.5,
               "hot_slope": 20.0, "hot_margin": 0.27, "dark_slope": 50.0, "dark_level": 0.11, "g_high": 5.0,
               "s_a": 0.45, "g_low": 10.0, "g_chroma": 10.0}
"""``alpha`` of the three encoder modules (module 1's 1.5 lets b's detail codes outweigh a's: ratio
``alpha g_high / (alpha g_high - 2 (alpha - 1))`` = 1.15); ``K``, the amplitude of the constant direction (encoder and
decoder), trades the LayerNorms' linearity (error ~ (|codes| / K)^2 / 2, < 1e-4 here) against float32 resolution of
the codes next to the constant (~ 1e-4 of a code unit); ``ref`` is the size of the constant that keeps the
adapter's second LayerNorm linear, ``route`` the router weight that sends vif to experts 0-1 and the other tasks to
experts 2-3. The base prompt of vif is ``p_a = sigmoid(slope d + bias - hot_slope relu(-d - hot_margin) -
dark_slope relu(dark_level - mean_a))`` with ``d = mean_a - mean_b`` on 8x8-block mean luma in [0, 1]: the brighter
block wins, the visible image with a head start that it loses in very dark blocks (night), and an infrared block
brighter by more than ``hot_margin`` (a warm target) wins outright. Module 1 transfers
the detail codes (prompts 0.5, gain ``g_high``), module 2 the low-frequency and colour codes with prompts ``s_a``
and gains ``g_low``/``g_chroma`` (``g_low * (1 - 2 s_a) = 1 / alpha_2 - 1`` counts b's low frequencies as much as
a's)."""


def _dct_matrix(n: int) -> np.ndarray:
    k = np.arange(n)[:, None]
    i = np.arange(n)[None, :]
    m = np.cos(math.pi * (2 * i + 1) * k / (2 * n)) * math.sqrt(2.0 / n)
    m[0] /= math.sqrt(2.0)
    return m


def _upsample_inverse() -> np.ndarray:
    """(8, 16): recovers the 8 original samples of a block from its 16 bilinearly x2 up-sampled samples."""
    up = np.zeros((16, 10))  # unknowns x_{-1} .. x_8 (columns 0..9)
    for k in range(8):
        up[2 * k, k] = 0.25  # x_{k-1}
        up[2 * k, k + 1] = 0.75
        up[2 * k + 1, k + 1] = 0.75
        up[2 * k + 1, k + 2] = 0.25  # x_{k+1}
    return np.linalg.pinv(up)[1:9]


def _encode_x(x: np.ndarray) -> np.ndarray:
    """(3, 8, 8) RGB intensities -> (96,) codes."""
    d8, d4 = _dct_matrix(8), _dct_matrix(4)
    y = np.tensordot(_LUMA, x, axes=1)
    codes = [(d8 @ y @ d8.T).reshape(-1)]
    for diff in (x[2] - y, x[0] - y):
        pooled = diff.reshape(4, 2, 4, 2).mean(axis=(1, 3))
        codes.append((d4 @ pooled @ d4.T).reshape(-1))
    return np.concatenate(codes)


def _decode_x(c: np.ndarray) -> np.ndarray:
    """(96,) codes -> (3, 8, 8) RGB intensities (chroma nearest-up-sampled from 4x4)."""
    d8, d4 = _dct_matrix(8), _dct_matrix(4)
    y = d8.T @ c[:64].reshape(8, 8) @ d8
    cb = np.kron(d4.T @ c[64:80].reshape(4, 4) @ d4, np.ones((2, 2)))
    cr = np.kron(d4.T @ c[80:96].reshape(4, 4) @ d4, np.ones((2, 2)))
    r = cr + y
    b = cb + y
    g = (y - _LUMA[0] * r - _LUMA[2] * b) / _LUMA[1]
    return np.stack([r, g, b])


def _linear_maps() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Encoder ``(96, 768)`` on the normalised up-sampled patch (conv order c, h, w) + constant ``(96,)``;
    decoder ``(768, 96)`` to the normalised 16x16 output patch (unpatchify order h, w, c) + constant ``(768,)``."""
    r1 = _upsample_inverse()
    std, mean = _STD[:, None, None], _MEAN[:, None, None]

    def enc_z(u_flat: np.ndarray) -> np.ndarray:
        u = u_flat.reshape(3, 16, 16)
        z = np.stack([r1 @ u[c] @ r1.T for c in range(3)])
        return _encode_x(z * std)  # linear part (intensity deviation from the mean)

    enc = np.stack([enc_z(e) for e in np.eye(768)], axis=1)
    enc_const = _encode_x(np.broadcast_to(mean, (3, 8, 8)).copy())

    def dec_z(c: np.ndarray) -> np.ndarray:
        z = _decode_x(c) / std  # (3, 8, 8), linear part
        big = np.repeat(np.repeat(z, 2, axis=1), 2, axis=2)  # (3, 16, 16): each pixel fills its 2x2 cell
        return big.transpose(1, 2, 0).reshape(-1)

    dec = np.stack([dec_z(e) for e in np.eye(N_CODES)], axis=1)
    dec_const = np.repeat(np.repeat(np.broadcast_to(-mean / std, (3, 8, 8)), 2, axis=1), 2, axis=2)
    return enc, enc_const, dec, dec_const.transpose(1, 2, 0).reshape(-1)


def _frame(dim: int, count: int, seed: int) -> np.ndarray:
    """``(dim, count)`` orthonormal columns orthogonal to the all-ones vector (LayerNorm's mean direction)."""
    rng = np.random.default_rng(seed)
    m = rng.standard_normal((dim, count))
    m -= m.mean(axis=0, keepdims=True)
    q, _ = np.linalg.qr(m)
    return q


def _binomial() -> np.ndarray:
    """(3, 3) binomial smoothing kernel over tokens (sums to 1)."""
    k = np.array([1.0, 2.0, 1.0])
    return np.outer(k, k) / 16.0


def _upsample_table() -> np.ndarray:
    """``(16, 3, 3)``: the low luma codes that the bilinear x8 up-sampling (``align_corners=False``) of a unit
    block-mean impulse at token offset ``(dy, dx)`` puts into the centre block (``[j, 1 + dy, 1 + dx]``)."""
    d8 = _dct_matrix(8)
    table = np.zeros((len(_LOW_LUMA), 3, 3))
    for dy in (-1, 0, 1):
        for dx in (-1, 0, 1):
            field = torch.zeros(1, 1, 3, 3, dtype=torch.float64)
            field[0, 0, 1 + dy, 1 + dx] = 1.0
            up = torch.nn.functional.interpolate(field, scale_factor=8, mode="bilinear", align_corners=False)
            block = up[0, 0, 8:16, 8:16].numpy()
            table[:, 1 + dy, 1 + dx] = (d8 @ block @ d8.T).reshape(-1)[_LOW_LUMA]
    return table


def _code_gains() -> tuple[np.ndarray, np.ndarray]:
    """Per code, the coefficient of a's and of b's code in stream a after the three encoder modules (relative to
    the constant direction, which every module keeps at K)."""
    g = CODEC_GAINS
    a0, a1, a2 = g["alpha"]
    r1 = 1 - a0  # what module 0 leaves of every code
    r2 = (1 - a1) * r1  # ... modules 0 and 1 of the codes module 1 does not transfer
    ga = np.full(N_CODES, (1 - a2) * r2)  # codes never transferred: only the residual of a is left
    gb = np.zeros(N_CODES)
    ga[HIGH_KEPT] = (1 - a2) * (a1 * g["g_high"] * r1 * 0.5 + (1 - a1) * r1)
    gb[HIGH_KEPT] = (1 - a2) * a1 * g["g_high"] * r1 * 0.5
    s_a = g["s_a"]
    ga[_LOW_LUMA] = a2 * g["g_low"] * r2 * s_a + (1 - a2) * r2
    gb[_LOW_LUMA] = a2 * g["g_low"] * r2 * (1 - s_a)
    ga[CHROMA_KEPT] = a2 * g["g_chroma"] * r2 * s_a + (1 - a2) * r2
    gb[CHROMA_KEPT] = a2 * g["g_chroma"] * r2 * (1 - s_a)
    return ga, gb


def _t(x: np.ndarray, like: torch.Tensor) -> torch.Tensor:
    return torch.as_tensor(np.ascontiguousarray(x), dtype=like.dtype, device=like.device).reshape(like.shape)


def _set_conv(layer: nn.Module, rows: list[np.ndarray], conv2: np.ndarray, cols: list[np.ndarray]) -> None:
    """A fusion convolution that reads ``rows`` (token-space directions), applies the ``(n, n, 3, 3)`` token
    convolution ``conv2`` and writes output channel ``i`` along ``cols[i]``; the other channels stay zero."""
    dim, r = layer.conv1.weight.shape[1], layer.conv1.weight.shape[0]
    n = len(rows)
    if n > r or len(cols) != n:
        raise ConfigError(f"codec init: {n} channels do not fit a bottleneck of {r}")
    w1 = np.zeros((r, dim))
    w2 = np.zeros((r, r, 3, 3))
    w3 = np.zeros((dim, r))
    if n:
        w1[:n] = np.stack(rows)
        w2[:n, :n] = conv2
        w3[:, :n] = np.stack(cols, axis=1)
    layer.conv1.weight.copy_(_t(w1, layer.conv1.weight))
    layer.conv2.weight.copy_(_t(w2, layer.conv2.weight))
    layer.conv3.weight.copy_(_t(w3, layer.conv3.weight))


def _centre(gains: list[float]) -> np.ndarray:
    """``(n, n, 3, 3)`` token convolution that scales channel ``i`` by ``gains[i]`` (centre tap only)."""
    n = len(gains)
    w = np.zeros((n, n, 3, 3))
    w[np.arange(n), np.arange(n), 1, 1] = gains
    return w


def _constant_prompts(adapter: nn.Module, p_a: float, experts: range = range(4), p_b: float | None = None) -> None:
    """The given experts give the prompts ``p_a`` and ``p_b`` (default ``1 - p_a``) whatever the token (output biases
    only)."""
    half = adapter.MoA.experts[0].fc2.bias.shape[0] // 2
    p_b = 1 - p_a if p_b is None else p_b
    for e in experts:
        expert = adapter.MoA.experts[e]
        expert.fc2.weight.zero_()
        bias = torch.full_like(expert.fc2.bias, math.log(p_b / (1 - p_b)))
        bias[:half] = math.log(p_a / (1 - p_a))
        expert.fc2.bias.copy_(bias)


@torch.no_grad()
def codec_init(model: nn.Module, seed: int = 0) -> nn.Module:
    """Overwrite ``model``'s weights with the codec initialisation (in place; returns the model).

    Raises:
        ConfigError: the model's geometry does not allow it (see the module docstring).
    """
    cfg = model.config
    c, d = cfg.embed_dim, cfg.decoder_embed_dim
    if cfg.patch_size != 16 or cfg.upsample != 2 or cfg.in_chans != 3:
        raise ConfigError(f"{cfg.name}: codec init needs patch_size=16, upsample=2, in_chans=3")
    if c // 4 < 48 or c < N_CODES + 3 or d < N_CODES + 2:
        raise ConfigError(f"{cfg.name}: codec init needs embed_dim >= 192 and decoder_embed_dim >= 98 "
                          f"(got {c} and {d})")
    if cfg.num_encoder_adapters < 3:
        raise ConfigError(f"{cfg.name}: codec init needs at least 3 encoder TC-MoA modules")
    g = CODEC_GAINS
    enc, enc_const, dec, dec_const = _linear_maps()
    fe = _frame(c, N_CODES + 3, seed)
    e, v, w0, w1 = fe[:, :N_CODES], fe[:, N_CODES], fe[:, N_CODES + 1], fe[:, N_CODES + 2]
    fd = _frame(d, N_CODES + 1, seed + 1)
    e_d, v_d = fd[:, :N_CODES], fd[:, N_CODES]
    k = g["K"]
    a0, a1, a2 = g["alpha"]

    # stem: tokens = E codes + K v
    model.patch_embed.proj.weight.copy_(_t(e @ enc, model.patch_embed.proj.weight))
    model.patch_embed.proj.bias.copy_(_t(k * v + e @ enc_const, model.patch_embed.proj.bias))
    model.pos_embed.zero_()
    model.decoder_pos_embed.zero_()
    for blk in [*model.blocks, *model.decoder_blocks]:
        for lin in (blk.attn.proj, blk.mlp.fc2):
            lin.weight.zero_()
            lin.bias.zero_()

    vif = cfg.task_index("vif")
    for adapters, e_dc, const in ((model.blocks_MoA, e[:, 0], v), (model.decoder_blocks_MoA, e_d[:, 0], v_d)):
        for adapter in adapters:  # experts at 0 (prompts 0.5), routed by task; the modules below set their own
            for expert in adapter.MoA.experts:
                expert.fc2.weight.zero_()
                expert.fc2.bias.zero_()
            adapter.modal_shifts.zero_()
            _task_router(adapter, e_dc, const, vif_index=vif)
    smooth = _binomial()
    # module 0: the prompted base. w0 <- S(p_a DC_a + p_b DC_b), the block-mean luma mixed by the prompts and
    # smoothed over 3x3 tokens; v carried through so that the constant stays K
    _brighter_wins_experts(model.blocks_MoA[0])
    conv = _centre([0.0, 1.0])
    conv[0, 0] = smooth
    _set_conv(model.FusionLayer[0], [e[:, 0], v], conv, [w0, v])
    # module 1: the detail codes of both sources (constant prompts), and w1 <- S(mean of the two DC codes)
    _constant_prompts(model.blocks_MoA[1], 0.5)
    n_hi = len(HIGH_KEPT)
    conv = _centre([g["g_high"]] * n_hi + [0.0, 1.0])
    conv[n_hi, n_hi] = smooth
    _set_conv(model.FusionLayer[1], [e[:, i] for i in HIGH_KEPT] + [e[:, 0], v], conv,
              [e[:, i] for i in HIGH_KEPT] + [w1, v])
    # module 2: low-frequency and colour codes of both sources, plus the bilinear up-sampling of the smoothed base
    # correction S(mix) - S(DC_a + DC_b) from the neighbouring tokens into the low luma codes
    _constant_prompts(model.blocks_MoA[2], g["s_a"])
    ga, _ = _code_gains()
    n_lo, n_ch = len(_LOW_LUMA), len(CHROMA_KEPT)
    conv = _centre([g["g_low"]] * n_lo + [0.0] + [g["g_chroma"]] * n_ch + [1.0])
    # module 2 reads w0 (at (1 - a1) a0) and w1 (at a1 (1 - a0), half of each DC) as S(mix) - S(DC_a + DC_b); the
    # head divides the low codes by ga, and U works on block means (DC / 8)
    fused_base = w0 / ((1 - a1) * a0) - w1 * 2.0 / (a1 * (1 - a0))
    conv[:n_lo, n_lo] = ga[_LOW_LUMA[0]] / (8.0 * a2) * _upsample_table()
    _set_conv(model.FusionLayer[2], [e[:, i] for i in _LOW_LUMA] + [fused_base] + [e[:, i] for i in CHROMA_KEPT]
              + [v], conv, [e[:, i] for i in _LOW_LUMA] + [np.zeros(c)] + [e[:, i] for i in CHROMA_KEPT] + [v])
    for fusion in model.FusionLayer[3:]:
        _set_conv(fusion, [], np.zeros((0, 0, 3, 3)), [])
    alphas = torch.zeros_like(model.Alpha_encoder)
    alphas[:3] = torch.tensor(g["alpha"])
    model.Alpha_encoder.copy_(alphas)
    for fusion in model.de_FusionLayer:
        _set_conv(fusion, [], np.zeros((0, 0, 3, 3)), [])
    model.Alpha_decoder.zero_()
    if cfg.num_decoder_adapters:
        # decoder module 0 (colour): stream a holds a's chroma plus b's. For vif (grey infrared) that is the visible
        # colour and the module stays out (prompts ~0); for mef and mff (two colour shots) it subtracts half of
        # stream a (p_a = 0.5, gain -1): the mean of both colours. It writes no constant, so that with alpha 0.5 the
        # re-standardisation and the decoder LayerNorm turn 0.5 x + 0.5 f into x + f.
        off = DECODER_PROMPT_OFF
        dec0 = model.decoder_blocks_MoA[0]
        _constant_prompts(dec0, off, range(0, 2), p_b=off)
        _constant_prompts(dec0, 0.5, range(2, 4), p_b=off)
        chroma = [e_d[:, i] for i in CHROMA]
        _set_conv(model.de_FusionLayer[0], chroma, _centre([-1.0] * len(chroma)), chroma)
        alphas = torch.zeros_like(model.Alpha_decoder)
        alphas[0] = 0.5
        model.Alpha_decoder.copy_(alphas)

    # final encoder norm: identity affine; the constant dominates, so the LayerNorm divides by ~ K / sqrt(C)
    model.norm.weight.fill_(1.0)
    model.norm.bias.zero_()
    # decoder embedding: codes -> decoder codes at their original scale (K v_d + E_d mixed); w0, w1 are dropped
    model.decoder_embed.weight.copy_(_t(e_d @ e.T * (k / math.sqrt(c)), model.decoder_embed.weight))
    model.decoder_embed.bias.copy_(_t(k * v_d, model.decoder_embed.bias))
    model.decoder_norm.weight.fill_(1.0)
    model.decoder_norm.bias.zero_()
    # pixel head: undo both LayerNorm scalings and a's gain per code, decode to the normalised output patch
    scale = k / math.sqrt(d)
    head = dec @ np.diag(scale / ga) @ e_d.T
    model.decoder_pred.weight.copy_(_t(head, model.decoder_pred.weight))
    model.decoder_pred.bias.copy_(_t(dec_const, model.decoder_pred.bias))
    zero_dead_weights(model)
    # the fusion convolutions smooth over two tokens: inference must give the frame border that context
    model.config = cfg.replace(frame_margin=16)
    return model


@torch.no_grad()
def zero_dead_weights(model: nn.Module) -> int:
    """Zero the weights that cannot influence the output of a model whose blocks are exact identities.

    In a block with all-zero attention and MLP output projections, ``qkv`` and ``fc1`` (and the relative-position
    tables of pairs of such blocks, and the never-used ``cls_token``) have no effect; zeros make the saved file
    compress to its useful size. The output is unchanged bit for bit. Note that such blocks can then no longer
    learn (their gradients are zero): the codec backbone is meant to stay frozen. Returns the tensors zeroed.
    """
    count = 0

    def identity(blk: nn.Module) -> bool:
        outs = (blk.attn.proj.weight, blk.attn.proj.bias, blk.mlp.fc2.weight, blk.mlp.fc2.bias)
        return all(t is not None and not torch.any(t) for t in outs)

    for blocks, tables in ((model.blocks, model.en_relative_position),
                           (model.decoder_blocks, model.de_relative_position)):
        dead = [identity(blk) for blk in blocks]
        for blk, is_dead in zip(blocks, dead):
            if is_dead:
                for t in (blk.attn.qkv.weight, blk.attn.qkv.bias, blk.mlp.fc1.weight, blk.mlp.fc1.bias):
                    if t is not None:
                        t.zero_()
                        count += 1
        for k, table in enumerate(tables):
            if all(dead[2 * k : 2 * k + 2]):
                table.relative_position_bias_table.zero_()
                count += 1
    model.cls_token.zero_()
    return count + 1


def _task_router(adapter: nn.Module, e_dc: np.ndarray, v: np.ndarray, vif_index: int) -> None:
    """Router front end and gates: vif goes to experts 0-1, the other tasks to experts 2-3 (so that training the
    mef and mff routers and experts leaves vif untouched).

    ``y`` (the router input) gets three live entries: the luma DC code (8 x the block mean) of each stream, and a
    constant from the token's constant direction that dominates the second LayerNorm (so that ``y_0 - y_1`` is
    linear in the DC difference, ``s = r / (ref * sqrt(r - 1))``) and drives the gates.
    """
    dim = v.shape[0]
    r = adapter.dimReduction.weight.shape[0]
    k, ref = CODEC_GAINS["K"], CODEC_GAINS["ref"]
    w = np.zeros((r, 2 * dim))
    w[0, :dim] = k * e_dc  # LN1 scales codes by ~ sqrt(C)/K: row 0 reads sqrt(C) * DC_a
    w[1, dim:] = k * e_dc
    w[2, :dim] = ref * v  # sqrt(C) * ref, the constant
    adapter.dimReduction.weight.copy_(_t(w, adapter.dimReduction.weight))
    adapter.norm1.weight.fill_(1.0)
    adapter.norm1.bias.zero_()
    gamma = torch.zeros_like(adapter.norm2.weight)
    gamma[:3] = 1.0
    adapter.norm2.weight.copy_(gamma)
    adapter.norm2.bias.zero_()
    moe = adapter.MoA
    gate = torch.zeros_like(moe.w_gate)
    route = CODEC_GAINS["route"]
    gate[:, 2, 2:4] = route
    gate[vif_index, 2, :] = 0.0
    gate[vif_index, 2, 0:2] = route
    moe.w_gate.copy_(gate)
    moe.w_noise.zero_()


def _brighter_wins_experts(adapter: nn.Module) -> None:
    """Experts 0-1 (vif) give ``p_a = sigmoid(slope d + bias - hot_slope relu(-d - hot_margin) - dark_slope
    relu(dark_level - mean_a)) = 1 - p_b`` with ``d = mean_a - mean_b``: the block with the brighter mean luma wins,
    the visible image with a head start that very dark visible blocks lose, and an infrared block warmer by more than
    about 0.35 takes over. Experts 2-3 (mef, mff) give ``p_a = p_b = 0.5``."""
    r = adapter.dimReduction.weight.shape[0]
    ref = CODEC_GAINS["ref"]
    s = r / (ref * math.sqrt(r - 1))  # y_0 - y_1 = s (DC_a - DC_b) = 8 s d
    kappa = CODEC_GAINS["slope"] / (8.0 * s)
    kappa_hot = CODEC_GAINS["hot_slope"] / (8.0 * s)
    bias = CODEC_GAINS["bias"]
    half = r // 2
    for expert in list(adapter.MoA.experts)[:2]:
        w1 = torch.zeros_like(expert.fc1.weight)
        w1[0, 0], w1[0, 1] = 1.0, -1.0  # relu(y0 - y1)
        w1[1, 0], w1[1, 1] = -1.0, 1.0  # relu(y1 - y0)
        w1[2, 0], w1[2, 1] = -1.0, 1.0  # relu(y1 - y0 - 8 s hot_margin): infrared brighter by more than the margin
        # relu(8 s dark_level - s DC_a): the second LayerNorm leaves y0 = s DC_a - s (DC_a + DC_b) / r - 1 / sqrt(r - 1)
        # (the constant dominates its mean and spread), so s DC_a = ((r - 1) y0 + y1 + r / sqrt(r - 1)) / (r - 2)
        w1[3, 0], w1[3, 1] = -(r - 1) / (r - 2), -1.0 / (r - 2)
        expert.fc1.weight.copy_(w1)
        b1 = torch.zeros_like(expert.fc1.bias)
        b1[2] = -8.0 * s * CODEC_GAINS["hot_margin"]
        b1[3] = 8.0 * s * CODEC_GAINS["dark_level"] - r / (r - 2) / math.sqrt(r - 1)
        expert.fc1.bias.copy_(b1)
        kappa_dark = CODEC_GAINS["dark_slope"] / (8.0 * s)
        w2 = torch.zeros_like(expert.fc2.weight)
        w2[:half, 0], w2[:half, 1], w2[:half, 2], w2[:half, 3] = kappa, -kappa, -kappa_hot, -kappa_dark
        w2[half:, 0], w2[half:, 1], w2[half:, 2], w2[half:, 3] = -kappa, kappa, kappa_hot, kappa_dark
        expert.fc2.weight.copy_(w2)
        b2 = torch.full_like(expert.fc2.bias, -bias)
        b2[:half] = bias
        expert.fc2.bias.copy_(b2)
    _constant_prompts(adapter, 0.5, range(2, 4))


def encode_patches(img: torch.Tensor) -> torch.Tensor:
    """``(B, 3, H, W)`` RGB in [0, 1] (H, W multiples of 8) -> codes ``(B, 96, H/8, W/8)`` (float64)."""
    b, _, h, w = img.shape
    x = img.double().reshape(b, 3, h // 8, 8, w // 8, 8).permute(0, 2, 4, 1, 3, 5).reshape(-1, 3, 8, 8).numpy()
    codes = np.stack([_encode_x(p) for p in x])
    return torch.from_numpy(codes).reshape(b, h // 8, w // 8, N_CODES).permute(0, 3, 1, 2)


def decode_patches(codes: torch.Tensor) -> torch.Tensor:
    """Inverse of :func:`encode_patches` (chroma at half resolution): ``(B, 96, h, w)`` -> ``(B, 3, 8h, 8w)``."""
    b, _, hh, ww = codes.shape
    flat = codes.permute(0, 2, 3, 1).reshape(-1, N_CODES).double().numpy()
    x = np.stack([_decode_x(c) for c in flat]).reshape(b, hh, ww, 3, 8, 8)
    return torch.from_numpy(x).permute(0, 3, 1, 4, 2, 5).reshape(b, 3, hh * 8, ww * 8)


def reference_fusion(a: torch.Tensor, b: torch.Tensor, task: str = "mef") -> torch.Tensor:
    """What a codec-initialised model computes, written directly: ``(B, 3, H, W)`` in [0, 1], clipped.

    Per 8x8 block (codes from :func:`encode_patches`; ``S`` the 3x3 binomial over blocks and ``U`` the bilinear
    up-sampling of a block field into the low luma codes, both zero-padded at the frame border as the network's
    convolutions are): ``p_a = sigmoid(slope d + bias - hot_slope relu(-d - hot_margin) - dark_slope relu(dark_level
    - mean_a))``, ``d = mean_a - mean_b``, for vif, 0.5 otherwise, ``p_b = 1 - p_a``;
    low luma ``a + b + U(S(p_a DC_a + p_b DC_b) - S(DC_a + DC_b)) / 8``, i.e. the prompted smooth base plus both
    sources' detail above it; the other codes ``a + r b`` with ``r = gb / ga`` (:func:`_code_gains`), the colour
    codes then averaged with stream b's for mef and mff (decoder module 0).
    """
    g = CODEC_GAINS
    ca, cb = encode_patches(a), encode_patches(b)
    dc_a, dc_b = ca[:, :1], cb[:, :1]
    if task == "vif":
        d = (dc_a - dc_b) / 8.0
        pa = torch.sigmoid(g["slope"] * d + g["bias"] - g["hot_slope"] * torch.relu(-d - g["hot_margin"])
                           - g["dark_slope"] * torch.relu(g["dark_level"] - dc_a / 8.0))
    else:
        pa = torch.full_like(dc_a, 0.5)
    smooth = torch.as_tensor(_binomial(), dtype=torch.float64).view(1, 1, 3, 3)
    field = (torch.nn.functional.conv2d(pa * dc_a + (1 - pa) * dc_b, smooth, padding=1)
             - torch.nn.functional.conv2d(dc_a + dc_b, smooth, padding=1))
    up = torch.as_tensor(_upsample_table(), dtype=torch.float64).unsqueeze(1)  # (16, 1, 3, 3)
    ga, gb = _code_gains()
    ratio = torch.as_tensor(gb / ga, dtype=torch.float64).view(1, -1, 1, 1)
    out = ca + ratio * cb
    out[:, _LOW_LUMA] += torch.nn.functional.conv2d(field, up, padding=1) / 8.0
    # decoder colour module: x - (p_a x + p_b t), stream t holding b where stream a holds its residual of a
    a0, a1, a2 = g["alpha"]
    res = (1 - a2) * (1 - a1) * (1 - a0)
    col = torch.as_tensor(CHROMA)
    ga_c = torch.as_tensor(ga[CHROMA], dtype=torch.float64).view(1, -1, 1, 1)
    gb_c = torch.as_tensor(gb[CHROMA], dtype=torch.float64).view(1, -1, 1, 1)
    t_c = (ga_c - res) / ga_c * ca[:, col] + (gb_c + res) / ga_c * cb[:, col]
    p_a, p_b = (DECODER_PROMPT_OFF, DECODER_PROMPT_OFF) if task == "vif" else (0.5, DECODER_PROMPT_OFF)
    out[:, col] = (1 - p_a) * out[:, col] - p_b * t_c
    return decode_patches(out).clamp(0, 1).float()


def write_codec_weights(out: str, name: str = "tcmoa_tiny", seed: int = 0) -> str:
    """Build ``name``, apply :func:`codec_init` and save it (safetensors, all-zero tensors stored as shape only).

    The weights that cannot affect the output (random reductions and hidden layers of routers whose experts output
    constants) are drawn from ``torch.manual_seed(seed)``, so the file is the same on every run. Returns the path.
    """
    from fusion.models.checkpoint import save_checkpoint
    from fusion.models.registry import create_model

    torch.manual_seed(seed)
    model = create_model(name)
    codec_init(model, seed=seed)
    save_checkpoint(model, out, omit_zeros=True)
    return out


def main(argv: list[str] | None = None) -> int:
    """``python -m fusion.training.codec_init --out FILE``: write codec-initialised weights (the shipped tcmoa_tiny)."""
    import argparse

    p = argparse.ArgumentParser(description="Write the analytic codec initialisation of a small TC-MoA as a "
                                            "safetensors checkpoint (fusion/weights/tcmoa_tiny.safetensors is this).")
    p.add_argument("--out", required=True, help="output .safetensors file")
    p.add_argument("--name", default="tcmoa_tiny", help="model variant (tcmoa_tiny or tcmoa_small)")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    print(write_codec_weights(args.out, args.name, args.seed))
    return 0


if __name__ == "__main__":
    from fusion.utils.cli import run_cli

    run_cli(main)
