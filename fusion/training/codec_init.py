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
* encoder TC-MoA module 0 mixes the low-frequency codes (luma 4x4 DCT block + colour) of both streams, module 1
  the high-frequency luma codes, through their fusion convolutions (rank C/4 = 48 projections) with the official
  alpha = 0.5; the other modules start with alpha = 0 (identity); experts output 0 so every prompt is exactly 0.5;
  the adapters' reduction ignores the constant direction so that routers see the content;
* the decoder embedding and pixel head map the codes back to pixels.

The result is ``low = 5/9 a + 4/9 b`` and ``high = a + 0.8 b`` (per 8x8 block; chroma at half resolution):
weighted-average base with both sources' details, see :func:`reference_fusion`. Everything the official
training trains (prompts via the routers/experts, fusion convolutions, alphas, modal shifts) stays trainable.

Requirements: patch size 16, up-sampling 2, ``embed_dim >= 192`` (the 48-code bottleneck) and
``decoder_embed_dim >= 128``.
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
LOW = _LOW_LUMA + list(range(64, 96))  # 48 codes: luma 4x4 low block, both chroma blocks
HIGH = _HIGH_LUMA  # 48 codes: the rest of luma

CODEC_GAINS = {"alpha": 0.5, "g_low": 8.0, "g_high": 8.0, "K": 3.0e3, "kappa": 30.0, "ref": 100.0, "route": 1.5}
"""alpha of the two mixing modules, gains of their fusion convolutions, and K, the amplitude of the constant
direction (encoder and decoder). K trades the LayerNorms' linearity (error ~ (|codes| / K)^2 / 2, < 5e-4 here)
against float32 resolution of the codes next to the constant (~ 1e-4 of a code unit). ``kappa`` is the slope of
the infrared-visible "brighter block wins" prompt, ``ref`` the size of the constant that keeps the adapter's second
LayerNorm linear, ``route`` the router weight that sends vif to experts 0-1 and the other tasks to experts 2-3."""


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


def _mix_gains() -> tuple[float, float, float, float]:
    """Coefficients of a's and b's codes in stream a, relative to the constant direction, after modules 0 and 1."""
    a, g0, g1 = CODEC_GAINS["alpha"], CODEC_GAINS["g_low"], CODEC_GAINS["g_high"]
    low_a = 1 + a * g0 / (2 * (1 - a))
    low_b = a * g0 / (2 * (1 - a))
    high_a = 1 + a * g1 / (2 * (1 - a))
    high_b = a * g1 / (2 * (1 - a))
    return low_a, low_b, high_a, high_b


def _t(x: np.ndarray, like: torch.Tensor) -> torch.Tensor:
    return torch.as_tensor(np.ascontiguousarray(x), dtype=like.dtype, device=like.device).reshape(like.shape)


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
    if c // 4 < 48 or c < N_CODES + 2 or d < N_CODES + 2:
        raise ConfigError(f"{cfg.name}: codec init needs embed_dim >= 192 and decoder_embed_dim >= 98 "
                          f"(got {c} and {d})")
    if cfg.num_encoder_adapters < 2:
        raise ConfigError(f"{cfg.name}: codec init needs at least 2 encoder TC-MoA modules")
    enc, enc_const, dec, dec_const = _linear_maps()
    fe = _frame(c, N_CODES + 1, seed)
    e, v = fe[:, :N_CODES], fe[:, N_CODES]
    fd = _frame(d, N_CODES + 1, seed + 1)
    e_d, v_d = fd[:, :N_CODES], fd[:, N_CODES]
    k = CODEC_GAINS["K"]
    alpha = CODEC_GAINS["alpha"]

    # stem: tokens = E codes + K v
    model.patch_embed.proj.weight.copy_(_t(e @ enc, model.patch_embed.proj.weight))
    model.patch_embed.proj.bias.copy_(_t(k * v + e @ enc_const, model.patch_embed.proj.bias))
    model.pos_embed.zero_()
    model.decoder_pos_embed.zero_()
    for blk in [*model.blocks, *model.decoder_blocks]:
        for lin in (blk.attn.proj, blk.mlp.fc2):
            lin.weight.zero_()
            lin.bias.zero_()

    def set_fusion(layer: nn.Module, frame: np.ndarray, cols: list[int], gain: float) -> None:
        basis = frame[:, cols]  # (C', 48)
        r = layer.conv1.weight.shape[0]
        w1 = np.zeros((r, frame.shape[0]))
        w1[: len(cols)] = basis.T
        w3 = np.zeros((frame.shape[0], r))
        w3[:, : len(cols)] = basis
        w2 = np.zeros((r, r, 3, 3))
        w2[np.arange(len(cols)), np.arange(len(cols)), 1, 1] = gain
        layer.conv1.weight.copy_(_t(w1, layer.conv1.weight))
        layer.conv2.weight.copy_(_t(w2, layer.conv2.weight))
        layer.conv3.weight.copy_(_t(w3, layer.conv3.weight))

    def set_adapter(adapter: nn.Module, const_dir: np.ndarray) -> None:
        for expert in adapter.MoA.experts:
            expert.fc2.weight.zero_()
            expert.fc2.bias.zero_()
        # the reduction ignores the constant direction of both halves: routers see content only
        w = adapter.dimReduction.weight.detach().cpu().double().numpy()
        dim = const_dir.shape[0]
        proj = np.eye(dim) - np.outer(const_dir, const_dir)
        w[:, :dim] = w[:, :dim] @ proj
        w[:, dim:] = w[:, dim:] @ proj
        adapter.dimReduction.weight.copy_(_t(w, adapter.dimReduction.weight))
        adapter.modal_shifts.zero_()

    n_low = len(LOW)
    for i, (adapter, fusion) in enumerate(zip(model.blocks_MoA, model.FusionLayer)):
        set_adapter(adapter, v)
        if i == 0:
            _brighter_wins_router(adapter, e[:, 0], v, vif_index=cfg.task_index("vif"))
        if i == 1:
            set_fusion(fusion, e, HIGH, CODEC_GAINS["g_high"])
        else:
            set_fusion(fusion, e, LOW, CODEC_GAINS["g_low"] if i == 0 else 1.0)
    alphas = torch.zeros_like(model.Alpha_encoder)
    alphas[:2] = alpha
    model.Alpha_encoder.copy_(alphas)
    for adapter, fusion in zip(model.decoder_blocks_MoA, model.de_FusionLayer):
        set_adapter(adapter, v_d)
        cols = LOW[: min(n_low, fusion.conv1.weight.shape[0])]
        set_fusion(fusion, e_d, cols, 1.0)
    model.Alpha_decoder.zero_()

    # final encoder norm: identity affine. Stream a is s_v (K v + E mixed) with s_v = (1 - alpha)^2, so the
    # LayerNorm (which divides by ~ s_v K / sqrt(C), the constant dominating) gives sqrt(C) v + sqrt(C)/K E mixed
    model.norm.weight.fill_(1.0)
    model.norm.bias.zero_()
    # decoder embedding: codes -> decoder codes at their original scale (K v_d + E_d mixed)
    model.decoder_embed.weight.copy_(_t(e_d @ e.T * (k / math.sqrt(c)), model.decoder_embed.weight))
    model.decoder_embed.bias.copy_(_t(k * v_d, model.decoder_embed.bias))
    model.decoder_norm.weight.fill_(1.0)
    model.decoder_norm.bias.zero_()
    # pixel head: undo both LayerNorm scalings and the mixing gains, decode to the normalised output patch
    low_a, low_b, high_a, _ = _mix_gains()
    gains = np.ones(N_CODES)
    gains[LOW] = 1.0 / (low_a + low_b)
    gains[HIGH] = 1.0 / high_a
    # after the decoder norm the codes are sqrt(D)/K * mixed
    scale = k / math.sqrt(d)
    head = dec @ np.diag(gains * scale) @ e_d.T
    model.decoder_pred.weight.copy_(_t(head, model.decoder_pred.weight))
    model.decoder_pred.bias.copy_(_t(dec_const, model.decoder_pred.bias))
    zero_dead_weights(model)
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


