"""The TC-MoA network (Zhu et al., CVPR 2024) on timm blocks, faithful to the official code (commit 48e4a54).

One frozen MAE ViT (encoder + pixel decoder) processes both sources as two token streams that only meet at the
TC-MoA points. The forward is the official one (see ``docs/tcmoa.md`` §1) without the loss computation:

1. ×2 bilinear up-sampling, 16×16 patch embedding, MAE position embedding resized with the official (transposed)
   order;
2. encoder blocks on 14×14 windows (odd blocks cyclically shifted by 7, no mask), relative-position tables
   shared by block pairs; a TC-MoA step after blocks 1, 5, 9, …;
3. final LayerNorm, decoder embedding and position embedding, decoder blocks with TC-MoA after blocks 1 and 5
   (each followed by a re-standardisation of both streams);
4. only stream a is decoded: ``decoder_norm``, ``decoder_pred``, unpatchify to ``(B, 3, 2H, 2W)`` in
   ImageNet-normalised space, nearest reduction to ``(H, W)``, ``clip((x·std + mean)·255, 0, 255)/255``.

Speed-ups that do not change the result: the two streams run through the shared blocks as one batch of ``2B``
(nothing in a block mixes samples), attention uses ``F.scaled_dot_product_attention`` with the bias as mask, the
mixture of experts is computed densely, and stream b is dropped after the last decoder TC-MoA (the official code
computes and discards it).
"""

from __future__ import annotations

from collections.abc import Iterator
from functools import partial
from typing import Any

import torch
import torch.nn.functional as F
from timm.layers import PatchEmbed
from timm.models.vision_transformer import Block
from torch import nn
from torch.utils.checkpoint import checkpoint as grad_checkpoint

from fusion.models.config import TCMoAConfig
from fusion.models.layers import (
    BiMixtureOfAdapters,
    ConvFusionLayer,
    RelativePositionBias,
    WindowAttention,
    resize_pos_embed,
    restandardize,
    sincos_pos_embed_2d,
    window_partition,
)
from fusion.utils.checks import check_tensor_pair

__all__ = [
    "TCMoA",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "BACKBONE_PREFIXES",
    "is_backbone_key",
    "is_constant_buffer_key",
    "normalize",
    "denormalize",
    "prompt_loss",
]

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

BACKBONE_PREFIXES: tuple[str, ...] = (
    "cls_token",
    "pos_embed",
    "patch_embed.",
    "blocks.",
    "norm.",
    "decoder_embed.",
    "decoder_pos_embed",
    "decoder_blocks.",
    "decoder_norm.",
    "decoder_pred.",
)
"""State-dict key prefixes of the frozen MAE parts (the names the official code freezes)."""


def is_backbone_key(key: str) -> bool:
    """True for keys of the frozen MAE encoder/decoder (``blocks.3.attn.qkv.weight``), False for TC-MoA keys."""
    return key.startswith(BACKBONE_PREFIXES)


def is_constant_buffer_key(key: str) -> bool:
    """True for buffers that are constants of the architecture (relative-position index, MoE ``mean``/``std``)."""
    return key.endswith((".relative_position_index", ".MoA.mean", ".MoA.std"))


