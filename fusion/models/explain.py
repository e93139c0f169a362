"""What TC-MoA decides, made visible: the "dominant intensity" prompt maps and each task router's expert usage.

* :func:`prompt_maps`: for one pair and one task, the prompts ``p_a`` and ``p_b`` of every TC-MoA module (encoder
  and decoder), one value per token, up-sampled to the image. Each module scales the two token streams by them
  before its fusion convolution (``x̃ = p_a·x + μ_a``, ``t̃ = p_b·t + μ_b``), so they say, token by token, how much
  of each source goes into the fused image.
* :func:`expert_usage`: over a set of pairs, for every module, task and expert, the share of tokens the task's router
  sends to the expert and the mean gate weight it gives it (``(modules, tasks, experts)``): one shared mixture of
  adapters, steered differently per task.
* :func:`prompt_figure`, :func:`usage_figure`: the pictures (matplotlib, Agg).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from fusion.models.inference import DEFAULT_MAX_PIXELS, _pad_margin, _pad_to
from fusion.models.layers import MMoE
from fusion.models.tcmoa import TCMoA, normalize
from fusion.utils.checks import check_image_pair

__all__ = ["PromptMaps", "prompt_maps", "expert_usage", "module_names", "prompt_figure", "usage_figure"]


@dataclass
class PromptMaps:
    """Prompt maps of one pair.

    Attributes:
        names: module names (``enc0``, ``enc1``, …, ``dec0``, …), in forward order.
        a, b: ``(modules, H, W)`` float32 prompts of source a and b, each token's value on its pixels.
        tokens_a, tokens_b: ``(modules, Hp, Wp)`` the same at token resolution (of the padded frame).
        fused: ``(H, W, 3)`` uint8, the fused image of this forward.
        scale: the factor the pair was resized by to fit ``max_pixels`` (1.0: not resized).
    """

    names: list[str]
    a: np.ndarray
    b: np.ndarray
    tokens_a: np.ndarray
    tokens_b: np.ndarray
    fused: np.ndarray
    scale: float


def module_names(model: TCMoA) -> list[str]:
    """``enc0 … dec1``: the TC-MoA modules in forward order."""
    cfg = model.config
    return [f"enc{k}" for k in range(cfg.num_encoder_adapters)] + [f"dec{k}" for k in range(cfg.num_decoder_adapters)]


def _prepare(model: TCMoA, a: np.ndarray, b: np.ndarray,
             max_pixels: int) -> tuple[torch.Tensor, torch.Tensor, tuple[int, int], float, int]:
    """The pair as the default fuser feeds it to the model: resized to fit ``max_pixels`` when needed, normalised,
    ``frame_margin`` pixels reflected on every side and reflect-padded to multiples of 112. Returns ``(xa, xb, (h, w)
    before padding, scale, margin)``; the image starts at row and column ``margin``."""
    check_image_pair(a, b, "explain")
    dev = next(model.parameters()).device
    ta = torch.from_numpy(np.array(a, dtype=np.float32)).to(dev).permute(2, 0, 1)[None] / 255
    tb = torch.from_numpy(np.array(b, dtype=np.float32)).to(dev).permute(2, 0, 1)[None] / 255
    h, w = a.shape[:2]
    m = model.config.input_multiple
    scale = 1.0
    if math.ceil(h / m) * m * math.ceil(w / m) * m > max_pixels:
        scale = math.sqrt(max_pixels / (h * w)) * 0.95
        h, w = max(m, int(h * scale)), max(m, int(w * scale))
        ta = F.interpolate(ta, size=(h, w), mode="bilinear", antialias=True, align_corners=False)
        tb = F.interpolate(tb, size=(h, w), mode="bilinear", antialias=True, align_corners=False)
    margin = model.config.frame_margin
    xa, xb = _pad_margin(normalize(ta), margin), _pad_margin(normalize(tb), margin)
    hp, wp = math.ceil((h + 2 * margin) / m) * m, math.ceil((w + 2 * margin) / m) * m
    return _pad_to(xa, hp, wp), _pad_to(xb, hp, wp), (h, w), scale, margin


@torch.no_grad()
def prompt_maps(model: TCMoA, a: np.ndarray, b: np.ndarray, task: str | int = "vif", *,
                max_pixels: int = DEFAULT_MAX_PIXELS) -> PromptMaps:
    """The prompt maps of every TC-MoA module for one pair (one whole-frame forward, as the default fuser runs).

    Args:
        model: a :class:`TCMoA` (put in eval mode for the call).
        a, b: uint8 RGB ``(H, W, 3)`` sources (a = visible / over-exposed / far focus).
        task: ``'vif'``, ``'mef'``, ``'mff'`` or an index.
        max_pixels: frames whose padded size exceeds it are resized down to fit (one forward, no tiles).
    """
    was_training = model.training
    model.eval()
    try:
        xa, xb, (h, w), scale, margin = _prepare(model, a, b, max_pixels)
        fused, aux = model(xa, xb, task, return_aux=True, pos_embed="aspect")
    finally:
        model.train(was_training)
    gh, gw = aux["grid"]
    toks_a = torch.cat([aux["prompts_enc_a"], aux["prompts_dec_a"]])[:, 0, :, 0].reshape(-1, gh, gw)
    toks_b = torch.cat([aux["prompts_enc_b"], aux["prompts_dec_b"]])[:, 0, :, 0].reshape(-1, gh, gw)

    def to_image(t: torch.Tensor) -> np.ndarray:
        up = F.interpolate(t[:, None].float(), size=tuple(xa.shape[-2:]), mode="nearest")[:, 0]
        up = up[:, margin : margin + h, margin : margin + w]
        if scale != 1.0:
            up = F.interpolate(up[:, None], size=a.shape[:2], mode="nearest")[:, 0]
        return up.cpu().numpy().astype(np.float32)

    out = fused[0, :, margin : margin + h, margin : margin + w]
    if scale != 1.0:
        out = F.interpolate(out[None], size=a.shape[:2], mode="bilinear", align_corners=False)[0]
    fused8 = np.clip(np.rint(out.permute(1, 2, 0).cpu().numpy() * 255), 0, 255).astype(np.uint8)
    return PromptMaps(module_names(model), to_image(toks_a), to_image(toks_b), toks_a.cpu().numpy(),
                      toks_b.cpu().numpy(), fused8, scale)


@torch.no_grad()
def expert_usage(model: TCMoA, pairs: Iterable[tuple[np.ndarray, np.ndarray]], tasks: Sequence[str | int] | None = None,
                 *, max_pixels: int = DEFAULT_MAX_PIXELS) -> dict[str, np.ndarray]:
    """Routing statistics of every task's router on the same pairs.

    Every pair is fused once per task; each mixture records its gates (after the 1e-4 threshold, eval mode: no
    noise). Returns ``{"share": (M, T, E), "gate": (M, T, E), "tokens": (M, T)}``: the share of tokens routed to each
    expert, the mean gate weight per expert over all tokens (0 where not routed), and the token counts; M modules
    (:func:`module_names`), T tasks, E experts.
    """
    cfg = model.config
    task_ids = [cfg.task_index(t) for t in (tasks if tasks is not None else range(cfg.num_tasks))]
    mixtures = [mod for mod in model.modules() if isinstance(mod, MMoE)]
    n_mod, n_exp = len(mixtures), cfg.num_experts
    routed = np.zeros((n_mod, len(task_ids), n_exp))
    gate_sum = np.zeros((n_mod, len(task_ids), n_exp))
    tokens = np.zeros((n_mod, len(task_ids)))
    was_training = model.training
    model.eval()
    for mix in mixtures:
        mix.record_gates = True
    try:
        for a, b in pairs:
            xa, xb, _, _, _ = _prepare(model, a, b, max_pixels)
            for j, t in enumerate(task_ids):
                model(xa, xb, t, pos_embed="aspect")
                for i, mix in enumerate(mixtures):
                    g = mix.last_gates.double()
                    routed[i, j] += (g > 0).sum(0).cpu().numpy()
                    gate_sum[i, j] += g.sum(0).cpu().numpy()
                    tokens[i, j] += g.shape[0]
    finally:
        for mix in mixtures:
            mix.record_gates = False
            mix.last_gates = None
        model.train(was_training)
    denom = np.maximum(tokens[..., None], 1)
    return {"share": routed / denom, "gate": gate_sum / denom, "tokens": tokens}


def prompt_figure(a: np.ndarray, b: np.ndarray, maps: PromptMaps, path: str | Path, *, title: str = "",
                  labels: tuple[str, str] = ("a", "b")) -> Path:
    """Sources, fused image and the prompt maps of every module for a and b, on one colour scale [0, 1]."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = len(maps.names)
    cols = max(3, n)
    fig, axes = plt.subplots(3, cols, figsize=(2.6 * cols, 2.2 * 3 + 0.6), squeeze=False)
    for ax in axes.ravel():
        ax.axis("off")
    for ax, img, name in zip(axes[0], (a, b, maps.fused), (f"source {labels[0]}", f"source {labels[1]}", "fused")):
        ax.imshow(img)
        ax.set_title(name, fontsize=9)
    im = None
    for k, name in enumerate(maps.names):
        for row, (vals, who) in enumerate(((maps.a, labels[0]), (maps.b, labels[1])), start=1):
            im = axes[row, k].imshow(vals[k], vmin=0, vmax=1, cmap="viridis")
            axes[row, k].set_title(f"{name}: p_{who}", fontsize=9)
    return _finish(fig, im, axes[1:, :], "prompt (dominant intensity)", title, path)


