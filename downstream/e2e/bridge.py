"""A differentiable path from a fused image to an mmsegmentation segmenter's loss and logits.

mmseg normally sees ``uint8`` BGR images from its data pipeline, which its ``SegDataPreProcessor`` turns into
normalised float tensors (channel swap, ``(x - mean) / std``, padding). Rounding to ``uint8`` would cut the gradient,
so here the fused ``[0, 1]`` RGB tensor goes through the same arithmetic directly:

``x = fused · 255`` → the channel order the network was configured to see (RGB after ``bgr_to_rgb=True``, else BGR)
→ ``(x - mean) / std`` with the preprocessor's own buffers → bottom/right padding to the preprocessor's ``size`` /
``size_divisor`` with ``pad_val`` (labels with ``seg_pad_val``), exactly as ``stack_batch`` pads.

The segmenter is then called below its data-preprocessor: ``model.loss(inputs, data_samples)`` (every decode and
auxiliary head's configured loss) and ``model.encode_decode(inputs, metas)`` for logits.
"""

from __future__ import annotations

import math
from typing import Any

import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["segmenter_inputs", "padded_size", "seg_data_samples", "segmentation_loss", "segmentation_logits",
           "sum_losses"]


def _check_fused(fused: Any, name: str = "fused") -> None:
    if not isinstance(fused, Tensor) or fused.dim() != 4 or fused.shape[1] != 3 or not fused.is_floating_point():
        raise ValueError(f"{name} must be a float tensor (B, 3, H, W) in [0, 1], got "
                         f"{tuple(getattr(fused, 'shape', ()))} {getattr(fused, 'dtype', type(fused).__name__)}")


def _preprocessor(segmenter: nn.Module) -> nn.Module:
    pre = getattr(segmenter, "data_preprocessor", None)
    if pre is None or not hasattr(pre, "mean"):
        raise ValueError(f"{type(segmenter).__name__}: expected an mmseg segmenter with a SegDataPreProcessor")
    return pre


def padded_size(segmenter: nn.Module, height: int, width: int) -> tuple[int, int]:
    """The ``(H, W)`` the preprocessor pads an ``(height, width)`` training image to (``size`` / ``size_divisor``)."""
    pre = _preprocessor(segmenter)
    h, w = height, width
    size = getattr(pre, "size", None)
    if size is not None:
        h, w = max(h, int(size[0])), max(w, int(size[1]))
    div = getattr(pre, "size_divisor", None)
    if div:
        h, w = int(math.ceil(h / div) * div), int(math.ceil(w / div) * div)
    return h, w


def segmenter_inputs(segmenter: nn.Module, fused: Tensor, *, pad: bool = True) -> Tensor:
    """Turn fused RGB ``(B, 3, H, W)`` in [0, 1] into the normalised tensor the segmenter's network expects.

    Differentiable; equals what ``SegDataPreProcessor`` makes of the same image coming as ``uint8`` BGR from the
    pipeline (up to the ``uint8`` rounding). With ``pad`` the result is padded to :func:`padded_size`.
    """
    _check_fused(fused)
    pre = _preprocessor(segmenter)
    x = fused.float() * 255.0
    if not getattr(pre, "channel_conversion", False):
        x = x.flip(1)  # no swap configured: the network was trained on the pipeline's BGR order
    if getattr(pre, "_enable_normalize", True):
        x = (x - pre.mean.to(x)) / pre.std.to(x)
    if pad:
        h, w = x.shape[-2:]
        ph, pw = padded_size(segmenter, h, w)
        if (ph, pw) != (h, w):
            x = F.pad(x, (0, pw - w, 0, ph - h), value=float(getattr(pre, "pad_val", 0)))
    return x


