"""Typed configurations of the TC-MoA variants.

The official code builds every size from ``MaskedAutoencoderViT`` with a handful of constructor arguments and a
YAML file; here each variant is a frozen dataclass whose defaults *are* that variant, so that
``TCMoABaseConfig()`` and ``TCMoALargeConfig()`` are exactly the official Base and Large models and the small
variants (``tcmoa_tiny``, ``tcmoa_small``) share structure and module names and differ only in widths.

Constants that the official code hard-codes (window 14, shift 7, 4 experts, top-2, noise epsilon 0.1, aux
coefficient 1e-3, gate threshold 1e-4, 3 tasks) are fields here so that they are visible and testable; the defaults
reproduce the official behaviour.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Literal

from fusion.errors import ConfigError
from fusion.tasks import TASKS

__all__ = [
    "TCMoAConfig",
    "TCMoABaseConfig",
    "TCMoALargeConfig",
    "TCMoASmallConfig",
    "TCMoATinyConfig",
    "MAE_URLS",
    "config_from_dict",
]

MAE_URLS: dict[str, str] = {
    "tcmoa_base": "https://dl.fbaipublicfiles.com/mae/visualize/mae_visualize_vit_base.pth",
    "tcmoa_large": "https://dl.fbaipublicfiles.com/mae/visualize/mae_visualize_vit_large_ganloss.pth",
}
"""Public MAE "visualize" checkpoints (encoder + pixel decoder) that initialise the frozen backbone."""


@dataclass(frozen=True)
class TCMoAConfig:
    """Hyper-parameters of one TC-MoA model. The defaults are the official Base model.

    Attributes:
        name: registry name of the variant.
        patch_size: ViT patch size (16).
        embed_dim, depth, num_heads: encoder width C, number of blocks, heads.
        decoder_embed_dim, decoder_depth, decoder_num_heads: MAE pixel-decoder width D, blocks, heads.
        mlp_ratio: MLP hidden width / model width in every backbone block.
        window_size, shift_size: attention windows in patches (14) and the cyclic shift of odd blocks (7),
            used by encoder and decoder alike (the official decoder hard-codes both).
        pos_embed_grid: side of the MAE position-embedding grid (224 / 16 = 14).
        upsample: in-network bilinear up-sampling factor before patch embedding (official: 2).
        interval_tau, tau_shift: a TC-MoA module follows block ``i`` iff ``(i + tau_shift) % interval_tau ==
            interval_tau - 1``; ``depth`` and ``decoder_depth`` must be multiples of ``interval_tau``.
        num_tasks: number of task routers (official 3: vif, mef, mff). More tasks get their own router rows.
        task_names: names addressing task indices 0.. (further indices are addressed by int).
        num_experts, top_k: experts per mixture and experts used per token.
        noise_eps: added to the softplus noise scale of the training-time noisy gating.
        aux_loss_coef: factor of the load-balancing loss of each mixture.
        gate_threshold: gates ``<=`` this are zeroed after routing (no renormalisation).
        alpha_init: initial value of the mixing weights ``Alpha_encoder`` / ``Alpha_decoder``.
        backbone_ln_eps, adapter_ln_eps: LayerNorm epsilons of the MAE backbone (1e-6) and of the adapters (1e-5).
        decoder_restandardize: re-standardise both streams to their pre-mix statistics after each decoder TC-MoA
            (official HEAD, 2025-02-12); False reproduces the pre-2025 code.
        modal_shift_std, modal_shift_seed: initial modal shifts. The official code draws them from N(0, 0.02²)
            afresh on every run and never saves them (docs/tcmoa.md §6 Q1); 0.0 (default) gives zeros, their
            expected value.
        train_modal_shifts: register the modal shifts as trainable parameters (the official ones are constants).
        moe_dispatch: ``"dense"`` runs every expert on every token and masks (fast, no host sync);
            ``"sparse"`` gathers each expert's tokens as the official ``SparseDispatcher`` does. Both give the same
            result (tested).
        fused_attn: use ``F.scaled_dot_product_attention`` with the relative-position bias as ``attn_mask``;
            False computes the softmax explicitly, in the official operation order.
        frame_margin: pixels reflect-padded on every side of a frame (or of the frame before tiling) by the
            whole-frame inference (``compat="default"``) and cropped afterwards (tiles: their outer ``frame_margin``
            pixels get no blending weight). 0 by default; :func:`fusion.training.codec_init.codec_init` sets 16 (two
            tokens): its fusion convolutions smooth over two tokens, and a zero-padded border would otherwise
            brighten the outermost 16 pixels. Stored with the weights.
        mae_url: download location of the MAE initialisation for ``pretrained_backbone=True``.
        mae_sha256: expected SHA-256 (or a prefix of at least 8 hex digits) of that file; None skips the check.
    """

    name: str = "tcmoa_base"
    patch_size: int = 16
    in_chans: int = 3
    embed_dim: int = 768
    depth: int = 12
    num_heads: int = 12
    decoder_embed_dim: int = 512
    decoder_depth: int = 8
    decoder_num_heads: int = 16
    mlp_ratio: float = 4.0
    window_size: int = 14
    shift_size: int = 7
    pos_embed_grid: int = 14
    upsample: int = 2
    interval_tau: int = 4
    tau_shift: int = 2
    num_tasks: int = 3
    task_names: tuple[str, ...] = TASKS
    num_experts: int = 4
    top_k: int = 2
    noise_eps: float = 0.1
    aux_loss_coef: float = 1e-3
    gate_threshold: float = 1e-4
    alpha_init: float = 0.5
    backbone_ln_eps: float = 1e-6
    adapter_ln_eps: float = 1e-5
    decoder_restandardize: bool = True
    modal_shift_std: float = 0.0
    modal_shift_seed: int | None = None
    train_modal_shifts: bool = True
    moe_dispatch: Literal["dense", "sparse"] = "dense"
    fused_attn: bool = True
    frame_margin: int = 0
    mae_url: str | None = field(default=MAE_URLS["tcmoa_base"])
    mae_sha256: str | None = None

    def __post_init__(self) -> None:
        self.validate()

    # ------------------------------------------------------------------ derived sizes
    @property
    def input_multiple(self) -> int:
        """Input height and width must be multiples of this (112 for the official models)."""
        unit = self.patch_size * self.window_size
        if unit % self.upsample:
            return unit
        return unit // self.upsample

    @property
    def num_encoder_adapters(self) -> int:
        return self.depth // self.interval_tau

    @property
    def num_decoder_adapters(self) -> int:
        return self.decoder_depth // self.interval_tau

    def adapter_after(self, block_index: int) -> bool:
        """True when a TC-MoA module follows block ``block_index`` (encoder and decoder alike)."""
        return (block_index + self.tau_shift) % self.interval_tau == self.interval_tau - 1

    def task_index(self, task: str | int) -> int:
        """Resolve a task name (``'vif'``, ``'mef'``, ``'mff'``, …) or index to an index in ``[0, num_tasks)``."""
        from fusion.errors import InputError

        if isinstance(task, bool):
            raise InputError(f"task must be a name or an int, got {task!r}")
        if isinstance(task, str):
            key = task.strip().lower()
            if key.lstrip("-").isdigit():
                return self.task_index(int(key))
            if key in self.task_names[: self.num_tasks]:
                return self.task_names.index(key)
            known = ", ".join(self.task_names[: self.num_tasks])
            raise InputError(f"unknown task {task!r} (known: {known}, or an index 0..{self.num_tasks - 1})")
        try:
            idx = int(task)
        except (TypeError, ValueError):
            raise InputError(f"task must be a name or an int, got {task!r}") from None
        if not 0 <= idx < self.num_tasks:
            raise InputError(f"task index {idx} out of range 0..{self.num_tasks - 1}")
        return idx

    # ------------------------------------------------------------------ checks
    def validate(self) -> None:
        """Raise :class:`ConfigError` naming the first inconsistent field."""

        def need(cond: bool, msg: str) -> None:
            if not cond:
                raise ConfigError(f"{self.name}: {msg}")

        need(isinstance(self.frame_margin, int) and self.frame_margin >= 0,
             f"frame_margin must be an int >= 0, got {self.frame_margin!r}")
        for f in ("patch_size", "embed_dim", "depth", "num_heads", "decoder_embed_dim", "decoder_depth",
                  "decoder_num_heads", "window_size", "pos_embed_grid", "upsample", "interval_tau", "num_tasks",
                  "num_experts", "top_k"):
            value = getattr(self, f)
            need(isinstance(value, int) and not isinstance(value, bool) and value > 0,
                 f"{f} must be a positive int, got {value!r}")
        need(self.embed_dim % self.num_heads == 0, f"embed_dim {self.embed_dim} not divisible by num_heads")
        need(self.decoder_embed_dim % self.decoder_num_heads == 0,
             f"decoder_embed_dim {self.decoder_embed_dim} not divisible by decoder_num_heads")
        for f in ("embed_dim", "decoder_embed_dim"):
            width = getattr(self, f)
            # adapters reduce to C'/4 (split in two halves for the prompts) with experts of width C'/32
            need(width % 32 == 0 and (width // 4) % 2 == 0,
                 f"{f}={width} must be a multiple of 32 (adapter width C'/4 even, expert width C'/32 >= 1)")
        need(self.depth % self.interval_tau == 0, f"depth {self.depth} must be a multiple of {self.interval_tau}")
        need(self.decoder_depth % self.interval_tau == 0,
             f"decoder_depth {self.decoder_depth} must be a multiple of {self.interval_tau}")
        need(self.depth % 2 == 0 and self.decoder_depth % 2 == 0, "depths must be even (tables shared by pairs)")
        need(0 <= self.shift_size < self.window_size, "shift_size must lie in [0, window_size)")
        need(self.top_k < self.num_experts, "top_k must be smaller than num_experts")
        need(len(self.task_names) == len(set(self.task_names)), "task_names must be unique")
        need(self.moe_dispatch in ("dense", "sparse"), f"moe_dispatch must be 'dense' or 'sparse', got "
             f"{self.moe_dispatch!r}")
        need(self.modal_shift_std >= 0, "modal_shift_std must be >= 0")
        need(self.num_encoder_adapters > 0 and self.num_decoder_adapters > 0, "no TC-MoA module would be built")

    # ------------------------------------------------------------------ (de)serialisation
    def replace(self, **overrides: Any) -> TCMoAConfig:
        """A copy with some fields changed; unknown fields raise :class:`ConfigError`."""
        names = {f.name for f in dataclasses.fields(self)}
        unknown = sorted(set(overrides) - names)
        if unknown:
            raise ConfigError(f"{self.name}: unknown model option(s) {', '.join(unknown)} "
                              f"(known: {', '.join(sorted(names))})")
        if "task_names" in overrides and overrides["task_names"] is not None:
            overrides["task_names"] = tuple(overrides["task_names"])
        return dataclasses.replace(self, **overrides)

    def to_dict(self) -> dict[str, Any]:
        """Plain-Python dict (JSON- and ``weights_only``-safe)."""
        out = dataclasses.asdict(self)
        out["task_names"] = list(self.task_names)
        return out


@dataclass(frozen=True)
class TCMoABaseConfig(TCMoAConfig):
    """Official Base: ViT-B/16 MAE encoder (768, 12 blocks, 12 heads), 3 encoder + 2 decoder TC-MoA modules."""


@dataclass(frozen=True)
class TCMoALargeConfig(TCMoAConfig):
    """Official Large: ViT-L/16 MAE encoder (1024, 24 blocks, 16 heads), 6 encoder + 2 decoder TC-MoA modules."""

    name: str = "tcmoa_large"
    embed_dim: int = 1024
    depth: int = 24
    num_heads: int = 16
    mae_url: str | None = field(default=MAE_URLS["tcmoa_large"])


@dataclass(frozen=True)
class TCMoASmallConfig(TCMoAConfig):
    """ViT-S widths (384, 6 heads), 12 blocks; decoder 256 wide, 8 heads, 8 blocks. No public MAE weights."""

    name: str = "tcmoa_small"
    embed_dim: int = 384
    num_heads: int = 6
    decoder_embed_dim: int = 256
    decoder_num_heads: int = 8
    mae_url: str | None = None


@dataclass(frozen=True)
class TCMoATinyConfig(TCMoAConfig):
    """ViT-Ti widths (192, 3 heads), 12 blocks; decoder 128 wide, 4 heads, 8 blocks. Trainable on a laptop CPU."""

    name: str = "tcmoa_tiny"
    embed_dim: int = 192
    num_heads: int = 3
    decoder_embed_dim: int = 128
    decoder_num_heads: int = 4
    mae_url: str | None = None


def config_from_dict(data: dict[str, Any], base: TCMoAConfig | None = None) -> TCMoAConfig:
    """Rebuild a config from :meth:`TCMoAConfig.to_dict` output (unknown keys raise :class:`ConfigError`)."""
    base = base or TCMoAConfig()
    return base.replace(**dict(data))
