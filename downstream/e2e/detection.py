"""The detection counterpart of :mod:`~downstream.e2e.bridge`: fused images through ultralytics' own YOLO loss.

A YOLO ``DetectionModel`` (the ``.model`` of ``ultralytics.YOLO``) computes its training loss with
``model.loss(batch)``, which builds the criterion with ``model.init_criterion()`` (``v8DetectionLoss``, or the
end-to-end loss of one-to-one heads) from the hyper-parameters in ``model.args`` (``box``, ``cls``, ``dfl`` gains).
The trainer's batch holds ``img`` (float ``[0, 1]`` RGB, which the fused image already is), ``batch_idx``, ``cls``
and ``bboxes`` (normalised ``xywh``); this module builds that batch from pixel boxes and pads the image to the
model's stride with ultralytics' letterbox grey (114), so the loss is differentiable down to the fuser.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from fusion.errors import ConfigError

__all__ = ["build_yolo", "ensure_loss_args", "yolo_batch", "detection_loss"]


def build_yolo(spec: str = "yolov8n.yaml", nc: int = 1, *, verbose: bool = False,
               hyp: dict[str, Any] | None = None) -> nn.Module:
    """A YOLO ``DetectionModel`` from a model yaml (random weights) or a local ``.pt`` (never downloaded), ready
    for :func:`detection_loss` (training mode, loss hyper-parameters set)."""
    from downstream._compat import check_local_weights, setup_ultralytics_offline

    setup_ultralytics_offline()
    check_local_weights(spec)
    if str(spec).endswith((".yaml", ".yml")):
        from ultralytics.nn.tasks import DetectionModel

        model = DetectionModel(str(spec), nc=nc, verbose=verbose)
    else:
        from downstream.detection.yolo import load_detector

        model = load_detector(spec).model
    return ensure_loss_args(model, **dict(hyp or {})).train()


def ensure_loss_args(model: nn.Module, **hyp: float) -> nn.Module:
    """Give ``model.args`` ultralytics' default training hyper-parameters (``box``, ``cls``, ``dfl``, …) when it has
    none (models built from a yaml) or only a dict (models loaded from a ``.pt``); ``hyp`` overrides them."""
    from downstream._compat import setup_ultralytics_offline

    setup_ultralytics_offline()
    from ultralytics.cfg import get_cfg

    defaults = vars(get_cfg())
    unknown = sorted(set(hyp) - set(defaults))
    if unknown:
        raise ConfigError(f"detector.hyp: {unknown[0]!r} is not an ultralytics training setting (e.g. box, cls, dfl)")
    args = getattr(model, "args", None)
    current = dict(args) if isinstance(args, dict) else dict(vars(args)) if args is not None else {}
    known = {k: v for k, v in current.items() if k in defaults}
    try:
        model.args = get_cfg(overrides={**known, **hyp})
    except (SyntaxError, TypeError, ValueError) as exc:
        raise ConfigError(f"detector.hyp: {str(exc).splitlines()[0]}") from None
    model.criterion = None  # rebuilt from the new args on the next loss call
    return model


def yolo_batch(images: Tensor, boxes: Sequence[Tensor], stride: int = 32) -> dict[str, Tensor]:
    """The batch ``model.loss`` expects.

    Args:
        images: ``(B, 3, H, W)`` RGB in [0, 1]; padded bottom/right with 114/255 to multiples of ``stride``.
        boxes: per image a tensor ``(n, 5)``: ``class, x1, y1, x2, y2`` in pixels of the unpadded image.

    Returns:
        ``{"img", "batch_idx" (N,), "cls" (N, 1), "bboxes" (N, 4) normalised xywh of the padded image}``.
    """
    if not isinstance(images, Tensor) or images.dim() != 4 or images.shape[1] != 3:
        raise ValueError(f"images must be a tensor (B, 3, H, W) in [0, 1], got {tuple(getattr(images, 'shape', ()))}")
    if len(boxes) != images.shape[0]:
        raise ValueError(f"got {len(boxes)} box lists for {images.shape[0]} images")
    h, w = images.shape[-2:]
    ph, pw = int(math.ceil(h / stride) * stride), int(math.ceil(w / stride) * stride)
    img = F.pad(images, (0, pw - w, 0, ph - h), value=114 / 255) if (ph, pw) != (h, w) else images
    idx, cls, xywh = [], [], []
    for i, bx in enumerate(boxes):
        bx = torch.as_tensor(bx, dtype=torch.float32, device=images.device).reshape(-1, 5)
        if bx.numel() and not bool(((bx[:, 3] > bx[:, 1]) & (bx[:, 4] > bx[:, 2])).all()):
            raise ValueError(f"image {i}: boxes must satisfy x2 > x1 and y2 > y1")
        idx.append(torch.full((bx.shape[0],), float(i), device=images.device))
        cls.append(bx[:, :1])
        cx, cy = (bx[:, 1] + bx[:, 3]) / 2 / pw, (bx[:, 2] + bx[:, 4]) / 2 / ph
        bw, bh = (bx[:, 3] - bx[:, 1]) / pw, (bx[:, 4] - bx[:, 2]) / ph
        xywh.append(torch.stack([cx, cy, bw, bh], dim=1))
    return {"img": img, "batch_idx": torch.cat(idx), "cls": torch.cat(cls), "bboxes": torch.cat(xywh)}


def detection_loss(model: nn.Module, fused: Tensor, boxes: Sequence[Tensor]) -> tuple[Tensor, dict[str, Any]]:
    """YOLO's training loss on fused images, through ultralytics' own criterion.

    Args:
        model: a ``DetectionModel`` in training mode with loss hyper-parameters (:func:`build_yolo`,
            :func:`ensure_loss_args`).
        fused: ``(B, 3, H, W)`` RGB in [0, 1] (gradients flow back into it).
        boxes: per image ``(n, 5)`` ``class, x1, y1, x2, y2`` pixel boxes.

    Returns:
        ``(loss, logs)``: the summed loss as ultralytics' trainer back-propagates it (the components times the
        batch size, summed) and the detached components by name.
    """
    if getattr(model, "args", None) is None or isinstance(model.args, dict):
        ensure_loss_args(model)
    stride = int(max(getattr(model, "stride", torch.tensor([32])).max().item(), 32))
    batch = yolo_batch(fused, boxes, stride)
    loss, items = model.loss(batch)
    names = getattr(model.criterion, "loss_names", None) or ("box_loss", "cls_loss", "dfl_loss")
    if isinstance(items, dict):
        logs = {k: float(torch.as_tensor(v).sum()) for k, v in items.items()}
    else:
        logs = {n: float(v) for n, v in zip(names, torch.as_tensor(items).reshape(-1).tolist())}
    return loss.sum(), logs