def usage_figure(usage: dict[str, np.ndarray], names: Sequence[str], tasks: Sequence[str], path: str | Path, *,
                 title: str = "") -> Path:
    """One heatmap per module: tasks × experts, the share of tokens routed to each expert (numbers printed)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    share = usage["share"]
    n = share.shape[0]
    fig, axes = plt.subplots(1, n, figsize=(2.3 * n + 0.8, 0.5 * len(tasks) + 1.6), squeeze=False)
    im = None
    for i in range(n):
        ax = axes[0, i]
        im = ax.imshow(share[i], vmin=0, vmax=1, cmap="magma")
        ax.set_title(names[i], fontsize=9)
        ax.set_xticks(range(share.shape[2]), [f"e{e}" for e in range(share.shape[2])], fontsize=8)
        ax.set_yticks(range(len(tasks)), list(tasks) if i == 0 else [""] * len(tasks), fontsize=8)
        for t in range(share.shape[1]):
            for e in range(share.shape[2]):
                ax.text(e, t, f"{share[i, t, e]:.2f}", ha="center", va="center", fontsize=7,
                        color="white" if share[i, t, e] < 0.6 else "black")
    return _finish(fig, im, axes, "share of tokens routed", title, path)


def _finish(fig, im, bar_axes: np.ndarray, label: str, title: str, path: str | Path) -> Path:
    """Colour bar beside ``bar_axes``, title, atomic PNG write, figure closed."""
    import matplotlib.pyplot as plt

    from fusion.utils.io import atomic_path

    if im is not None:
        fig.colorbar(im, ax=bar_axes.ravel().tolist(), shrink=0.8, label=label)
    if title:
        fig.suptitle(title, fontsize=10)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=90, format="png")
    plt.close(fig)
    return Path(path)
