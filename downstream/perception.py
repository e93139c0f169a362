"""Perception overlays for the streaming pipeline, registered into :mod:`fusion.stream.perceive`.

* :class:`SegmentationOverlay` (``"segment"``): an mmsegmentation config (+ checkpoint); class colours blended over
  the frame.
* :class:`DetectionOverlay` (``"detect"``): an ultralytics model (a safe detector file, or a ``.yaml`` architecture);
  boxes drawn.

``fusion`` never imports this module: it is found through the ``tcmoa_fusion.perceivers`` entry point
(``pyproject.toml``), so the fusion package stays free of the perception stack.
"""

from __future__ import annotations

import os
from pathlib import Path

import cv2
import numpy as np

from downstream._compat import prepare_mmseg
from fusion.errors import CheckpointError, ConfigError, InputError
from fusion.stream.perceive import register_perceiver
from fusion.utils.logging import get_logger

__all__ = ["SegmentationOverlay", "DetectionOverlay"]

log = get_logger(__name__)


def _palette(n: int) -> np.ndarray:
    """``(n, 3)`` distinct uint8 colours (golden-ratio hues), used when a model carries no palette."""
    hues = (np.arange(n) * 0.618033988749895 % 1.0 * 179).astype(np.uint8)
    hsv = np.stack([hues, np.full(n, 200, np.uint8), np.full(n, 230, np.uint8)], axis=1)[None]
    return cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB)[0]


@register_perceiver("segment")
class SegmentationOverlay:
    """mmsegmentation model whose per-pixel classes are blended over the frame.

    Args:
        config: mmseg config file (must define ``test_pipeline``).
        checkpoint: weights (``.pth`` from mmengine or ``.safetensors``); ``None`` keeps random weights (tests).
        device: ``cpu``/``cuda``/``cuda:N``.
        alpha: opacity of the class colours.
        palette: ``(num_classes, 3)`` RGB colours; default: the checkpoint's ``dataset_meta`` palette, else generated.
    """

    def __init__(
        self,
        config: str | os.PathLike,
        checkpoint: str | os.PathLike | None = None,
        *,
        device: str = "cpu",
        alpha: float = 0.5,
        palette: np.ndarray | None = None,
    ):
        cfg_path = Path(config)
        if not cfg_path.is_file():
            raise InputError(f"{cfg_path}: no such segmentation config")
        if checkpoint is not None and not Path(checkpoint).is_file():
            raise InputError(f"{checkpoint}: no such segmentation checkpoint")
        if not 0.0 <= alpha <= 1.0:
            raise ConfigError(f"alpha={alpha}: must be in [0, 1]")
        prepare_mmseg()  # shim + safe checkpoint loading + registered mmseg modules
        from mmseg.apis import inference_model, init_model

        self._infer = inference_model
        self.model = init_model(str(cfg_path), None, device=str(device))
        if checkpoint is not None:
            from downstream.segmentation.checkpoint import read_segmenter_checkpoint

            state, meta = read_segmenter_checkpoint(checkpoint)
            missing, unexpected = self.model.load_state_dict(state, strict=False)
            if missing or unexpected:
                raise CheckpointError(
                    f"{checkpoint}: does not match {cfg_path.name} ({len(missing)} missing, {len(unexpected)} "
                    f"unexpected keys, e.g. {(list(missing) + list(unexpected))[:3]})"
                )
            if isinstance(meta.get("dataset_meta"), dict):
                self.model.dataset_meta = meta["dataset_meta"]
        self.alpha = float(alpha)
        n = int(getattr(self.model.decode_head, "num_classes", 0) or 0) or 256
        meta_palette = (getattr(self.model, "dataset_meta", None) or {}).get("palette")
        if palette is not None:
            self.palette = np.asarray(palette, dtype=np.uint8)
        elif meta_palette is not None and len(meta_palette) >= n:
            self.palette = np.asarray(meta_palette, dtype=np.uint8)
        else:
            self.palette = _palette(n)
        self.last_labels: np.ndarray | None = None  # (H, W) class ids of the latest frame

    def __call__(self, frame: np.ndarray) -> np.ndarray:
        # mmseg pipelines take BGR arrays (mmcv.imread's order); the data preprocessor converts.
        result = self._infer(self.model, np.ascontiguousarray(frame[:, :, ::-1]))
        labels = result.pred_sem_seg.data[0].cpu().numpy().astype(np.int64)
        self.last_labels = labels
        colours = self.palette[np.clip(labels, 0, len(self.palette) - 1)]
        if colours.shape[:2] != frame.shape[:2]:
            colours = cv2.resize(colours, (frame.shape[1], frame.shape[0]), interpolation=cv2.INTER_NEAREST)
        return cv2.addWeighted(frame, 1.0 - self.alpha, colours, self.alpha, 0.0)


@register_perceiver("detect")
class DetectionOverlay:
    """ultralytics YOLO model whose boxes are drawn on the frame.

    Args:
        weights: a local ``.pt`` file, or a ``.yaml`` architecture (random weights; a name like ``yolov8n.yaml``
            resolves inside ultralytics without network).
        device: ``cpu``/``cuda``/``cuda:N``.
        conf: confidence threshold.
        imgsz: inference size.
        half: fp16 inference (CUDA only).
        trust: allow an ultralytics pickle (it can run code when loaded); by default only safe detector files
            (``downstream.detection.safe_weights``) load.
    """

    def __init__(
        self,
        weights: str | os.PathLike,
        *,
        device: str = "cpu",
        conf: float = 0.25,
        imgsz: int = 640,
        half: bool = False,
        trust: bool = False,
    ):
        w = str(weights)
        if not w.endswith((".yaml", ".yml")) and not Path(w).is_file():
            # A missing .pt name would make ultralytics try to download it.
            raise InputError(f"{w}: no such detection weights file")
        from downstream.detection.yolo import import_yolo, load_detector

        try:
            self.model = import_yolo()(w) if w.endswith((".yaml", ".yml")) else load_detector(w, trust=trust)
        except FileNotFoundError as exc:
            raise InputError(f"{w}: {exc}") from None
        self.device = str(device)
        self.conf = float(conf)
        self.imgsz = int(imgsz)
        self.half = bool(half) and self.device.startswith("cuda")
        self.last_count = 0

    def __call__(self, frame: np.ndarray) -> np.ndarray:
        extra = {"half": True} if self.half else {}  # passing half=False makes ultralytics warn
        results = self.model.predict(
            np.ascontiguousarray(frame[:, :, ::-1]), device=self.device, conf=self.conf, imgsz=self.imgsz,
            verbose=False, **extra,
        )
        r = results[0]
        self.last_count = 0 if r.boxes is None else len(r.boxes)
        return np.ascontiguousarray(r.plot()[:, :, ::-1])  # plot() draws on a BGR copy