def _brighter_wins_router(adapter: nn.Module, e_dc: np.ndarray, v: np.ndarray, vif_index: int) -> None:
    """Prompts of the low-frequency module: vif -> ``p_a = sigmoid(kappa * s * (DC_a - DC_b)) = 1 - p_b`` (the
    block with the brighter mean wins, a soft maximum-intensity rule); other tasks -> ``p_a = p_b = 0.5``.

    ``y`` (the router input) gets three live entries: the luma DC code of each stream, and a constant from the
    token's constant direction that dominates the second LayerNorm (so that ``y_0 - y_1`` is linear in the DC
    difference, ``s = 48 / (ref * sqrt(47))`` for r = 48) and serves the routers as a task-independent bias input.
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
    kappa = CODEC_GAINS["kappa"]
    half = r // 2
    for expert in list(moe.experts)[:2]:
        w1 = torch.zeros_like(expert.fc1.weight)
        w1[0, 0], w1[0, 1] = 1.0, -1.0
        w1[1, 0], w1[1, 1] = -1.0, 1.0
        expert.fc1.weight.copy_(w1)
        expert.fc1.bias.zero_()
        w2 = torch.zeros_like(expert.fc2.weight)
        w2[:half, 0], w2[:half, 1] = kappa, -kappa
        w2[half:, 0], w2[half:, 1] = -kappa, kappa
        expert.fc2.weight.copy_(w2)
        expert.fc2.bias.zero_()


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

    Per 8x8 block, with ``p_a + p_b = 1`` (0.5 each, or for vif ``p_a = sigmoid(kappa s (DC_a - DC_b))``) and the
    module-0 mixing ``low = ((1 - alpha) a + alpha g (p_a a + p_b b)) / ((1 - alpha) + alpha g)``;
    high codes ``a + (high_b / high_a) b``.
    """
    alpha, g0 = CODEC_GAINS["alpha"], CODEC_GAINS["g_low"]
    _, _, high_a, high_b = _mix_gains()
    ca, cb = encode_patches(a), encode_patches(b)
    if task == "vif":
        slope = CODEC_GAINS["kappa"] * 48 / (CODEC_GAINS["ref"] * math.sqrt(47))
        pa = torch.sigmoid(slope * (ca[:, :1] - cb[:, :1]))
    else:
        pa = torch.full_like(ca[:, :1], 0.5)
    pb = 1 - pa
    out = torch.empty_like(ca)
    out[:, LOW] = ((1 - alpha) * ca[:, LOW] + alpha * g0 * (pa * ca[:, LOW] + pb * cb[:, LOW])) / (
        (1 - alpha) + alpha * g0
    )
    out[:, HIGH] = ca[:, HIGH] + (high_b / high_a) * cb[:, HIGH]
    return decode_patches(out).clamp(0, 1).float()
