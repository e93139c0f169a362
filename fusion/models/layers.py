"""Building blocks of TC-MoA: windowed MAE blocks with shared relative-position tables, the mixture of adapters
and the fusion convolution.

Module and parameter names follow the official code so that official state dicts load without renaming.
Shapes: ``B`` batch, ``N = Hp * Wp`` tokens on the patch grid, ``C`` channels.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from timm.layers import trunc_normal_
from timm.models.vision_transformer import Attention
from torch import nn
from torch.distributions.normal import Normal

__all__ = [
    "sincos_pos_embed_2d",
    "resize_pos_embed",
    "relative_position_index",
    "RelativePositionBias",
    "WindowAttention",
    "window_partition",
    "window_merge",
    "Expert",
    "MMoE",
    "BiMixtureOfAdapters",
    "ConvFusionLayer",
    "restandardize",
    "cv_squared",
]

# np.finfo(float).eps, the value the official SparseDispatcher writes over exact zeros before the log
LOG_ZERO_EPS = float(np.finfo(float).eps)


# ---------------------------------------------------------------------------------------------- position embedding
def sincos_pos_embed_2d(dim: int, grid: int, cls_token: bool = True) -> torch.Tensor:
    """MAE's fixed 2-D sin-cos embedding, ``(1, [1 +] grid², dim)`` float32 (cls row all zeros).

    The first half of the channels encodes the column (x), the second half the row (y), as in MAE's
    ``get_2d_sincos_pos_embed``; computed in float64 and rounded once.
    """
    if dim % 4:
        raise ValueError(f"sin-cos embedding width must be a multiple of 4, got {dim}")
    omega = torch.arange(dim // 4, dtype=torch.float64) / (dim / 4.0)
    omega = 1.0 / 10000**omega
    ys, xs = torch.meshgrid(torch.arange(grid, dtype=torch.float64), torch.arange(grid, dtype=torch.float64),
                            indexing="ij")

    def embed_1d(pos: torch.Tensor) -> torch.Tensor:
        out = pos.reshape(-1, 1) * omega[None]
        return torch.cat([out.sin(), out.cos()], dim=1)

    emb = torch.cat([embed_1d(xs), embed_1d(ys)], dim=1)
    if cls_token:
        emb = torch.cat([torch.zeros(1, dim, dtype=torch.float64), emb], dim=0)
    return emb.float().unsqueeze(0)


def resize_pos_embed(pos_embed: torch.Tensor, grid: int, hp: int, wp: int, layout: str = "official") -> torch.Tensor:
    """Resize MAE's ``(1, 1 + grid², C)`` embedding to the token grid ``(hp, wp)``.

    ``layout="official"`` does exactly what the official code does: it resizes the ``grid × grid`` map to
    ``size=(Wp, Hp)`` (rows = Wp, cols = Hp) and then flattens row-major onto tokens that are flattened over
    ``(Hp, Wp)``. For non-square grids this transposes and reshapes the embedding (docs/tcmoa.md §6 Q8); the official
    prediction of non-square images depends on it. ``layout="aspect"`` resizes to ``(Hp, Wp)``, so every token gets
    the embedding of its own row and column (what whole-frame inference of non-square frames uses). Both are equal
    on square grids.

    Returns:
        ``(1, hp * wp, C)``.
    """
    if layout not in ("official", "aspect"):
        raise ValueError(f"layout={layout!r}: expected 'official' or 'aspect'")
    c = pos_embed.shape[-1]
    g = pos_embed[:, 1:, :].reshape(1, grid, grid, c).permute(0, 3, 1, 2)
    size = (wp, hp) if layout == "official" else (hp, wp)
    g = F.interpolate(g, size=size, mode="bilinear", align_corners=False)
    return g.reshape(1, c, wp * hp).permute(0, 2, 1)


# ---------------------------------------------------------------------------------------------- window attention
def relative_position_index(window: int) -> torch.Tensor:
    """Swin's index ``(window², window²)`` int64: ``(yi - yj + w - 1) * (2w - 1) + (xi - xj + w - 1)``."""
    coords = torch.stack(torch.meshgrid(torch.arange(window), torch.arange(window), indexing="ij")).flatten(1)
    rel = coords[:, :, None] - coords[:, None, :]
    rel = rel.permute(1, 2, 0) + (window - 1)
    return rel[..., 0] * (2 * window - 1) + rel[..., 1]


