"""OpenCV's HOG + linear-SVM people detector (Dalal & Triggs, CVPR 2005) as a given, offline detector.

It is the one pretrained pedestrian detector that ships inside a pinned package (``opencv-python``: the SVM of
``cv2.HOGDescriptor_getDefaultPeopleDetector()``, trained on the visible-light INRIA person set), so ``det_eval.py
--detector opencv-hog`` can answer on real labelled pairs, on a CPU and without downloads: does a visible-light
detector find more people in fused frames than in the visible or infrared frame alone?

How a frame becomes boxes (:class:`HOGPeopleDetector`, settings in :data:`HOG_DEFAULTS`):

1. the frame is read as 8-bit BGR (a grey infrared frame is replicated) and, with ``upscale`` > 1, enlarged
   (bilinear): the 64x128 window sees people from 96 px tall only;
2. ``detectMultiScale`` slides the window over an image pyramid (``scale`` between levels, ``win_stride`` pixels,
   ``padding``) and returns every window whose SVM margin exceeds ``hit_threshold``, **without** OpenCV's grouping
   (``groupThreshold=0``): the margin is the score, and a low threshold keeps the low-scoring windows that the
   precision-recall and miss-rate curves need;
3. each window becomes the person box inside it: INRIA windows hold the person with a 16-pixel margin on every
   side of the 64x128 window (Dalal & Triggs, section 3), so the box is the central half of the width and three
   quarters of the height;
4. greedy non-maximum suppression (highest margin first, IoU > ``nms_iou`` suppressed) and at most ``max_det`` boxes.

The search runs on one OpenCV thread: threaded, it returned different windows in a few runs (see :meth:`detect`).

Scores are SVM margins (unbounded, about -1 to 3), not probabilities: compare rankings (AP, miss rate), and use
``display_score`` only to draw pictures.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from downstream.detection.detectors import DETECTORS
from downstream.detection.metrics import Detections, box_iou
from fusion.errors import ConfigError, InputError

__all__ = ["HOGPeopleDetector", "HOGSettings", "HOG_DEFAULTS", "nms", "window_to_person"]


@dataclass(frozen=True)
class HOGSettings:
    """Settings of :class:`HOGPeopleDetector` (``detector.KEY=VALUE`` on the command line).

    Attributes:
        upscale: enlarge the frame by this factor before detection (people under ~96 px tall are missed at 1).
        scale: pyramid step of ``detectMultiScale`` (OpenCV's default 1.05).
        win_stride: window step in pixels (OpenCV's default 8).
        padding: pixels added around the frame (lets windows reach the border).
        hit_threshold: lowest SVM margin kept (OpenCV's default is 0; lower keeps the curves' low-score tail).
        nms_iou: IoU above which the lower-scoring of two boxes is dropped.
        max_det: boxes kept per frame at most.
        display_score: the margin from which pictures draw a box.
    """

    upscale: float = 1.0
    scale: float = 1.05
    win_stride: int = 8
    padding: int = 8
    hit_threshold: float = -0.5
    nms_iou: float = 0.45
    max_det: int = 100
    display_score: float = 0.5

    def __post_init__(self) -> None:
        ints = ("win_stride", "padding", "max_det")
        for name, value in asdict(self).items():
            ok = isinstance(value, int) if name in ints else isinstance(value, (int, float))
            if not ok or isinstance(value, bool):
                kind = "an integer" if name in ints else "a number"
                raise ConfigError(f"opencv-hog: {name}={value!r} must be {kind}")
        checks = {
            "upscale": 0.25 <= self.upscale <= 8,
            "scale": 1.0 < self.scale <= 2.0,
            "win_stride": 1 <= self.win_stride <= 64 and self.win_stride % 8 == 0,
            "padding": 0 <= self.padding <= 64 and self.padding % 8 == 0,
            "nms_iou": 0.0 < self.nms_iou <= 1.0,
            "max_det": self.max_det >= 1,
        }
        bad = [k for k, ok in checks.items() if not ok]
        if bad:
            raise ConfigError(
                f"opencv-hog: invalid {bad[0]}={getattr(self, bad[0])!r} (upscale 0.25..8, scale in (1, 2], "
                "win_stride and padding multiples of 8 (cell size) up to 64, nms_iou in (0, 1], max_det >= 1)"
            )


HOG_DEFAULTS = asdict(HOGSettings())
"""The default settings as a plain dict (documented in :class:`HOGSettings`)."""


def window_to_person(windows: np.ndarray) -> np.ndarray:
    """Detection windows ``(N, 4)`` as ``x, y, w, h`` -> person boxes ``(N, 4)`` ``x1, y1, x2, y2``.

    The INRIA training windows (64x128) hold the person with 16 px of margin on every side: the box is the
    central half of the width and three quarters of the height.
    """
    w = np.asarray(windows, dtype=np.float64).reshape(-1, 4)
    x, y, ww, hh = w.T
    return np.stack([x + ww / 4, y + hh / 8, x + 3 * ww / 4, y + 7 * hh / 8], axis=1)


def nms(boxes: np.ndarray, scores: np.ndarray, iou: float) -> np.ndarray:
    """Greedy non-maximum suppression: indices kept, highest score first.

    Ties are broken by the box coordinates (``x1``, ``y1``, ``x2``, ``y2``, smallest first), never by the input
    order, so the result does not depend on the order in which a detector lists its windows.

    Args:
        boxes: ``(N, 4)`` xyxy.
        scores: ``(N,)``.
        iou: a box whose IoU with a kept, higher-scoring box exceeds this is dropped.
    """
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    scores = np.asarray(scores, dtype=np.float64).reshape(-1)
    if len(boxes) != len(scores):
        raise ValueError(f"nms: {len(boxes)} boxes but {len(scores)} scores")
    order = np.lexsort((boxes[:, 3], boxes[:, 2], boxes[:, 1], boxes[:, 0], -scores))
    overlap = box_iou(boxes, boxes)
    keep: list[int] = []
    suppressed = np.zeros(len(boxes), dtype=bool)
    for i in order:
        if suppressed[i]:
            continue
        keep.append(int(i))
        suppressed |= overlap[i] > iou
    return np.asarray(keep, dtype=np.int64)


@DETECTORS.register("opencv-hog")
class HOGPeopleDetector:
    """OpenCV's default HOG people detector; ``predict(paths)`` -> one :class:`Detections` per image (class 0).

    Args:
        **settings: fields of :class:`HOGSettings`.

    Raises:
        ConfigError: an unknown or invalid setting, or an OpenCV build without HOG (OpenCV 5 moved it out of the
            main package; the project pins 4.14).
    """

    name = "opencv-hog"
    channels = 3

    def __init__(self, **settings: Any) -> None:
        import cv2

        unknown = sorted(set(settings) - set(HOG_DEFAULTS))
        if unknown:
            raise ConfigError(f"opencv-hog: unknown setting {unknown[0]!r} (known: {', '.join(HOG_DEFAULTS)})")
        self.settings = HOGSettings(**settings)
        if not hasattr(cv2, "HOGDescriptor_getDefaultPeopleDetector"):
            raise ConfigError(f"opencv-hog: OpenCV {cv2.__version__} has no HOG people detector "
                              "(OpenCV 5 moved it out; install the pinned opencv-python 4.14)")  # fmt: skip
        self._hog = cv2.HOGDescriptor()
        self._hog.setSVMDetector(cv2.HOGDescriptor_getDefaultPeopleDetector())

    @property
    def display_score(self) -> float:
        """The margin from which pictures draw a box."""
        return self.settings.display_score

    def record(self) -> dict[str, Any]:
        """What decides the boxes: the detector and its settings (written into run.json)."""
        import cv2

        return {"detector": self.name, "opencv": cv2.__version__, **asdict(self.settings)}

    def detect(self, image: np.ndarray) -> Detections:
        """Boxes of one ``(H, W, 3)`` uint8 BGR (or ``(H, W)`` grey) image, in its own pixel frame."""
        import cv2

        if image.dtype != np.uint8 or image.ndim not in (2, 3) or (image.ndim == 3 and image.shape[2] != 3):
            raise ValueError(f"opencv-hog: expected an (H, W, 3) or (H, W) uint8 image, got {image.dtype} "
                             f"{image.shape}")  # fmt: skip
        if image.ndim == 2:
            image = cv2.cvtColor(image, cv2.COLOR_GRAY2BGR)
        s = self.settings
        work = image
        if s.upscale != 1.0:
            h, w = image.shape[:2]
            size = (max(1, round(w * s.upscale)), max(1, round(h * s.upscale)))
            work = cv2.resize(image, size, interpolation=cv2.INTER_LINEAR)
        if work.shape[0] < 128 or work.shape[1] < 64:
            return Detections.empty()
        # one OpenCV thread: the threaded pyramid search returned other windows in 2 of about 20 det_eval runs on
        # this machine (same files and settings; AP50 0.19 / 0.195 instead of 0.206 on MSRS), never single-threaded
        threads = cv2.getNumThreads()
        cv2.setNumThreads(1)
        try:
            windows, margins = self._hog.detectMultiScale(
                work, hitThreshold=s.hit_threshold, winStride=(s.win_stride, s.win_stride),
                padding=(s.padding, s.padding), scale=s.scale, groupThreshold=0,
            )  # fmt: skip
        finally:
            cv2.setNumThreads(threads)
        if len(windows) == 0:
            return Detections.empty()
        sx = image.shape[1] / work.shape[1]
        sy = image.shape[0] / work.shape[0]
        boxes = window_to_person(windows) * np.array([sx, sy, sx, sy])
        scores = np.asarray(margins, dtype=np.float64).reshape(-1)
        keep = nms(boxes, scores, s.nms_iou)[: s.max_det]
        h, w = image.shape[:2]
        boxes = np.clip(boxes[keep], 0, [w, h, w, h])
        return Detections(boxes, scores[keep], np.zeros(len(keep), dtype=np.int64))

    def predict(self, images: Sequence[str | os.PathLike], *, desc: str = "opencv-hog") -> list[Detections]:
        """Detect on image files (read as 8-bit BGR; a grey file is replicated)."""
        import cv2

        out = []
        for p in tqdm([Path(x) for x in images], desc=desc, unit="img", leave=False, disable=None):
            im = cv2.imread(str(p), cv2.IMREAD_COLOR)
            if im is None:
                raise InputError(f"{p}: cannot read image")
            out.append(self.detect(im))
        return out