def normalize(x: torch.Tensor) -> torch.Tensor:
    """ImageNet-normalise RGB images ``(B, 3, H, W)`` in [0, 1] (what the model expects)."""
    mean = torch.tensor(IMAGENET_MEAN, dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD, dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
    return (x - mean) / std


def denormalize(x: torch.Tensor) -> torch.Tensor:
    """Inverse of :func:`normalize`: ImageNet-normalised ``(B, 3, H, W)`` back to [0, 1] RGB (not clipped)."""
    mean = torch.tensor(IMAGENET_MEAN, dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD, dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
    return x * std + mean


def prompt_loss(aux: dict[str, Any]) -> torch.Tensor:
    """The official prompt ("mutual information") loss from ``model(..., return_aux=True)[1]``:
    ``0.75·MSE(P_a^enc + P_b^enc, 1) + 0.25·MSE(P_a^dec + P_b^dec, 1)``."""
    enc = aux["prompts_enc_a"] + aux["prompts_enc_b"]
    dec = aux["prompts_dec_a"] + aux["prompts_dec_b"]
    return 0.75 * F.mse_loss(enc, torch.ones_like(enc)) + 0.25 * F.mse_loss(dec, torch.ones_like(dec))


class TCMoA(nn.Module):
    """TC-MoA fusion network.

    Args:
        config: the variant (:class:`~fusion.models.config.TCMoAConfig`); build by name with
            :func:`fusion.models.create_model`.

    ``forward(a, b, task, return_aux=False)`` takes ImageNet-normalised float RGB sources ``(B, 3, H, W)`` with
    ``H`` and ``W`` multiples of ``config.input_multiple`` (112) and returns the fused RGB image ``(B, 3, H, W)``
    in [0, 1]; with ``return_aux=True`` it returns ``(fused, aux)`` (see :meth:`forward`).

    Parameter names equal the official state-dict keys; the MAE parts (:data:`BACKBONE_PREFIXES`) are frozen
    (``requires_grad=False``) at construction.
    """

    def __init__(self, config: TCMoAConfig | None = None) -> None:
        super().__init__()
        cfg = config or TCMoAConfig()
        self.config = cfg
        c, d = cfg.embed_dim, cfg.decoder_embed_dim
        n_enc, n_dec = cfg.num_encoder_adapters, cfg.num_decoder_adapters
        backbone_norm = partial(nn.LayerNorm, eps=cfg.backbone_ln_eps)
        n_pos = cfg.pos_embed_grid**2 + 1

        # registration order reproduces the official state_dict order
        self.cls_token = nn.Parameter(torch.zeros(1, 1, c))
        self.pos_embed = nn.Parameter(torch.zeros(1, n_pos, c))
        self.decoder_pos_embed = nn.Parameter(torch.zeros(1, n_pos, d))
        self.Alpha_encoder = nn.Parameter(torch.full((n_enc,), cfg.alpha_init))
        self.Alpha_decoder = nn.Parameter(torch.full((n_dec,), cfg.alpha_init))

        self.patch_embed = PatchEmbed(img_size=None, patch_size=cfg.patch_size, in_chans=cfg.in_chans, embed_dim=c,
                                      strict_img_size=False)
        self.en_relative_position = nn.ModuleList(
            [RelativePositionBias(cfg.window_size, cfg.num_heads) for _ in range(cfg.depth // 2)])
        self.blocks = nn.ModuleList([self._block(c, cfg.num_heads, backbone_norm) for _ in range(cfg.depth)])
        self.norm = backbone_norm(c)
        self.blocks_MoA = nn.ModuleList([self._adapter(c) for _ in range(n_enc)])
        self.FusionLayer = nn.ModuleList([ConvFusionLayer(c) for _ in range(n_enc)])

        self.decoder_embed = nn.Linear(c, d)
        self.de_relative_position = nn.ModuleList(
            [RelativePositionBias(cfg.window_size, cfg.decoder_num_heads) for _ in range(cfg.decoder_depth // 2)])
        self.decoder_blocks = nn.ModuleList(
            [self._block(d, cfg.decoder_num_heads, backbone_norm) for _ in range(cfg.decoder_depth)])
        self.decoder_blocks_MoA = nn.ModuleList([self._adapter(d) for _ in range(n_dec)])
        self.de_FusionLayer = nn.ModuleList([ConvFusionLayer(d) for _ in range(n_dec)])
        self.decoder_norm = backbone_norm(d)
        self.decoder_pred = nn.Linear(d, cfg.patch_size**2 * cfg.in_chans)

        self.register_buffer("pixel_mean", torch.tensor(IMAGENET_MEAN).view(3, 1, 1), persistent=False)
        self.register_buffer("pixel_std", torch.tensor(IMAGENET_STD).view(3, 1, 1), persistent=False)
        self.grad_checkpointing = False
        self._layout_cache: dict[tuple[Any, int, str], Any] = {}

        self.initialize_weights()
        self.freeze_backbone()

    # ------------------------------------------------------------------ construction helpers
    def _block(self, dim: int, heads: int, norm_layer: Any) -> Block:
        blk = Block(dim, heads, mlp_ratio=self.config.mlp_ratio, qkv_bias=True, norm_layer=norm_layer,
                    attn_layer=WindowAttention)
        blk.attn.fused_attn = self.config.fused_attn
        return blk

    def _adapter(self, dim: int) -> BiMixtureOfAdapters:
        cfg = self.config
        return BiMixtureOfAdapters(dim, cfg.num_tasks, cfg.num_experts, cfg.top_k, cfg.noise_eps, cfg.aux_loss_coef,
                                   cfg.gate_threshold, cfg.adapter_ln_eps, cfg.moe_dispatch, cfg.train_modal_shifts)

    def initialize_weights(self) -> None:
        """Official initialisation (docs/tcmoa.md §6 Q14): sin-cos position embeddings, xavier-uniform Linear layers
        with zero biases, unit LayerNorms, xavier patch embedding, N(0, .02) cls token; convolutions keep PyTorch's
        default, relative-position tables trunc-normal(.02), routers zero, α = ``alpha_init``, modal shifts
        N(0, ``modal_shift_std``) from ``modal_shift_seed`` (zeros by default)."""
        cfg = self.config
        with torch.no_grad():
            self.pos_embed.copy_(sincos_pos_embed_2d(cfg.embed_dim, cfg.pos_embed_grid))
            self.decoder_pos_embed.copy_(sincos_pos_embed_2d(cfg.decoder_embed_dim, cfg.pos_embed_grid))
            w = self.patch_embed.proj.weight
            nn.init.xavier_uniform_(w.view(w.shape[0], -1))
            nn.init.normal_(self.cls_token, std=0.02)
            self.apply(self._init_module)
            self.reset_modal_shifts(cfg.modal_shift_std, cfg.modal_shift_seed)

    @staticmethod
    def _init_module(m: nn.Module) -> None:
        if isinstance(m, nn.Linear):
            nn.init.xavier_uniform_(m.weight)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.LayerNorm):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)

    def reset_modal_shifts(self, std: float = 0.0, seed: int | None = None) -> None:
        """Set every modal shift to zeros (``std=0``) or to N(0, std²) drawn from ``seed`` (CPU generator)."""
        gen = torch.Generator().manual_seed(seed) if seed is not None else None
        with torch.no_grad():
            for adapter in [*self.blocks_MoA, *self.decoder_blocks_MoA]:
                shift = adapter.modal_shifts
                if std > 0:
                    shift.copy_(torch.randn(shift.shape, generator=gen) * std)
                else:
                    shift.zero_()

    def freeze_backbone(self) -> None:
        """``requires_grad=False`` on the MAE parts, True on everything TC-MoA (modal shifts per config)."""
        for name, p in self.named_parameters():
            if is_backbone_key(name):
                p.requires_grad_(False)
            elif name.endswith("modal_shifts"):
                p.requires_grad_(self.config.train_modal_shifts)
            else:
                p.requires_grad_(True)

    # ------------------------------------------------------------------ training helpers
    def trainable_named_parameters(self) -> Iterator[tuple[str, nn.Parameter]]:
        """``(name, parameter)`` of every parameter with ``requires_grad``."""
        return ((n, p) for n, p in self.named_parameters() if p.requires_grad)

    def count_parameters(self, trainable_only: bool = True, include_modal_shifts: bool = True) -> int:
        """Number of (trainable) parameters; ``include_modal_shifts=False`` gives the design's counts
        (Base 3,865,197, Large 11,345,544 trainable)."""
        total = 0
        for name, p in self.named_parameters():
            if trainable_only and not p.requires_grad:
                continue
            if not include_modal_shifts and name.endswith("modal_shifts"):
                continue
            total += p.numel()
        return total

    def param_groups(self, weight_decay: float = 0.05) -> list[dict[str, Any]]:
        """AdamW groups over trainable parameters as the official training (timm ``add_weight_decay``): decay for
        ≥2-D weights (routers, tables, convolutions), none for 1-D parameters, biases, α and the modal shifts."""
        decay, no_decay = [], []
        for name, p in self.trainable_named_parameters():
            if p.ndim <= 1 or name.endswith(".bias") or name.endswith("modal_shifts"):
                no_decay.append(p)
            else:
                decay.append(p)
        return [{"params": no_decay, "weight_decay": 0.0}, {"params": decay, "weight_decay": weight_decay}]

    def set_grad_checkpointing(self, enable: bool = True) -> None:
        """Recompute backbone blocks in the backward pass (training memory ÷ ~depth, ~30% slower)."""
        self.grad_checkpointing = enable

    def set_fused_attn(self, enable: bool = True) -> None:
        """Switch every block between ``scaled_dot_product_attention`` and the explicit softmax."""
        for blk in [*self.blocks, *self.decoder_blocks]:
            blk.attn.fused_attn = enable

    # ------------------------------------------------------------------ forward
    def check_inputs(self, a: torch.Tensor, b: torch.Tensor) -> None:
        """Raise :class:`InputError` unless ``a`` and ``b`` are float ``(B, 3, H, W)`` of equal shape with ``H`` and
        ``W`` multiples of ``config.input_multiple``."""
        check_tensor_pair(a, b, "TCMoA", channels=self.config.in_chans, multiple=self.config.input_multiple,
                          values="ImageNet-normalised float")

    def _layouts(self, hp: int, wp: int, device: torch.device) -> dict[str, torch.Tensor]:
        """Token permutations between the flat row-major order and the (shifted) window orders.

        ``win{s}[j]`` is the flat index of the token at window-ordered position ``j`` (``s`` = 0 or 1 for
        unshifted/shifted), ``flat{s}`` its inverse, ``s{a}to{b}`` the composition used between two blocks, so that
        one gather replaces the official reverse + roll + roll + partition (a pure permutation: results unchanged).
        """
        key = (hp, wp, str(device))
        cached = self._layout_cache.get(key)
        if cached is not None:
            return cached
        ws, shift = self.config.window_size, self.config.shift_size
        ids = torch.arange(hp * wp, device=device).view(1, hp * wp, 1)
        out: dict[str, torch.Tensor] = {}
        for s, sh in ((0, 0), (1, shift)):
            win = window_partition(ids, hp, wp, ws, sh).reshape(-1)
            out[f"win{s}"] = win
            out[f"flat{s}"] = torch.argsort(win)
        out["s0to1"] = out["flat0"][out["win1"]]
        out["s1to0"] = out["flat1"][out["win0"]]
        self._layout_cache[key] = out
        return out

    def _run_blocks(self, blocks: nn.ModuleList, tables: nn.ModuleList, tokens: torch.Tensor, hp: int, wp: int,
                    layouts: dict[str, torch.Tensor], hook: Any) -> torch.Tensor:
        """Run window blocks on flat tokens ``(B, N, C)``; ``hook(i, flat_tokens)`` after every TC-MoA block
        returns the new flat tokens. Returns flat tokens."""
        ws2 = self.config.window_size**2
        state = None  # None: flat order; 0/1: window order of an unshifted/shifted block
        bias, bias_pair = None, -1
        for i, blk in enumerate(blocks):
            target = i % 2
            if getattr(blk, "is_identity", False):
                # an exact identity (skip_identity_blocks): the tokens stay in whatever order they are in
                if self.config.adapter_after(i):
                    if state is not None:
                        tokens = tokens.index_select(1, layouts[f"flat{state}"])
                    tokens = hook(i, tokens)
                    state = None
                continue
            if bias_pair != i // 2:
                bias, bias_pair = tables[i // 2](), i // 2
            if state is None:
                tokens = tokens.index_select(1, layouts[f"win{target}"])
            elif state != target:
                tokens = tokens.index_select(1, layouts[f"s{state}to{target}"])
            state = target
            b, n, c = tokens.shape
            w = tokens.view(b * n // ws2, ws2, c)
            if self.grad_checkpointing and self.training and torch.is_grad_enabled():
                w = grad_checkpoint(blk, w, bias, use_reentrant=False)
            else:
                w = blk(w, attn_mask=bias)
            tokens = w.view(b, n, c)
            if self.config.adapter_after(i):
                tokens = hook(i, tokens.index_select(1, layouts[f"flat{state}"]))
                state = None
        if state is not None:
            tokens = tokens.index_select(1, layouts[f"flat{state}"])
        return tokens

    def _tc_moa(self, adapter: BiMixtureOfAdapters, fusion: ConvFusionLayer, alpha: torch.Tensor,
                x: torch.Tensor, t: torch.Tensor, task: int, hp: int, wp: int,
                restd: bool) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        x_moa, t_moa, p_a, p_b, aux = adapter(x, t, task)
        f = fusion(x_moa + t_moa, hp, wp)
        x_new = f * alpha + (1 - alpha) * x
        t_new = f * alpha + (1 - alpha) * t
        if restd:
            with torch.autocast(x.device.type, enabled=False):
                x_new = restandardize(x_new.float(), x.float())
                t_new = restandardize(t_new.float(), t.float())
        return x_new, t_new, p_a, p_b, aux

    def forward(self, a: torch.Tensor, b: torch.Tensor, task: str | int = 0, return_aux: bool = False,
                pos_embed: str = "official") -> torch.Tensor | tuple[torch.Tensor, dict[str, Any]]:
        """Fuse source ``a`` (visible / over-exposed / far-focus) with ``b`` (infrared / under-exposed / near-focus).

        Args:
            a, b: ImageNet-normalised RGB ``(B, 3, H, W)``, ``H`` and ``W`` multiples of 112.
            task: ``'vif'``, ``'mef'``, ``'mff'`` or an index (0, 1, 2, … < ``num_tasks``).
            return_aux: also return the routing loss and the prompts.
            pos_embed: ``"official"`` (the official transposed resize on non-square grids, docs/tcmoa.md §6 Q8) or
                ``"aspect"`` (each token gets its own row's and column's embedding); equal on square grids.

        Returns:
            ``fused`` ``(B, 3, H, W)`` in [0, 1] (differentiable w.r.t. the TC-MoA parameters), or
            ``(fused, aux)`` with ``aux``:

            * ``aux_loss``: 0-dim, the load-balancing terms of every mixture summed (official ``aux_loss``);
            * ``aux_terms``: ``(n_enc + n_dec,)`` the per-module terms;
            * ``prompts_enc_a``, ``prompts_enc_b``: ``(n_enc, B, N, 1)`` dominant intensities of a and b;
            * ``prompts_dec_a``, ``prompts_dec_b``: ``(n_dec, B, N, 1)``;
            * ``prompts_enc``, ``prompts_dec``: the a and b stacks stacked again, ``(2, n, B, N, 1)`` (a first);
            * ``raw``: ``(B, 3, u·H, u·W)`` un-clipped decoder output in ImageNet-normalised space (u = 2);
            * ``grid``: ``(Hp, Wp)`` token grid (``N = Hp·Wp``).
        """
        cfg = self.config
        self.check_inputs(a, b)
        task_idx = cfg.task_index(task)
        bsz, _, h, w = a.shape
        p = cfg.patch_size

        xt = torch.cat([a, b], dim=0)
        if cfg.upsample != 1:
            xt = F.interpolate(xt, scale_factor=cfg.upsample, mode="bilinear", align_corners=False)
        hp, wp = xt.shape[-2] // p, xt.shape[-1] // p
        tokens = self.patch_embed(xt) + resize_pos_embed(self.pos_embed, cfg.pos_embed_grid, hp, wp, pos_embed)

        layouts = self._layouts(hp, wp, tokens.device)
        pa_enc, pb_enc, pa_dec, pb_dec, aux_terms = [], [], [], [], []

        def encoder_moa(i: int, flat: torch.Tensor) -> torch.Tensor:
            k = i // cfg.interval_tau
            x, t, p_a, p_b, aux = self._tc_moa(self.blocks_MoA[k], self.FusionLayer[k], self.Alpha_encoder[k],
                                               flat[:bsz], flat[bsz:], task_idx, hp, wp, restd=False)
            pa_enc.append(p_a)
            pb_enc.append(p_b)
            aux_terms.append(aux)
            return torch.cat([x, t], dim=0)

        last_adapter = max(i for i in range(cfg.decoder_depth) if cfg.adapter_after(i))

        def decoder_moa(i: int, flat: torch.Tensor) -> torch.Tensor:
            k = i // cfg.interval_tau
            x, t, p_a, p_b, aux = self._tc_moa(self.decoder_blocks_MoA[k], self.de_FusionLayer[k],
                                               self.Alpha_decoder[k], flat[:bsz], flat[bsz:], task_idx, hp, wp,
                                               restd=cfg.decoder_restandardize)
            pa_dec.append(p_a)
            pb_dec.append(p_b)
            aux_terms.append(aux)
            # stream b is never decoded: after the last TC-MoA only stream a goes on
            return x if i == last_adapter else torch.cat([x, t], dim=0)

        tokens = self._run_blocks(self.blocks, self.en_relative_position, tokens, hp, wp, layouts, encoder_moa)
        tokens = self.norm(tokens)
        tokens = self.decoder_embed(tokens) + resize_pos_embed(self.decoder_pos_embed, cfg.pos_embed_grid, hp, wp,
                                                           pos_embed)
        tokens = self._run_blocks(self.decoder_blocks, self.de_relative_position, tokens, hp, wp, layouts,
                                  decoder_moa)

        if not return_aux and self._decode_subsampled(h, w, hp, wp):
            # the nearest reduction keeps one pixel in u×u: decode only those (the other outputs are thrown away)
            rows = self._used_pred_rows(tokens.device)
            x = F.linear(self.decoder_norm(tokens), self.decoder_pred.weight.index_select(0, rows),
                         self.decoder_pred.bias.index_select(0, rows))
            pred = self.unpatchify(x, hp, wp, patch=p // cfg.upsample).float()
            return torch.clip((pred * self.pixel_std + self.pixel_mean) * 255, 0, 255) / 255
        x = self.decoder_pred(self.decoder_norm(tokens))
        raw = self.unpatchify(x, hp, wp).float()
        pred = F.interpolate(raw, size=(h, w), mode="nearest")
        fused = torch.clip((pred * self.pixel_std + self.pixel_mean) * 255, 0, 255) / 255
        if not return_aux:
            return fused
        terms = torch.stack([term.reshape(()) for term in aux_terms])
        aux_out = {
            "aux_loss": terms.sum(),
            "aux_terms": terms,
            "prompts_enc_a": torch.stack(pa_enc),
            "prompts_enc_b": torch.stack(pb_enc),
            "prompts_dec_a": torch.stack(pa_dec),
            "prompts_dec_b": torch.stack(pb_dec),
            "raw": raw,
            "grid": (hp, wp),
        }
        aux_out["prompts_enc"] = torch.stack([aux_out["prompts_enc_a"], aux_out["prompts_enc_b"]])
        aux_out["prompts_dec"] = torch.stack([aux_out["prompts_dec_a"], aux_out["prompts_dec_b"]])
        return fused, aux_out

    def _decode_subsampled(self, h: int, w: int, hp: int, wp: int) -> bool:
        """True when the nearest reduction of the decoded ``(Hp·p, Wp·p)`` image to ``(h, w)`` keeps exactly the
        pixels ``(u·i, u·j)`` (u = the up-sampling factor), so only those need decoding."""
        u, p = self.config.upsample, self.config.patch_size
        return u > 1 and p % u == 0 and hp * p == u * h and wp * p == u * w

    def _used_pred_rows(self, device: torch.device) -> torch.Tensor:
        """Rows of ``decoder_pred`` that produce the pixels ``(u·i, u·j)`` of each patch, in (row, col, channel)
        order."""
        key = ("pred_rows", 0, str(device))
        rows = self._layout_cache.get(key)
        if rows is None:
            u, p, c = self.config.upsample, self.config.patch_size, self.config.in_chans
            rows = torch.tensor([(r * p + q) * c + ch for r in range(0, p, u) for q in range(0, p, u)
                                 for ch in range(c)], device=device)
            self._layout_cache[key] = rows
        return rows

    def unpatchify(self, x: torch.Tensor, hp: int, wp: int, patch: int | None = None) -> torch.Tensor:
        """``(B, Hp·Wp, p·p·3)`` patch predictions (row, col, channel order) → images ``(B, 3, Hp·p, Wp·p)``
        (``patch`` overrides ``p``)."""
        p = patch or self.config.patch_size
        c = self.config.in_chans
        x = x.reshape(x.shape[0], hp, wp, p, p, c)
        x = torch.einsum("nhwpqc->nchpwq", x)
        return x.reshape(x.shape[0], c, hp * p, wp * p)

    def extra_repr(self) -> str:
        return f"config={self.config.name}"