class RelativePositionBias(nn.Module):
    """Learned relative-position bias of one block pair (``en_relative_position.k`` / ``de_relative_position.k``).

    ``forward()`` returns ``(1, heads, window², window²)``.
    """

    def __init__(self, window_size: int, num_heads: int) -> None:
        super().__init__()
        self.window_size = window_size
        self.num_heads = num_heads
        self.relative_position_bias_table = nn.Parameter(torch.zeros((2 * window_size - 1) ** 2, num_heads))
        self.register_buffer("relative_position_index", relative_position_index(window_size))
        trunc_normal_(self.relative_position_bias_table, std=0.02)

    def forward(self) -> torch.Tensor:
        n = self.window_size * self.window_size
        bias = self.relative_position_bias_table[self.relative_position_index.view(-1)].view(n, n, -1)
        return bias.permute(2, 0, 1).contiguous().unsqueeze(0)


class WindowAttention(Attention):
    """timm's attention with an additive bias (the relative-position table) passed as ``attn_mask``.

    The fused path calls ``F.scaled_dot_product_attention``; the explicit path keeps the official operation order
    ``softmax((q kᵀ) · scale + bias)``. Both agree within 1e-5 (tested).
    """

    def forward(self, x: torch.Tensor, attn_mask: torch.Tensor | None = None, is_causal: bool = False) -> torch.Tensor:
        b, n, _ = x.shape
        qkv = self.qkv(x).reshape(b, n, 3, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4)
        q, k, v = qkv.unbind(0)
        if self.fused_attn:
            mask = attn_mask.to(q.dtype) if attn_mask is not None else None
            x = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, scale=self.scale)
        else:
            attn = (q @ k.transpose(-2, -1)) * self.scale
            if attn_mask is not None:
                attn = attn + attn_mask
            x = attn.softmax(dim=-1) @ v
        x = x.transpose(1, 2).reshape(b, n, self.attn_dim)
        return self.proj(x)


