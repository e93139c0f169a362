"""Fusing images of any size with a TC-MoA model.

The network itself needs sides that are multiples of 112. Two strategies bring any image there:

``compat="official"`` — the official ``main_predict.py`` (docs/tcmoa.md §2), reproducible exactly:
    * when both sides exceed ``tile`` (448): 448×448 tiles at rows/columns ``0, 448, 896, …`` with the last one
      anchored at the far edge, pasted in row-major order so that later tiles overwrite the overlap;
    * otherwise: bilinear resize (of the ImageNet-normalised tensor, ``antialias=False``) to the next multiples
      of 112, one pass, bilinear resize of the fused [0, 1] image back (``antialias=False``).
    (``frame_margin`` is not applied: this path is the official one.)
    The official resize of the input is PIL's bilinear on 8-bit images; the tensor resize here is close but not
    bit-identical.

``compat="default"`` — whole frames, no resampling, so odd sizes lose no detail and there are no seams:
    * first, for models with ``config.frame_margin`` (the codec-initialised small models), ``frame_margin`` pixels
      reflected on every side (cropped at the end);
    * frames whose padded size fits ``max_pixels``: reflect-padded at the bottom/right to the next multiples of 112
      and fused in one pass (the position embedding resized with each token's own row and column,
      ``pos_embed="aspect"``), then cropped. A 640×480 pair is one 672×560 pass: 5,880 tokens per stream instead
      of the 4 × 3,136 of four 448×448 tiles;
    * larger frames: ``tile``×``tile`` tiles (by default the largest multiple of 112 whose square fits
      ``max_pixels``) overlapping by ``overlap`` pixels, the last anchored at the far edge, blended with linear
      feathering over the overlaps.

With ``compat="default"`` memory is bounded by ``max_pixels``: each model call gets at most that many (padded)
pixels, in at most ``batch_size`` frames or tiles. The official strategy runs images with a side ``<= tile``
in one pass whatever the other side (e.g. 400×4000), as the official code does.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F

from fusion.data.postprocess import official_bytescale
from fusion.errors import ConfigError, NumericalError
from fusion.models.tcmoa import TCMoA, normalize
from fusion.utils.checks import check_image_pair, check_tensor_pair

__all__ = ["fuse_tensors", "fuse_arrays", "resolve_amp_dtype", "official_tile_starts", "overlap_tile_starts",
           "auto_tile", "DEFAULT_MAX_PIXELS"]

Compat = Literal["default", "official"]


def resolve_amp_dtype(amp_dtype: str | torch.dtype | None) -> torch.dtype | None:
    """``None``/``"none"``/``"fp32"`` → None; ``"bf16"``/``"bfloat16"`` and ``"fp16"``/``"float16"`` → dtypes."""
    if amp_dtype is None or isinstance(amp_dtype, torch.dtype):
        if amp_dtype in (None, torch.bfloat16, torch.float16):
            return amp_dtype
        if amp_dtype == torch.float32:
            return None
        raise ConfigError(f"amp_dtype={amp_dtype}: expected bf16, fp16 or none")
    name = str(amp_dtype).strip().lower()
    table = {"none": None, "fp32": None, "float32": None, "": None, "bf16": torch.bfloat16,
             "bfloat16": torch.bfloat16, "fp16": torch.float16, "float16": torch.float16, "half": torch.float16}
    if name not in table:
        raise ConfigError(f"amp_dtype={amp_dtype!r}: expected bf16, fp16 or none")
    return table[name]


def official_tile_starts(length: int, tile: int) -> list[int]:
    """Official tile origins along one axis: ``0, tile, 2·tile, …`` with the last one at ``length - tile``."""
    n = math.ceil(length / tile)
    return [min(i * tile, length - tile) for i in range(n)]


def overlap_tile_starts(length: int, tile: int, overlap: int) -> list[int]:
    """Tile origins with stride ``tile - overlap``, the last one anchored at ``length - tile``."""
    if length <= tile:
        return [0]
    stride = tile - overlap
    starts = list(range(0, length - tile, stride))
    starts.append(length - tile)
    return starts


def _feather(length: int, start: int, total: int, ramp: int, device: torch.device, guard: int = 0) -> torch.Tensor:
    """1-D blending weight of a tile: linear ramps over ``ramp`` pixels on sides that border another tile; the first
    ``guard`` pixels of such a side get weight 0 and the ramp runs over the rest (``guard < ramp / 2``)."""
    w = torch.ones(length, device=device)
    if ramp <= 0:
        return w
    inner = ramp - guard
    r = torch.cat([torch.zeros(guard, device=device),
                   torch.arange(1, inner + 1, device=device, dtype=torch.float32) / (inner + 1)])
    if start > 0:
        w[:ramp] = torch.minimum(w[:ramp], r)
    if start + length < total:
        w[-ramp:] = torch.minimum(w[-ramp:], r.flip(0))
    return w


def _pad_to(x: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """Pad ``(B, C, H, W)`` at the bottom/right to ``(height, width)`` by mirror reflection (repeated when the
    padding exceeds the image; 1-pixel sides are replicated)."""
    while x.shape[-2] < height or x.shape[-1] < width:
        h, w = x.shape[-2:]
        ph = min(height - h, h - 1)
        pw = min(width - w, w - 1)
        if ph <= 0 and height > h or pw <= 0 and width > w:
            return F.pad(x, (0, width - w, 0, height - h), mode="replicate")
        x = F.pad(x, (0, max(pw, 0), 0, max(ph, 0)), mode="reflect")
    return x


def _pad_margin(x: torch.Tensor, margin: int) -> torch.Tensor:
    """Pad ``margin`` pixels on every side: reflected where the image is wider than the margin, else replicated."""
    if margin <= 0:
        return x
    mode = "reflect" if min(x.shape[-2:]) > margin else "replicate"
    return F.pad(x, (margin, margin, margin, margin), mode=mode)


def _check_sources(a: torch.Tensor, b: torch.Tensor) -> None:
    check_tensor_pair(a, b, "fuse_tensors")


class _Runner:
    """Runs crops through the model ``batch_size`` at a time, in eval mode, without gradients, under autocast."""

    def __init__(self, model: TCMoA, task: int, batch_size: int, amp_dtype: torch.dtype | None,
                 progress: bool, pos_embed: str = "official") -> None:
        self.model = model
        self.task = task
        self.batch_size = batch_size
        self.amp_dtype = amp_dtype
        self.progress = progress
        self.pos_embed = pos_embed

    def run(self, crops_a: list[torch.Tensor], crops_b: list[torch.Tensor]) -> list[torch.Tensor]:
        outs: list[torch.Tensor] = []
        starts = range(0, len(crops_a), self.batch_size)
        if self.progress and len(crops_a) > self.batch_size:
            from tqdm import tqdm

            starts = tqdm(starts, desc="TC-MoA", unit="batch", leave=False)
        for i in starts:
            xa = torch.stack(crops_a[i : i + self.batch_size])
            xb = torch.stack(crops_b[i : i + self.batch_size])
            with torch.autocast(xa.device.type, dtype=self.amp_dtype or torch.bfloat16,
                                enabled=self.amp_dtype is not None):
                out = self.model(xa, xb, self.task, pos_embed=self.pos_embed)
            outs.extend(out.float().unbind(0))
        return outs


DEFAULT_MAX_PIXELS = 2_500_000
"""Padded pixels per model call in ``compat="default"`` (about 1 GB of activations for ``tcmoa_base`` in float32):
a 1920×1080 frame (2016×1120 padded) still runs whole."""


def auto_tile(max_pixels: int, multiple: int) -> int:
    """The largest multiple of ``multiple`` whose square fits ``max_pixels`` (at least ``multiple``)."""
    return max(multiple, int(math.isqrt(max_pixels)) // multiple * multiple)


def fuse_tensors(model: TCMoA, a: torch.Tensor, b: torch.Tensor, task: str | int = "vif", *,
                 compat: Compat = "default", tile: int | None = None, overlap: int = 112, batch_size: int = 4,
                 max_pixels: int = DEFAULT_MAX_PIXELS, amp_dtype: str | torch.dtype | None = None,
                 progress: bool = False) -> torch.Tensor:
    """Fuse RGB sources of any size.

    Args:
        model: a :class:`TCMoA` (switched to eval mode for the call, then restored).
        a, b: ``(B, 3, H, W)`` RGB in [0, 1] (float, on the model's device); ImageNet normalisation is done here.
        task: ``'vif'``, ``'mef'``, ``'mff'`` or an index.
        compat: ``"default"`` (whole frames, feathered tiles beyond ``max_pixels``) or ``"official"`` (the official
            resizing and end-anchored overwriting 448 tiles); see the module docstring.
        tile: tile side in pixels, a multiple of 112 (official: 448; default: the largest that fits ``max_pixels``).
        overlap: tile overlap for ``compat="default"`` (``0 <= overlap < tile``).
        batch_size: at most this many frames or tiles per model call.
        max_pixels: ``compat="default"``: at most this many padded pixels per model call (bounds the memory).
        amp_dtype: ``None`` (float32, exact), ``"bf16"`` or ``"fp16"`` autocast (the adapters stay float32).
        progress: show a tqdm bar over the model calls.

    Returns:
        The fused images ``(B, 3, H, W)`` float32 in [0, 1].
    """
    _check_sources(a, b)
    if compat not in ("default", "official"):
        raise ConfigError(f"compat={compat!r}: expected 'default' or 'official'")
    m = model.config.input_multiple
    if max_pixels < m * m:
        raise ConfigError(f"max_pixels={max_pixels}: must be at least {m * m} (one {m}x{m} input)")
    if tile is None:
        tile = 448 if compat == "official" else auto_tile(max_pixels, m)
    if tile <= 0 or tile % m:
        raise ConfigError(f"tile={tile}: must be a positive multiple of {m}")
    if not 0 <= overlap < tile:
        raise ConfigError(f"overlap={overlap}: must lie in [0, tile)")
    if batch_size < 1:
        raise ConfigError(f"batch_size={batch_size}: must be >= 1")
    task_idx = model.config.task_index(task)
    amp = resolve_amp_dtype(amp_dtype)

    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            xa = normalize(a.float())
            xb = normalize(b.float())
            if compat == "official":
                out = _fuse_official(_Runner(model, task_idx, batch_size, amp, progress), xa, xb, tile, m)
            else:
                # models with a frame margin get that context on every side (cropped again below)
                margin = model.config.frame_margin
                h, w = xa.shape[-2:]
                out = _fuse_default(model, task_idx, amp, progress, _pad_margin(xa, margin), _pad_margin(xb, margin),
                                    tile, overlap, m, batch_size, max_pixels, guard=margin)
                if margin:
                    out = out[:, :, margin : margin + h, margin : margin + w].contiguous()
            if not bool(torch.isfinite(out).all()):
                raise NumericalError(f"TC-MoA ({model.config.name}) produced NaN or infinity: its weights are broken "
                                     f"or {amp_dtype or 'float32'} overflowed; nothing is written")
            return out
    finally:
        model.train(was_training)


def _fuse_official(runner: _Runner, xa: torch.Tensor, xb: torch.Tensor, tile: int, m: int) -> torch.Tensor:
    n, _, h, w = xa.shape
    if h > tile and w > tile:
        boxes = [(y, x) for y in official_tile_starts(h, tile) for x in official_tile_starts(w, tile)]
        jobs = [(i, y, x) for i in range(n) for (y, x) in boxes]
        outs = runner.run([xa[i, :, y : y + tile, x : x + tile] for i, y, x in jobs],
                          [xb[i, :, y : y + tile, x : x + tile] for i, y, x in jobs])
        fused = xa.new_zeros((n, 3, h, w))
        for (i, y, x), out in zip(jobs, outs):
            fused[i, :, y : y + tile, x : x + tile] = out  # later tiles overwrite, as the official paste
        return fused
    hr, wr = math.ceil(h / m) * m, math.ceil(w / m) * m
    if (hr, wr) != (h, w):
        xa = F.interpolate(xa, size=(hr, wr), mode="bilinear", align_corners=False, antialias=False)
        xb = F.interpolate(xb, size=(hr, wr), mode="bilinear", align_corners=False, antialias=False)
    fused = torch.stack(runner.run(list(xa.unbind(0)), list(xb.unbind(0))))
    if (hr, wr) != (h, w):
        fused = F.interpolate(fused, size=(h, w), mode="bilinear", align_corners=False, antialias=False)
    return fused


def _fuse_default(model: TCMoA, task: int, amp: torch.dtype | None, progress: bool, xa: torch.Tensor,
                  xb: torch.Tensor, tile: int, overlap: int, m: int, batch_size: int,
                  max_pixels: int, guard: int = 0) -> torch.Tensor:
    """Whole frames or feathered tiles; the outer ``guard`` pixels of every tile side that borders another tile get
    no weight (the overlapping tile decides them), and with a guard the tiles sit on the token grid."""
    n, _, h, w = xa.shape
    hf, wf = math.ceil(h / m) * m, math.ceil(w / m) * m
    if hf * wf <= max_pixels:
        per_call = max(1, min(batch_size, max_pixels // (hf * wf)))
        runner = _Runner(model, task, per_call, amp, progress, pos_embed="aspect")
        pa, pb = _pad_to(xa, hf, wf), _pad_to(xb, hf, wf)
        fused = torch.stack(runner.run(list(pa.unbind(0)), list(pb.unbind(0))))
        return fused[:, :, :h, :w].contiguous()
    runner = _Runner(model, task, max(1, min(batch_size, max_pixels // (tile * tile))), amp, progress)
    if 2 * guard >= overlap:
        raise ConfigError(f"overlap={overlap}: tiling a {model.config.name} frame needs an overlap above "
                          f"2 x frame_margin = {2 * guard}")
    hp, wp = max(h, tile), max(w, tile)
    if guard:
        # every tile on the frame's token grid (8 px): the codec's blocks then match the whole-frame ones
        unit = model.config.patch_size // model.config.upsample
        hp, wp = math.ceil(hp / unit) * unit, math.ceil(wp / unit) * unit
        overlap = math.ceil(overlap / unit) * unit
    pa, pb = _pad_to(xa, hp, wp), _pad_to(xb, hp, wp)
    ys, xs = overlap_tile_starts(hp, tile, overlap), overlap_tile_starts(wp, tile, overlap)
    jobs = [(i, y, x) for i in range(n) for y in ys for x in xs]
    acc = xa.new_zeros((n, 3, hp, wp))
    wsum = xa.new_zeros((n, 1, hp, wp))
    # feed the tiles in chunks so that only a few calls' crops (plus the accumulator) are alive at once
    for c0 in range(0, len(jobs), runner.batch_size * 4):
        chunk = jobs[c0 : c0 + runner.batch_size * 4]
        outs = runner.run([pa[i, :, y : y + tile, x : x + tile] for i, y, x in chunk],
                          [pb[i, :, y : y + tile, x : x + tile] for i, y, x in chunk])
        for (i, y, x), out in zip(chunk, outs):
            wt = (_feather(tile, y, hp, overlap, xa.device, guard)[:, None]
                  * _feather(tile, x, wp, overlap, xa.device, guard)[None])
            acc[i, :, y : y + tile, x : x + tile] += out * wt
            wsum[i, :, y : y + tile, x : x + tile] += wt
    return (acc / wsum)[:, :, :h, :w].clamp_(0.0, 1.0).contiguous()


def fuse_arrays(model: TCMoA, a: np.ndarray | Sequence[np.ndarray], b: np.ndarray | Sequence[np.ndarray],
                task: str | int = "vif", *, compat: Compat = "default", stretch: bool | None = None,
                device: str | torch.device | None = None, **kwargs) -> np.ndarray:
    """uint8 convenience around :func:`fuse_tensors`.

    Args:
        a, b: ``uint8`` RGB ``(H, W, 3)`` or a batch ``(N, H, W, 3)`` (sources of one pair must match in size).
        stretch: apply the official min-max ``bytescale`` to each output (default: only for ``compat="official"``,
            whose saved files are stretched); otherwise outputs are rounded from [0, 1].
        device: where to run (default: the model's device).
        **kwargs: forwarded to :func:`fuse_tensors` (``tile``, ``overlap``, ``batch_size``, ``max_pixels``,
            ``amp_dtype``, …).

    Returns:
        ``uint8`` RGB of the same shape as ``a``.
    """
    arr_a, arr_b = np.asarray(a), np.asarray(b)
    single = arr_a.ndim == 3
    check_image_pair(arr_a, arr_b, "fuse_arrays", batched=True)
    if single:
        arr_a, arr_b = arr_a[None], arr_b[None]
    dev = torch.device(device) if device is not None else next(model.parameters()).device
    # a copy: inputs may be read-only arrays (torch warns on non-writable memory)
    ta = torch.from_numpy(np.array(arr_a, copy=True)).to(dev).permute(0, 3, 1, 2).float() / 255.0
    tb = torch.from_numpy(np.array(arr_b, copy=True)).to(dev).permute(0, 3, 1, 2).float() / 255.0
    fused = fuse_tensors(model, ta, tb, task, compat=compat, **kwargs)
    out = fused.permute(0, 2, 3, 1).cpu().numpy()
    if stretch if stretch is not None else compat == "official":
        result = np.stack([official_bytescale(img) for img in out])
    else:
        result = np.clip(np.rint(out * 255.0), 0, 255).astype(np.uint8)
    return result[0] if single else result