def seg_data_samples(labels: Tensor, img_shape: tuple[int, int], pad_shape: tuple[int, int],
                     ignore_value: int = 255) -> list:
    """``SegDataSample`` objects carrying ``labels`` ``(B, H, W)`` (padded to ``pad_shape`` with ``ignore_value``)."""
    from mmengine.structures import PixelData
    from mmseg.structures import SegDataSample

    if not isinstance(labels, Tensor) or labels.dim() != 3:
        raise ValueError(f"labels must be a tensor (B, H, W) of class ids, got {tuple(getattr(labels, 'shape', ()))}")
    h, w = labels.shape[-2:]
    if (h, w) != tuple(pad_shape):
        labels = F.pad(labels, (0, pad_shape[1] - w, 0, pad_shape[0] - h), value=ignore_value)
    samples = []
    for lab in labels.long():
        s = SegDataSample(metainfo=dict(img_shape=tuple(img_shape), pad_shape=tuple(pad_shape),
                                        ori_shape=tuple(img_shape)))
        s.gt_sem_seg = PixelData(data=lab[None])
        samples.append(s)
    return samples


def sum_losses(losses: dict[str, Any]) -> tuple[Tensor, dict[str, float]]:
    """mmseg's rule: the total is the sum of every entry whose key contains ``loss``; also returns floats of all."""
    total = None
    logs: dict[str, float] = {}
    for key, value in losses.items():
        vals = value if isinstance(value, (list, tuple)) else [value]
        val = sum(v.mean() for v in vals)
        logs[key] = float(val.detach())
        if "loss" in key:
            total = val if total is None else total + val
    if total is None:
        raise ValueError(f"segmenter returned no loss terms (keys: {', '.join(losses)})")
    return total, logs


def segmentation_loss(segmenter: nn.Module, fused: Tensor, labels: Tensor) -> tuple[Tensor, dict[str, float]]:
    """The segmenter's configured training loss on fused images.

    Args:
        segmenter: an mmseg ``EncoderDecoder`` (or any segmentor with ``loss(inputs, data_samples)``).
        fused: ``(B, 3, H, W)`` RGB in [0, 1] (gradients flow back into it).
        labels: ``(B, H, W)`` integer class ids (``ignore_index`` pixels allowed).

    Returns:
        ``(loss, logs)``: the summed loss (0-dim) and every reported term as a float (``decode.loss_ce``,
        ``decode.acc_seg``, ``aux.loss_ce``, …).
    """
    _check_fused(fused)
    if labels.shape[0] != fused.shape[0] or labels.shape[-2:] != fused.shape[-2:]:
        raise ValueError(f"labels {tuple(labels.shape)} do not match fused images {tuple(fused.shape)}")
    inputs = segmenter_inputs(segmenter, fused)
    pre = _preprocessor(segmenter)
    samples = seg_data_samples(labels, tuple(fused.shape[-2:]), tuple(inputs.shape[-2:]),
                               int(getattr(pre, "seg_pad_val", 255)))
    return sum_losses(segmenter.loss(inputs, samples))


def segmentation_logits(segmenter: nn.Module, fused: Tensor) -> Tensor:
    """Class scores ``(B, C, H, W)`` of fused images ``(B, 3, H, W)`` in [0, 1] (whole-image inference).

    Differentiable; call under ``torch.no_grad()`` and in eval mode for evaluation.
    """
    _check_fused(fused)
    h, w = fused.shape[-2:]
    # only size_divisor-style padding matters at test time: mmseg pads test images only to the divisor
    inputs = segmenter_inputs(segmenter, fused, pad=False)
    pre = _preprocessor(segmenter)
    div = getattr(pre, "size_divisor", None)
    if div:
        ph, pw = int(math.ceil(h / div) * div), int(math.ceil(w / div) * div)
        inputs = F.pad(inputs, (0, pw - w, 0, ph - h), value=float(getattr(pre, "pad_val", 0)))
    metas = [dict(img_shape=tuple(inputs.shape[-2:]), pad_shape=tuple(inputs.shape[-2:]), ori_shape=(h, w))
             for _ in range(fused.shape[0])]
    logits = segmenter.encode_decode(inputs, metas)
    return logits[:, :, :h, :w]
