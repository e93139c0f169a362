"""Scoring a fuser + YOLO detector pair (the detection counterpart of :func:`downstream.e2e.evaluate.evaluate_pair`).

:func:`evaluate_det_pair` fuses every test pair with the fuser in eval mode (any size,
:func:`fusion.models.fuse_tensors`), rounds the result to ``uint8`` (what a deployed fuser hands a detector), runs the
detector on it (padded bottom/right to its stride with ultralytics' letterbox grey, so that boxes stay in image
pixels), keeps boxes through ultralytics' own NMS, and scores them with the project's detection metrics
(:func:`downstream.detection.metrics.evaluate_detections`: mAP50, mAP50-95, recall at 1 FPPI, MR⁻² of the person
class) next to fusion metrics of the same fused images.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from downstream.detection.labels import person_class
from downstream.detection.metrics import Detections
from downstream.e2e.data import load_det_pair, to_tensor01

__all__ = ["evaluate_det_pair", "detect_tensors"]


@torch.no_grad()
def detect_tensors(detector: nn.Module, images: torch.Tensor, *, conf: float = 0.001, iou: float = 0.7,
                   max_det: int = 300) -> list[Detections]:
    """Boxes of a YOLO ``DetectionModel`` on ``(B, 3, H, W)`` RGB images in [0, 1], in their own pixel frame.

    The batch is padded bottom/right with 114/255 to the model's stride (no resizing, so no box rescaling).
    """
    from ultralytics.utils.nms import non_max_suppression

    if images.dim() != 4 or images.shape[1] != 3:
        raise ValueError(f"images must be (B, 3, H, W) in [0, 1], got {tuple(images.shape)}")
    stride = int(max(getattr(detector, "stride", torch.tensor([32])).max().item(), 32))
    h, w = images.shape[-2:]
    ph, pw = math.ceil(h / stride) * stride, math.ceil(w / stride) * stride
    x = F.pad(images, (0, pw - w, 0, ph - h), value=114 / 255) if (ph, pw) != (h, w) else images
    was = detector.training
    detector.eval()
    try:
        raw = detector(x)
    finally:
        detector.train(was)
    kept = non_max_suppression(raw, conf_thres=conf, iou_thres=iou, max_det=max_det, max_time_img=10.0)
    out = []
    for k in kept:
        k = k.detach().cpu().double().numpy()
        boxes = k[:, :4].copy()
        boxes[:, [0, 2]] = boxes[:, [0, 2]].clip(0, w)
        boxes[:, [1, 3]] = boxes[:, [1, 3]].clip(0, h)
        out.append(Detections(boxes, k[:, 4], k[:, 5].astype(np.int64)))
    return out


@torch.no_grad()
def evaluate_det_pair(fuser: nn.Module, detector: nn.Module, samples: Sequence[Any], classes: Sequence[str], *,
                      task: str = "vif", batch_size: int = 4, device: str | torch.device = "cpu",
                      conf: float = 0.001, iou: float = 0.7, profile: str = "tang",
                      metrics: Sequence[str] | None = ("EN", "SD", "Qabf"), progress: bool = False,
                      keep: int = 0) -> dict[str, Any]:
    """Test scores of a fuser (:class:`~fusion.models.TCMoA`) followed by a YOLO detector.

    Args:
        fuser, detector: the two networks (eval mode for the call, restored after).
        samples: test :class:`~downstream.detection.datasets.DetSample` list (labels in the classes' numbering).
        classes: class names (the detector's outputs).
        conf, iou: lowest score kept and NMS IoU.
        profile, metrics: fusion-metric profile and names (``None``: no fusion metrics).
        keep: return the first ``keep`` fused images and predictions (for pictures).

    Returns:
        ``{"det": {"mAP50", "mAP50-95", "precision", "recall", "recall_1fppi", "miss_rate", "AP50": {class: v}},
        "fusion": {metric: mean}, "n", "n_boxes", "seconds", "samples": [(name, fused uint8, Detections), ...]}``.
    """
    from PIL import Image

    from downstream.detection.metrics import evaluate_detections
    from fusion.models import fuse_tensors

    dev = torch.device(device)
    modes = (fuser.training, detector.training)
    fuser.eval()
    detector.eval()
    t0 = time.perf_counter()
    groups: dict[tuple[int, int], list[int]] = {}
    for i, smp in enumerate(samples):
        with Image.open(smp.vis) as im:  # the header only: pairs are decoded chunk by chunk
            groups.setdefault(im.size, []).append(i)
    chunks = [idx[s : s + batch_size] for idx in groups.values() for s in range(0, len(idx), batch_size)]
    if progress:
        from tqdm import tqdm

        chunks = tqdm(chunks, desc="e2e det test", unit="batch", leave=False)
    preds: dict[int, Detections] = {}
    gts: dict[int, Any] = {}
    rows: dict[int, dict[str, float]] = {}
    kept: dict[int, np.ndarray] = {}
    try:
        for chunk in chunks:
            pairs = [load_det_pair(samples[i]) for i in chunk]
            a = torch.stack([to_tensor01(p[0]) for p in pairs]).to(dev)
            b = torch.stack([to_tensor01(p[1]) for p in pairs]).to(dev)
            fused_u8 = (fuse_tensors(fuser, a, b, task) * 255.0).round().clamp_(0, 255)
            dets = detect_tensors(detector, fused_u8 / 255.0, conf=conf, iou=iou)
            fused_np = fused_u8.byte().permute(0, 2, 3, 1).cpu().numpy()
            if metrics:
                from fusion.metrics import evaluate_batch

                scored = evaluate_batch(list(fused_np), [p[1][:, :, 0] for p in pairs], [p[0] for p in pairs],
                                        profile=profile, metrics=list(metrics))
            for j, i in enumerate(chunk):
                vis = pairs[j][0]
                lab = samples[i].labels
                gts[i] = lab if (lab.width, lab.height) == (vis.shape[1], vis.shape[0]) else lab.scaled(
                    vis.shape[1], vis.shape[0])
                preds[i] = dets[j]
                if metrics:
                    rows[i] = scored[j]
                if i < keep:
                    kept[i] = fused_np[j]
    finally:
        fuser.train(modes[0])
        detector.train(modes[1])
    order = range(len(samples))
    person = person_class(classes)  # no pedestrian class: no miss rate (NaN)
    m = evaluate_detections([preds[i] for i in order], [gts[i] for i in order], len(classes),
                            miss_rate_class=-1 if person is None else person)
    out: dict[str, Any] = {
        "det": {**m.row(), "AP50": {classes[c]: v for c, v in m.ap50_per_class.items()}},
        "fusion": {},
        "n": len(samples),
        "n_boxes": m.n_gt,
    }
    if metrics:
        out["fusion"] = {k: float(np.nanmean([rows[i][k] for i in order])) for k in rows[0]}
    out["seconds"] = time.perf_counter() - t0
    out["samples"] = [(samples[i].ident, kept[i], preds[i]) for i in sorted(kept)]
    return out