def window_partition(x: torch.Tensor, hp: int, wp: int, window: int, shift: int) -> torch.Tensor:
    """``(B, Hp·Wp, C)`` tokens → ``(B·nW, window², C)`` windows, after a cyclic roll by ``-shift`` if ``shift``."""
    b, _, c = x.shape
    x = x.view(b, hp, wp, c)
    if shift:
        x = torch.roll(x, shifts=(-shift, -shift), dims=(1, 2))
    x = x.view(b, hp // window, window, wp // window, window, c).permute(0, 1, 3, 2, 4, 5)
    return x.reshape(-1, window * window, c)


def window_merge(w: torch.Tensor, hp: int, wp: int, window: int, shift: int) -> torch.Tensor:
    """Inverse of :func:`window_partition`: ``(B·nW, window², C)`` → ``(B, Hp·Wp, C)``."""
    c = w.shape[-1]
    b = w.shape[0] // ((hp // window) * (wp // window))
    x = w.view(b, hp // window, wp // window, window, window, c).permute(0, 1, 3, 2, 4, 5).reshape(b, hp, wp, c)
    if shift:
        x = torch.roll(x, shifts=(shift, shift), dims=(1, 2))
    return x.reshape(b, hp * wp, c)


# ---------------------------------------------------------------------------------------------- mixture of adapters
class Expert(nn.Module):
    """One adapter expert ``fc2(ReLU(fc1(y)))``."""

    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, y: torch.Tensor) -> torch.Tensor:
        return self.fc2(F.relu(self.fc1(y)))


def cv_squared(v: torch.Tensor) -> torch.Tensor:
    """Squared coefficient of variation ``var_unbiased(v) / (mean(v)² + 1e-10)`` (0 for a single element)."""
    v = v.float()
    if v.shape[0] == 1:
        return v.new_zeros(())
    return v.var() / (v.mean() ** 2 + 1e-10)


class MMoE(nn.Module):
    """Shared experts with one noisy top-k router per task, combined in log space (``blocks_MoA.k.MoA``).

    For tokens ``y`` ``(T, r)`` and a task index, the routing is Shazeer et al.'s noisy top-k gating with the
    official details: softmax over the top-k logits, gates ``<= gate_threshold`` zeroed afterwards without
    renormalisation, and the combination ``log(Σ_e G_e · exp(E_e(y)))`` with an exact-zero sum replaced by
    ``np.finfo(float).eps``. ``forward`` returns ``(z, aux_loss)`` with ``z`` ``(T, r)`` and a 0-dim aux loss
    ``coef · (cv²(importance) + cv²(load))``.
    """

    def __init__(self, dim: int, hidden: int, num_experts: int = 4, top_k: int = 2, num_tasks: int = 3,
                 noise_eps: float = 0.1, aux_loss_coef: float = 1e-3, gate_threshold: float = 1e-4,
                 dispatch: str = "dense") -> None:
        super().__init__()
        self.num_experts = num_experts
        self.top_k = top_k
        self.noise_eps = noise_eps
        self.aux_loss_coef = aux_loss_coef
        self.gate_threshold = gate_threshold
        self.dispatch = dispatch
        self.w_gate = nn.Parameter(torch.zeros(num_tasks, dim, num_experts))
        self.w_noise = nn.Parameter(torch.zeros(num_tasks, dim, num_experts))
        self.register_buffer("mean", torch.tensor([0.0]))
        self.register_buffer("std", torch.tensor([1.0]))
        self.experts = nn.ModuleList([Expert(dim, hidden) for _ in range(num_experts)])
        self.record_gates = False  # fusion.models.explain sets it to read the routing
        self.last_gates: torch.Tensor | None = None

    def gating(self, y: torch.Tensor, task: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Gates ``(T, E)`` (before the threshold) and the load ``(E,)`` used by the balancing loss."""
        clean = y @ self.w_gate[task]
        noisy_train = self.training
        if noisy_train:
            noise_std = F.softplus(y @ self.w_noise[task]) + self.noise_eps
            noisy = clean + torch.randn_like(clean) * noise_std
            logits = noisy
        else:
            logits = clean
        # torch.topk as the official code: with tied logits (zero-initialised w_gate) the choice is torch's
        top_logits, top_idx = logits.topk(min(self.top_k + 1, self.num_experts), dim=1)
        gates_k = torch.softmax(top_logits[:, : self.top_k], dim=1)
        gates = torch.zeros_like(logits).scatter(1, top_idx[:, : self.top_k], gates_k)
        if noisy_train and self.top_k < self.num_experts:
            load = self._prob_in_top_k(clean, noisy, noise_std, top_logits).sum(0)
        else:
            load = (gates > 0).sum(0)
        return gates, load

    def _prob_in_top_k(self, clean: torch.Tensor, noisy: torch.Tensor, noise_std: torch.Tensor,
                       top_values: torch.Tensor) -> torch.Tensor:
        threshold_in = top_values[:, self.top_k : self.top_k + 1]
        threshold_out = top_values[:, self.top_k - 1 : self.top_k]
        is_in = noisy > threshold_in
        normal = Normal(self.mean, self.std)
        prob_in = normal.cdf((clean - threshold_in) / noise_std)
        prob_out = normal.cdf((clean - threshold_out) / noise_std)
        return torch.where(is_in, prob_in, prob_out)

    def forward(self, y: torch.Tensor, task: int) -> tuple[torch.Tensor, torch.Tensor]:
        gates, load = self.gating(y, task)
        importance = gates.sum(0)
        aux = (cv_squared(importance) + cv_squared(load)) * self.aux_loss_coef
        gates = gates.masked_fill(gates <= self.gate_threshold, 0.0)
        if self.record_gates:
            self.last_gates = gates.detach()
        if self.dispatch == "sparse":
            combined = self._combine_sparse(y, gates)
        else:
            combined = self._combine_dense(y, gates)
        combined = torch.where(combined == 0, torch.full_like(combined, LOG_ZERO_EPS), combined)
        return combined.log(), aux

    def _combine_dense(self, y: torch.Tensor, gates: torch.Tensor) -> torch.Tensor:
        combined = None
        for e, expert in enumerate(self.experts):
            g = gates[:, e : e + 1]
            # where() rather than g * exp(): an unrouted expert whose output overflows must add 0, not nan
            term = torch.where(g > 0, expert(y).exp() * g, torch.zeros((), dtype=y.dtype, device=y.device))
            combined = term if combined is None else combined + term
        return combined

    def _combine_sparse(self, y: torch.Tensor, gates: torch.Tensor) -> torch.Tensor:
        combined = torch.zeros_like(y)
        for e, expert in enumerate(self.experts):
            rows = torch.nonzero(gates[:, e] > 0).squeeze(1)
            if rows.numel() == 0:
                continue
            out = expert(y.index_select(0, rows)).exp() * gates.index_select(0, rows)[:, e : e + 1]
            combined = combined.index_add(0, rows, out)
        return combined


class BiMixtureOfAdapters(nn.Module):
    """The per-token router/adapter of one TC-MoA point (``blocks_MoA.k`` / ``decoder_blocks_MoA.k``).

    ``forward(x, t, task)`` with both streams ``(B, N, C)`` returns ``(x̃, t̃, p_a, p_b, aux)``:
    ``y = LN(W_red · LN(cat(x, t)))`` (eps 1e-5, bias-free reduction to ``C/4``), ``z = MMoE(y)``, prompts
    ``p = σ(mean over each half of z)`` ``(B, N, 1)``, ``x̃ = p_a x + μ[2·task]``, ``t̃ = p_b t + μ[2·task+1]``.
    ``modal_shifts`` ``(2·num_tasks, C)`` are registered here (the official ones are unsaved random constants).
    Runs in float32 with autocast disabled, as the official code.
    """

    def __init__(self, dim: int, num_tasks: int = 3, num_experts: int = 4, top_k: int = 2, noise_eps: float = 0.1,
                 aux_loss_coef: float = 1e-3, gate_threshold: float = 1e-4, ln_eps: float = 1e-5,
                 dispatch: str = "dense", train_modal_shifts: bool = True) -> None:
        super().__init__()
        self.dim = dim
        self.modal_shifts = nn.Parameter(torch.zeros(2 * num_tasks, dim), requires_grad=train_modal_shifts)
        self.dimReduction = nn.Linear(dim * 2, dim // 4, bias=False)
        self.MoA = MMoE(dim // 4, dim // 32, num_experts, top_k, num_tasks, noise_eps, aux_loss_coef,
                        gate_threshold, dispatch)
        self.norm1 = nn.LayerNorm(dim * 2, eps=ln_eps)
        self.norm2 = nn.LayerNorm(dim // 4, eps=ln_eps)

    def forward(self, x: torch.Tensor, t: torch.Tensor, task: int) -> tuple[torch.Tensor, ...]:
        b, n, c = x.shape
        with torch.autocast(x.device.type, enabled=False):
            x = x.float()
            t = t.float()
            y = self.norm2(self.dimReduction(self.norm1(torch.cat([x, t], dim=-1))))
            z, aux = self.MoA(y.reshape(b * n, c // 4), task)
            z = z.view(b, n, c // 4)
            z_a, z_b = torch.chunk(z, 2, dim=-1)
            p_a = torch.sigmoid(z_a.mean(dim=-1, keepdim=True))
            p_b = torch.sigmoid(z_b.mean(dim=-1, keepdim=True))
            x_out = p_a * x + self.modal_shifts[2 * task]
            t_out = p_b * t + self.modal_shifts[2 * task + 1]
        return x_out, t_out, p_a, p_b, aux


class ConvFusionLayer(nn.Module):
    """Bias-free 1×1 → 3×3 → 1×1 convolution bottleneck (``C → C/4 → C/4 → C``) without activations."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(dim, dim // 4, 1, bias=False)
        self.conv2 = nn.Conv2d(dim // 4, dim // 4, 3, padding=1, bias=False)
        self.conv3 = nn.Conv2d(dim // 4, dim, 1, bias=False)

    def forward(self, x: torch.Tensor, hp: int, wp: int) -> torch.Tensor:
        b, n, c = x.shape
        f = x.transpose(1, 2).reshape(b, c, hp, wp)
        f = self.conv3(self.conv2(self.conv1(f)))
        return f.reshape(b, c, n).transpose(1, 2)


def restandardize(new: torch.Tensor, old: torch.Tensor, eps: float = 1e-12) -> torch.Tensor:
    """Give ``new`` ``(B, N, C)`` the per-sample mean and unbiased std of ``old`` (over tokens × channels)."""
    dims = tuple(range(1, new.dim()))
    m_new = new.mean(dim=dims, keepdim=True)
    s_new = new.std(dim=dims, keepdim=True)
    m_old = old.mean(dim=dims, keepdim=True)
    s_old = old.std(dim=dims, keepdim=True)
    return (new - m_new) * s_old / (s_new + eps) + m_old

