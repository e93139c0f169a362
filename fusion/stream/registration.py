"""Align the infrared frame onto the visible frame with one homography.

Convention: ``H`` maps pixel coordinates of the *original* infrared frame to pixel coordinates of the visible frame
(``x_vis ~ H @ x_ir``), so that ``cv2.warpPerspective(ir, H, (W_vis, H_vis))`` both aligns and resizes. Without a
homography the infrared frame is simply resized to the visible size (``H`` is then a pure scaling).

A homography comes from a calibration file (JSON ``[[...], [...], [...]]`` or ``{"homography": [[...]]}``, or a
``.npy`` 3x3 array) or is estimated once from a few frame pairs: ORB features on gradient-magnitude images (edges look
alike in both modalities even where intensities are inverted), then ECC on the same edge images, and identity with a
warning when neither gives a plausible transform.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from fusion.errors import InputError
from fusion.utils.io import atomic_write_text
from fusion.utils.logging import get_logger

__all__ = [
    "Registration",
    "load_homography",
    "save_homography",
    "scale_homography",
    "estimate_homography",
    "warp_to",
]

log = get_logger(__name__)

_MIN_INLIERS = 15
_MIN_INLIER_RATIO = 0.25
# Smallest gain in edge agreement (normalised cross-correlation of blurred edge maps) for an estimate to be used.
_MIN_GAIN = 0.02


def load_homography(path: str | os.PathLike) -> np.ndarray:
    """Read a 3x3 homography (infrared -> visible pixels) from ``.json`` or ``.npy``.

    Raises:
        InputError: missing file, unreadable content, wrong shape, non-finite or singular matrix.
    """
    p = Path(path)
    if not p.is_file():
        raise InputError(f"{p}: no such homography file")
    try:
        if p.suffix.lower() == ".npy":
            arr = np.load(p, allow_pickle=False)
        else:
            data = json.loads(p.read_text(encoding="utf-8"))
            if isinstance(data, dict):
                if "homography" not in data:
                    raise InputError(f"{p}: JSON object has no 'homography' key")
                data = data["homography"]
            arr = np.asarray(data, dtype=np.float64)
    except InputError:
        raise
    except (ValueError, OSError, TypeError) as exc:
        raise InputError(f"{p}: cannot read a homography ({exc.__class__.__name__}: {exc})") from None
    arr = np.asarray(arr, dtype=np.float64)
    if arr.shape != (3, 3):
        raise InputError(f"{p}: homography must be a 3x3 matrix, got shape {arr.shape}")
    if not np.all(np.isfinite(arr)) or abs(np.linalg.det(arr)) < 1e-12:
        raise InputError(f"{p}: homography is singular or not finite")
    return arr / arr[2, 2] if abs(arr[2, 2]) > 1e-12 else arr


def save_homography(path: str | os.PathLike, homography: np.ndarray, **meta: object) -> Path:
    """Write ``{"homography": [[...]], **meta}`` as JSON (atomically); readable by :func:`load_homography`."""
    h = np.asarray(homography, dtype=np.float64)
    if h.shape != (3, 3):
        raise ValueError(f"homography must be (3, 3), got {h.shape}")
    return atomic_write_text(path, json.dumps({"homography": h.tolist(), **meta}, indent=2))


def scale_homography(src_size: tuple[int, int], dst_size: tuple[int, int]) -> np.ndarray:
    """The homography that resizes an image of ``(width, height)`` ``src_size`` to ``dst_size``."""
    sw, sh = src_size
    dw, dh = dst_size
    return np.diag([dw / sw, dh / sh, 1.0])


def warp_to(image: np.ndarray, homography: np.ndarray | None, size: tuple[int, int]) -> np.ndarray:
    """Warp ``image`` with ``homography`` into a frame of ``(width, height)`` ``size``; ``None`` just resizes."""
    w, h = size
    if homography is None:
        if image.shape[1] == w and image.shape[0] == h:
            return image
        return cv2.resize(image, (w, h), interpolation=cv2.INTER_LINEAR)
    return cv2.warpPerspective(image, homography, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT)


@dataclass
class Registration:
    """How infrared frames are mapped onto visible frames.

    Attributes:
        homography: 3x3 infrared -> visible pixel mapping, or ``None`` for "resize only".
        method: ``none``, ``file``, ``orb``, ``ecc`` or ``identity`` (estimation failed; resize only).
        detail: a short human-readable note (inlier counts, ECC score, why it fell back).
    """

    homography: np.ndarray | None = None
    method: str = "none"
    detail: str = ""

    def apply(self, ir: np.ndarray, vis_shape: tuple[int, ...]) -> np.ndarray:
        """Infrared frame aligned to a visible frame of shape ``(H, W, ...)``."""
        return warp_to(ir, self.homography, (int(vis_shape[1]), int(vis_shape[0])))

    def as_dict(self) -> dict:
        h = None if self.homography is None else np.round(self.homography, 8).tolist()
        return {"method": self.method, "homography": h, "detail": self.detail}


def _edges(img: np.ndarray) -> np.ndarray:
    """Gradient magnitude of a blurred gray image, stretched to uint8: edges agree across modalities."""
    gray = cv2.cvtColor(img, cv2.COLOR_RGB2GRAY) if img.ndim == 3 else img
    gray = cv2.GaussianBlur(gray, (5, 5), 1.2).astype(np.float32)
    gx = cv2.Sobel(gray, cv2.CV_32F, 1, 0, ksize=3)
    gy = cv2.Sobel(gray, cv2.CV_32F, 0, 1, ksize=3)
    mag = cv2.magnitude(gx, gy)
    top = float(np.percentile(mag, 99.5)) or 1.0
    return np.clip(mag * (255.0 / top), 0, 255).astype(np.uint8)


def _edge_agreement(ir_e: Sequence[np.ndarray], vis_e: Sequence[np.ndarray], h: np.ndarray) -> float:
    """Mean normalised cross-correlation of blurred edge maps after warping infrared by ``h`` (overlap only)."""
    scores = []
    for a, b in zip(ir_e, vis_e):
        size = (b.shape[1], b.shape[0])
        warped = cv2.warpPerspective(a, h, size, flags=cv2.INTER_LINEAR)
        mask = cv2.warpPerspective(np.ones_like(a), h, size, flags=cv2.INTER_NEAREST).astype(bool)
        if mask.sum() < 0.25 * mask.size:
            scores.append(-1.0)
            continue
        x = cv2.GaussianBlur(warped.astype(np.float32), (0, 0), 3)[mask]
        y = cv2.GaussianBlur(b.astype(np.float32), (0, 0), 3)[mask]
        x -= x.mean()
        y -= y.mean()
        denom = float(np.sqrt((x * x).sum() * (y * y).sum()))
        scores.append(float((x * y).sum()) / denom if denom > 0 else 0.0)
    return float(np.mean(scores))


def _plausible(h: np.ndarray, size: tuple[int, int]) -> tuple[bool, str]:
    """A homography between two frames of the same ``(width, height)`` that keeps the frame roughly in place."""
    if h is None or not np.all(np.isfinite(h)) or abs(h[2, 2]) < 1e-12:
        return False, "not finite"
    h = h / h[2, 2]
    w, hh = size
    corners = np.array([[0, 0], [w, 0], [w, hh], [0, hh]], dtype=np.float64)
    pts = cv2.perspectiveTransform(corners[None], h)[0]
    if not np.all(np.isfinite(pts)):
        return False, "maps a corner to infinity"
    area = 0.5 * abs(np.dot(pts[:, 0], np.roll(pts[:, 1], 1)) - np.dot(pts[:, 1], np.roll(pts[:, 0], 1)))
    ratio = area / float(w * hh)
    if not 0.5 <= ratio <= 2.0:
        return False, f"area ratio {ratio:.2f} outside [0.5, 2]"
    shift = np.abs(pts - corners).max()
    if shift > 0.35 * max(w, hh):
        return False, f"corner moves {shift:.0f} px"
    # The quadrilateral must stay convex and keep its orientation (no fold or mirror).
    cross = [
        np.cross(pts[(i + 1) % 4] - pts[i], pts[(i + 2) % 4] - pts[(i + 1) % 4]) for i in range(4)
    ]
    if not (all(c > 0 for c in cross) or all(c < 0 for c in cross)) or cross[0] < 0:
        return False, "folds or mirrors the frame"
    return True, ""


def _orb(ir_e: Sequence[np.ndarray], vis_e: Sequence[np.ndarray]) -> tuple[np.ndarray | None, str]:
    orb = cv2.ORB_create(nfeatures=1500, fastThreshold=10)
    matcher = cv2.BFMatcher(cv2.NORM_HAMMING)
    src, dst = [], []
    for a, b in zip(ir_e, vis_e):
        ka, da = orb.detectAndCompute(a, None)
        kb, db = orb.detectAndCompute(b, None)
        if da is None or db is None or len(ka) < 8 or len(kb) < 8:
            continue
        for pair in matcher.knnMatch(da, db, k=2):
            if len(pair) == 2 and pair[0].distance < 0.8 * pair[1].distance:
                src.append(ka[pair[0].queryIdx].pt)
                dst.append(kb[pair[0].trainIdx].pt)
    if len(src) < _MIN_INLIERS:
        return None, f"orb: {len(src)} matches"
    h, mask = cv2.findHomography(np.float32(src), np.float32(dst), cv2.RANSAC, 3.0)
    if h is None:
        return None, f"orb: RANSAC failed on {len(src)} matches"
    inliers = int(mask.sum())
    if inliers < _MIN_INLIERS or inliers < _MIN_INLIER_RATIO * len(src):
        return None, f"orb: {inliers}/{len(src)} inliers"
    return h, f"orb: {inliers}/{len(src)} inliers"


def _ecc_level(a: np.ndarray, b: np.ndarray, side: int, init: np.ndarray) -> tuple[float, np.ndarray]:
    """Affine ECC of edge maps reduced to ``side``; ``init`` and the result map visible to infrared full-size pixels."""
    h0, w0 = b.shape[:2]
    s = min(1.0, side / max(h0, w0))
    size = (max(8, round(w0 * s)), max(8, round(h0 * s)))
    down = np.diag([size[0] / w0, size[1] / h0, 1.0])
    warp = (down @ init @ np.linalg.inv(down))[:2].astype(np.float32)
    ta = cv2.resize(a, size, interpolation=cv2.INTER_AREA).astype(np.float32)
    tb = cv2.resize(b, size, interpolation=cv2.INTER_AREA).astype(np.float32)
    criteria = (cv2.TERM_CRITERIA_EPS | cv2.TERM_CRITERIA_COUNT, 100, 1e-5)
    score, warp = cv2.findTransformECC(tb, ta, warp, cv2.MOTION_AFFINE, criteria, None, 5)
    full = np.vstack([warp.astype(np.float64), [0.0, 0.0, 1.0]])
    return float(score), np.linalg.inv(down) @ full @ down


def _ecc(ir_e: Sequence[np.ndarray], vis_e: Sequence[np.ndarray]) -> tuple[np.ndarray | None, str]:
    # Affine, coarse to fine: across modalities a full homography is poorly constrained by ECC (it drifts), while
    # an affine model at 320 px then at full size (<= 640 px) recovered shifts/scalings of real clips to a few pixels.
    best: tuple[float, np.ndarray] | None = None
    notes = []
    for a, b in zip(ir_e, vis_e):
        warp = np.eye(3)
        try:
            for side in (320, 640):
                score, warp = _ecc_level(a, b, side, warp)
        except cv2.error as exc:
            notes.append(f"ecc: did not converge ({str(exc).strip().splitlines()[-1][:60]})")
            continue
        try:
            h = np.linalg.inv(warp)  # ECC maps visible to infrared; we want infrared to visible
        except np.linalg.LinAlgError:
            continue
        if best is None or score > best[0]:
            best = (score, h)
    if best is None:
        return None, "; ".join(notes) or "ecc: no result"
    score, h = best
    if score < 0.2:
        return None, f"ecc: correlation {score:.2f} too low"
    return h, f"ecc (affine): correlation {score:.3f}"


def estimate_homography(
    ir_frames: Sequence[np.ndarray],
    vis_frames: Sequence[np.ndarray],
    *,
    methods: Sequence[str] = ("orb", "ecc"),
) -> Registration:
    """Estimate one infrared -> visible homography from a few frame pairs; never raises on failure.

    Args:
        ir_frames: infrared frames (any size; RGB ``(H, W, 3)`` or gray ``(H, W)``).
        vis_frames: the matching visible frames (all of one size).
        methods: estimators to try in order (``"orb"``, ``"ecc"``).

    Returns:
        A :class:`Registration`; when no estimator gives a plausible transform, ``method="identity"`` with
        ``homography=None`` (plain resize) and a logged warning.
    """
    if not ir_frames or len(ir_frames) != len(vis_frames):
        raise ValueError(f"need the same non-zero number of ir and vis frames, got {len(ir_frames)}, {len(vis_frames)}")
    vh, vw = vis_frames[0].shape[:2]
    ih, iw = ir_frames[0].shape[:2]
    scale = scale_homography((iw, ih), (vw, vh))
    ir_e = [_edges(cv2.resize(f, (vw, vh), interpolation=cv2.INTER_AREA)) for f in ir_frames]
    vis_e = [_edges(f) for f in vis_frames]
    notes = []
    base = _edge_agreement(ir_e, vis_e, np.eye(3))
    for name in methods:
        if name not in ("orb", "ecc"):
            raise ValueError(f"unknown registration method {name!r} (use 'orb' or 'ecc')")
        h, note = (_orb if name == "orb" else _ecc)(ir_e, vis_e)
        notes.append(note)
        if h is None:
            continue
        ok, why = _plausible(h, (vw, vh))
        if not ok:
            notes.append(f"{name} rejected: {why}")
            continue
        h = h / h[2, 2]
        # Accept only a transform that makes the edges agree better than plain resizing (already-aligned rigs).
        score = _edge_agreement(ir_e, vis_e, h)
        if score < base + _MIN_GAIN:
            notes.append(f"{name} rejected: edge agreement {score:.3f} vs {base:.3f} without it")
            continue
        note = f"{note}; edge agreement {base:.3f} -> {score:.3f}"
        log.info("registration: %s", note)
        return Registration(h @ scale, name, note)
    detail = "; ".join(notes)
    log.warning("registration: no transform better than plain resizing; using identity (%s)", detail)
    return Registration(None, "identity", detail)
