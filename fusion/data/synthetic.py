"""Deterministic paired infrared/visible driving scenes with ground truth, written in the original dataset layouts.

The scenes are built so that fusion matters:

* pedestrians are warm: bright in infrared, but in visible light they are dark, low-contrast figures at night,
  in shadow, or behind headlight glare; optionally (``thermal_crossover``) some daytime pedestrians have the
  background's temperature and are seen in visible light only;
* lane marks, colour cones, car stops, speed bumps and signs have the road's temperature: visible light only;
* cars are seen in both (warm engine and wheels, coloured bodies);
* illumination ranges from day to night; the visible camera gets more noise in the dark, the infrared camera is
  slightly blurred and has a smooth, low-frequency texture of its own.

Every scene is a pure function of ``(seed, index, height, width)``: the same call returns the same pixels.

Writers produce the *original* on-disk layouts, so the project's real readers read them:

* :func:`write_mfnet`: ``images/<name>.png`` (4-channel PNG: R, G, B, thermal), ``labels/<name>.png``,
  ``train.txt`` / ``val.txt`` / ``test.txt``; 9 classes; names ``00001D`` (day) / ``00002N`` (night).
* :func:`write_fmb`: ``{train,test}/{Visible,Infrared,Label}/<name>.png``; 15 classes.
* :func:`write_llvip`: ``{visible,infrared}/{train,test}/<id>.jpg`` and ``Annotations/<id>.xml`` (Pascal VOC,
  class ``person``), infrared stored as 3 equal channels as in LLVIP; its daytime pedestrians may be at thermal
  crossover (invisible in infrared).
"""

from __future__ import annotations

import json
import os
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import cv2
import numpy as np

from fusion.errors import DatasetError
from fusion.utils.io import atomic_write_text, write_image
from fusion.utils.logging import get_logger

__all__ = [
    "MFNET_CLASSES",
    "FMB_CLASSES",
    "Box",
    "Scene",
    "render_scene",
    "write_mfnet",
    "write_fmb",
    "write_llvip",
    "llvip_illumination",
    "write_synthetic_once",
    "GENERATOR_VERSION",
]

log = get_logger(__name__)

GENERATOR_VERSION = 2
"""Bumped whenever the same arguments draw different scenes (2: daytime thermal crossover in ``write_llvip``)."""

MFNET_CLASSES: tuple[str, ...] = (
    "unlabeled", "car", "person", "bike", "curve", "car_stop", "guardrail", "color_cone", "bump",
)  # fmt: skip
FMB_CLASSES: tuple[str, ...] = (
    "unlabeled", "road", "sidewalk", "building", "lamp", "sign", "vegetation", "sky", "person", "car",
    "truck", "bus", "motorcycle", "bicycle", "pole",
)  # fmt: skip

_M = {n: i for i, n in enumerate(MFNET_CLASSES)}
_F = {n: i for i, n in enumerate(FMB_CLASSES)}


@dataclass(frozen=True)
class Box:
    """A labelled box in pixel coordinates (``x2``/``y2`` exclusive edges, as drawn)."""

    cls: str
    x1: float
    y1: float
    x2: float
    y2: float
    visible_in: Literal["ir", "vis", "both"] = "both"


@dataclass
class Scene:
    """One rendered pair with its ground truth."""

    name: str
    vis: np.ndarray  # (H, W, 3) uint8 RGB
    ir: np.ndarray  # (H, W) uint8
    mfnet_label: np.ndarray  # (H, W) uint8, MFNET_CLASSES ids
    fmb_label: np.ndarray  # (H, W) uint8, FMB_CLASSES ids
    boxes: list[Box] = field(default_factory=list)
    illumination: float = 1.0


class _Canvas:
    """Layers drawn in painter's order into the visible colour, temperature and both label maps."""

    def __init__(self, h: int, w: int) -> None:
        self.h, self.w = h, w
        self.vis = np.zeros((h, w, 3), np.float32)  # reflectance-ish colour in [0, 1], lit later
        self.temp = np.zeros((h, w), np.float32)  # infrared intensity in [0, 1]
        self.lit = np.ones((h, w), np.float32)  # per-pixel extra shading (shadows) for the visible camera
        self.mf = np.zeros((h, w), np.uint8)
        self.fm = np.zeros((h, w), np.uint8)

    def paint(self, mask: np.ndarray, colour, temp: float | None, mf: str | None, fm: str | None) -> None:
        m = mask.astype(bool)
        if not m.any():
            return
        self.vis[m] = np.asarray(colour, np.float32)
        if temp is not None:
            self.temp[m] = temp
        if mf is not None:
            self.mf[m] = _M[mf]
        if fm is not None:
            self.fm[m] = _F[fm]

    def mask(self) -> np.ndarray:
        return np.zeros((self.h, self.w), np.uint8)


def _poly(c: _Canvas, pts) -> np.ndarray:
    m = c.mask()
    cv2.fillPoly(m, [np.round(np.asarray(pts, np.float64)).astype(np.int32)], 1)
    return m


def _rect(c: _Canvas, x1, y1, x2, y2) -> np.ndarray:
    return _poly(c, [(x1, y1), (x2, y1), (x2, y2), (x1, y2)])


def _person_mask(c: _Canvas, cx: float, foot: float, height: float) -> np.ndarray:
    m = c.mask()
    hw = height * 0.14
    head_r = max(1, int(round(height * 0.09)))
    cv2.circle(m, (int(round(cx)), int(round(foot - height + head_r))), head_r, 1, -1)
    torso_top, torso_bot = foot - height + 2 * head_r, foot - height * 0.45
    cv2.fillPoly(m, [np.round(np.array([(cx - hw, torso_top), (cx + hw, torso_top), (cx + hw * 0.8, torso_bot),
                                         (cx - hw * 0.8, torso_bot)])).astype(np.int32)], 1)
    leg = max(1, int(round(hw * 0.6)))
    cv2.line(m, (int(cx - hw * 0.4), int(torso_bot)), (int(cx - hw * 0.7), int(foot)), 1, leg)
    cv2.line(m, (int(cx + hw * 0.4), int(torso_bot)), (int(cx + hw * 0.7), int(foot)), 1, leg)
    return m


def _smooth_noise(rng: np.random.Generator, h: int, w: int, scale: int) -> np.ndarray:
    small = rng.standard_normal((max(2, h // scale), max(2, w // scale))).astype(np.float32)
    return cv2.resize(small, (w, h), interpolation=cv2.INTER_CUBIC)


def render_scene(
    index: int,
    seed: int = 0,
    height: int = 240,
    width: int = 320,
    illumination: float | None = None,
    thermal_crossover: float = 0.0,
) -> Scene:
    """Render scene ``index`` of the family ``seed``.

    Args:
        index: scene number (any non-negative int).
        seed: family seed; the pair is a pure function of all the arguments.
        height, width: output size in pixels (at least 48 × 64).
        illumination: 1 = full daylight, 0 = dark night; drawn from the seed when ``None``.
        thermal_crossover: probability that a *daytime* pedestrian is at thermal crossover: body surface and
            surroundings at the same temperature (a warm afternoon), so infrared does not show the person, who wears
            bright clothes in full sun and is seen by the visible camera only (``Box.visible_in == "vis"``).
            0 (default) draws no extra random numbers, so scenes are unchanged.

    Returns:
        A :class:`Scene` with ``vis`` (H, W, 3), ``ir`` (H, W), two label maps and the person boxes.
    """
    if height < 48 or width < 64:
        raise ValueError(f"render_scene: size must be at least 48x64, got {height}x{width}")
    rng = np.random.default_rng([int(seed), int(index), 7919])
    h, w = int(height), int(width)
    illum = float(rng.choice([rng.uniform(0.7, 1.0), rng.uniform(0.05, 0.3)])) if illumination is None else illumination
    night = illum < 0.5
    c = _Canvas(h, w)
    horizon = h * rng.uniform(0.35, 0.45)

    # Sky and far background.
    c.paint(_rect(c, 0, 0, w, horizon + 1), (0.55, 0.7, 0.9), 0.08, None, "sky")
    x = 0.0
    while x < w:  # skyline of buildings
        bw = w * rng.uniform(0.08, 0.2)
        top = horizon - h * rng.uniform(0.05, 0.3)
        g = rng.uniform(0.35, 0.65)
        c.paint(_rect(c, x, top, x + bw, horizon + 1), (g, g * 0.95, g * 0.9), 0.32 + 0.06 * rng.random(),
                None, "building")
        x += bw
    for _ in range(rng.integers(1, 4)):  # trees
        tx, tr = w * rng.random(), h * rng.uniform(0.04, 0.08)
        m = c.mask()
        cv2.ellipse(m, (int(tx), int(horizon - tr * 0.6)), (int(tr * 1.3), int(tr)), 0, 0, 360, 1, -1)
        c.paint(m, (0.15, 0.45, 0.15), 0.22, None, "vegetation")

    # Ground: sidewalks then road, in perspective.
    vp = w * rng.uniform(0.4, 0.6)
    c.paint(_rect(c, 0, horizon, w, h), (0.55, 0.52, 0.5), 0.42, None, "sidewalk")
    road_l, road_r = -w * 0.1, w * 1.1
    road = [(vp - w * 0.03, horizon), (vp + w * 0.03, horizon), (road_r, h), (road_l, h)]
    c.paint(_poly(c, road), (0.3, 0.3, 0.32), 0.45, None, "road")

    def road_x(t: float, y: float) -> float:  # t in [0,1] across the road at row y
        f = (y - horizon) / (h - horizon)
        left = vp - w * 0.03 + (road_l - vp + w * 0.03) * f
        right = vp + w * 0.03 + (road_r - vp - w * 0.03) * f
        return left + t * (right - left)

    def scale_at(y: float) -> float:
        return max(0.05, (y - horizon) / (h - horizon))

    # Lane marks (MFNet "curve"): road temperature, only visible light shows them.
    for t in (0.33, 0.67):
        ys = np.linspace(horizon + (h - horizon) * 0.08, h, 7)
        for y0, y1 in zip(ys[:-1:2], ys[1::2]):
            s0, s1 = scale_at(y0) * w * 0.012, scale_at(y1) * w * 0.012
            pts = [(road_x(t, y0) - s0, y0), (road_x(t, y0) + s0, y0), (road_x(t, y1) + s1, y1),
                   (road_x(t, y1) - s1, y1)]
            c.paint(_poly(c, pts), (0.95, 0.95, 0.9), None, "curve", "road")

    # Guardrail along one side: cold metal, faint in infrared.
    if rng.random() < 0.6:
        side = rng.choice([0.02, 0.98])
        y0, y1 = horizon + (h - horizon) * 0.1, h
        pts = [(road_x(side, y0), y0 - 2), (road_x(side, y1), y1 - h * 0.08), (road_x(side, y1), y1),
               (road_x(side, y0), y0)]
        c.paint(_poly(c, pts), (0.75, 0.75, 0.78), 0.40, "guardrail", "sidewalk")

    # Poles, lamps and signs on the sidewalk edges.
    for _ in range(rng.integers(1, 3)):
        y = horizon + (h - horizon) * rng.uniform(0.15, 0.5)
        px = road_x(rng.choice([-0.05, 1.05]), y)
        ph = h * 0.35 * scale_at(y) + 8
        pw = max(1.5, 3 * scale_at(y))
        c.paint(_rect(c, px - pw, y - ph, px + pw, y), (0.4, 0.4, 0.42), 0.38, None, "pole")
        if rng.random() < 0.5:
            c.paint(_rect(c, px - 3 * pw, y - ph - 2 * pw, px + 3 * pw, y - ph), (0.9, 0.9, 0.7), 0.5, None, "lamp")
        else:
            s = max(4.0, 12 * scale_at(y) + 3)
            c.paint(_rect(c, px - s, y - ph - s, px + s, y - ph + s), (0.85, 0.1, 0.1), 0.36, None, "sign")

    boxes: list[Box] = []
    objects: list[tuple[float, str]] = []
    for _ in range(rng.integers(1, 3)):
        objects.append((rng.uniform(0.25, 0.95), "car"))
    for _ in range(rng.integers(1, 4)):
        objects.append((rng.uniform(0.2, 0.95), "person"))
    for kind in ("bike", "car_stop", "color_cone", "bump"):
        if rng.random() < 0.5:
            objects.append((rng.uniform(0.3, 0.95), kind))
    objects.sort()  # far first: painter's order

    shadow = np.zeros((h, w), np.float32)
    for depth, kind in objects:
        y = horizon + (h - horizon) * depth
        s = scale_at(y)
        if kind == "car":
            cw, ch = w * 0.28 * s + 6, h * 0.2 * s + 4
            cx = road_x(rng.uniform(0.2, 0.8), y)
            heavy = rng.random() < 0.2
            if heavy:
                ch *= 1.6
            colour = rng.uniform(0.1, 0.9, 3)
            body = _rect(c, cx - cw / 2, y - ch, cx + cw / 2, y)
            c.paint(body, colour, 0.55, "car", "bus" if heavy else "car")
            hot = _rect(c, cx - cw * 0.3, y - ch * 0.35, cx + cw * 0.3, y)  # engine / exhaust
            c.paint(hot, colour * 0.8, 0.75, "car", "bus" if heavy else "car")
            for wx in (cx - cw * 0.32, cx + cw * 0.32):
                m = c.mask()
                cv2.circle(m, (int(wx), int(y)), max(1, int(ch * 0.18)), 1, -1)
                c.paint(m, (0.05, 0.05, 0.05), 0.7, "car", "bus" if heavy else "car")
        elif kind == "person":
            ph = h * 0.42 * s + 10
            cx = road_x(rng.uniform(-0.05, 1.05), y)
            m = _person_mask(c, cx, y, ph)
            crossover = not night and thermal_crossover > 0 and rng.random() < thermal_crossover
            if crossover:
                # Body at the background's temperature; bright clothes in the sun (one saturated channel at least).
                under = c.temp[m.astype(bool)].mean() if m.any() else 0.45
                cloth = rng.uniform(0.05, 0.7, 3).astype(np.float32)
                cloth[rng.integers(3)] = rng.uniform(0.85, 1.0)
                c.paint(m, cloth, float(under) + rng.uniform(-0.01, 0.01), "person", "person")
            else:
                # Dark clothing close to the background at night; shadow or glare by day: hard for the visible camera.
                base = c.vis[m.astype(bool)].mean(axis=0) if m.any() else np.full(3, 0.3, np.float32)
                cloth = np.clip(base + rng.uniform(-0.06, 0.06, 3), 0, 1)
                c.paint(m, cloth, rng.uniform(0.85, 0.98), "person", "person")
            if not night and not crossover and rng.random() < 0.7:
                # A cast shadow around the figure (tree, building): person and surroundings both dark.
                sm = c.mask()
                cv2.ellipse(sm, (int(cx), int(y - ph * 0.5)), (int(ph * 0.6), int(ph * 0.8)), 0, 0, 360, 1, -1)
                shadow = np.maximum(shadow, cv2.GaussianBlur(sm.astype(np.float32), (0, 0), 2.0) * 0.85)
            ys, xs = np.nonzero(m)
            if len(xs):
                seen_by = "vis" if crossover else "ir" if night else "both"
                boxes.append(Box("person", float(xs.min()), float(ys.min()), float(xs.max() + 1), float(ys.max() + 1),
                                 seen_by))
        elif kind == "bike":
            bw = w * 0.08 * s + 5
            cx = road_x(rng.uniform(0.0, 1.0), y)
            m = c.mask()
            r = max(1, int(bw * 0.3))
            for wx in (cx - bw * 0.35, cx + bw * 0.35):
                cv2.circle(m, (int(wx), int(y - r)), r, 1, max(1, r // 3))
            cv2.line(m, (int(cx - bw * 0.35), int(y - r)), (int(cx + bw * 0.35), int(y - r)), 1, max(1, r // 3))
            c.paint(m, (0.1, 0.1, 0.6), 0.5, "bike", "bicycle")
        elif kind == "car_stop":
            sw, sh = w * 0.06 * s + 3, h * 0.02 * s + 2
            cx = road_x(rng.uniform(0.05, 0.95), y)
            c.paint(_rect(c, cx - sw, y - sh, cx + sw, y), (0.95, 0.85, 0.1), None, "car_stop", "road")
        elif kind == "color_cone":
            ch_ = h * 0.08 * s + 4
            cx = road_x(rng.uniform(0.0, 1.0), y)
            pts = [(cx, y - ch_), (cx + ch_ * 0.35, y), (cx - ch_ * 0.35, y)]
            c.paint(_poly(c, pts), (1.0, 0.45, 0.0), None, "color_cone", None)
        elif kind == "bump":
            y0, y1 = y - h * 0.015 * s - 1, y + h * 0.015 * s + 1
            pts = [(road_x(0.05, y0), y0), (road_x(0.95, y0), y0), (road_x(0.95, y1), y1), (road_x(0.05, y1), y1)]
            m = _poly(c, pts)
            stripes = ((np.arange(w)[None, :] // max(2, int(8 * s + 2))) % 2 == 0).astype(np.uint8)
            c.paint(m, (0.1, 0.1, 0.1), None, "bump", "road")
            c.paint(m * stripes, (0.95, 0.8, 0.0), None, "bump", "road")

    # Visible camera: light, shadows, glare, noise.
    light = illum * (1.0 - shadow)
    vis = c.vis * (0.04 + 0.96 * light)[..., None]
    if night:
        for _ in range(rng.integers(1, 3)):  # headlight glare
            gx, gy = w * rng.random(), horizon + (h - horizon) * rng.uniform(0.2, 0.7)
            yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
            r = w * rng.uniform(0.06, 0.12)
            vis += (np.exp(-((xx - gx) ** 2 + (yy - gy) ** 2) / (2 * r * r)) * 0.9)[..., None] * np.array(
                [1.0, 0.95, 0.8], np.float32)
    texture = _smooth_noise(rng, h, w, 4) * 0.02
    noise_sigma = 0.01 + 0.05 * (1 - illum)
    vis = vis + texture[..., None] + rng.standard_normal((h, w, 3)).astype(np.float32) * noise_sigma
    vis_u8 = np.clip(np.round(vis * 255), 0, 255).astype(np.uint8)

    # Infrared camera: temperature, low-frequency drift, slight blur, its own noise.
    ir = c.temp + _smooth_noise(rng, h, w, 16) * 0.03 + _smooth_noise(rng, h, w, 3) * 0.015
    ir = cv2.GaussianBlur(ir, (0, 0), sigmaX=0.6 + 0.004 * w / 3.2)
    ir = ir + rng.standard_normal((h, w)).astype(np.float32) * 0.012
    ir_u8 = np.clip(np.round(ir * 255), 0, 255).astype(np.uint8)

    name = f"{index + 1:05d}{'N' if night else 'D'}"
    return Scene(name, vis_u8, ir_u8, c.mf, c.fm, boxes, illum)


def _split_names(names: list[str], split: tuple[float, ...]) -> list[list[str]]:
    total = sum(split)
    cuts = np.cumsum([0] + [round(len(names) * s / total) for s in split])
    cuts[-1] = len(names)
    return [names[a:b] for a, b in zip(cuts[:-1], cuts[1:])]


def write_mfnet(
    root: str | os.PathLike,
    n: int = 60,
    seed: int = 0,
    height: int = 240,
    width: int = 320,
    split: tuple[float, float, float] = (0.6, 0.2, 0.2),
    thermal_crossover: float = 0.0,
) -> Path:
    """Write ``n`` scenes in the MFNet layout (4-channel PNG images, label PNGs, split lists) and return ``root``.

    ``thermal_crossover``: see :func:`render_scene` (0: the default scenes).
    """
    root = Path(root)
    names = []
    for i in range(n):
        s = render_scene(i, seed, height, width, thermal_crossover=thermal_crossover)
        write_image(root / "images" / f"{s.name}.png", np.dstack([s.vis, s.ir]))
        write_image(root / "labels" / f"{s.name}.png", s.mfnet_label)
        names.append(s.name)
    for part, subset in zip(("train", "val", "test"), _split_names(names, split)):
        atomic_write_text(root / f"{part}.txt", "".join(f"{x}\n" for x in subset))
    return root


def write_fmb(
    root: str | os.PathLike,
    n_train: int = 40,
    n_test: int = 20,
    seed: int = 0,
    height: int = 240,
    width: int = 320,
    thermal_crossover: float = 0.0,
) -> Path:
    """Write scenes in the FMB layout (``{train,test}/{Visible,Infrared,Label}``) and return ``root``.

    ``thermal_crossover``: see :func:`render_scene` (0: the default scenes).
    """
    root = Path(root)
    for i in range(n_train + n_test):
        part = "train" if i < n_train else "test"
        s = render_scene(i, seed, height, width, thermal_crossover=thermal_crossover)
        name = f"{i:05d}.png"
        write_image(root / part / "Visible" / name, s.vis)
        write_image(root / part / "Infrared" / name, s.ir)
        write_image(root / part / "Label" / name, s.fmb_label)
    return root


def _voc_xml(filename: str, width: int, height: int, boxes: list[Box]) -> str:
    objs = "".join(
        f"\t<object>\n\t\t<name>{b.cls}</name>\n\t\t<pose>Unspecified</pose>\n\t\t<truncated>0</truncated>\n"
        f"\t\t<difficult>0</difficult>\n\t\t<bndbox>\n\t\t\t<xmin>{int(b.x1)}</xmin>\n\t\t\t<ymin>{int(b.y1)}</ymin>\n"
        f"\t\t\t<xmax>{int(b.x2)}</xmax>\n\t\t\t<ymax>{int(b.y2)}</ymax>\n\t\t</bndbox>\n\t</object>\n"
        for b in boxes
    )
    return (
        f"<annotation>\n\t<folder>Annotations</folder>\n\t<filename>{filename}</filename>\n\t<size>\n\t\t<width>{width}</width>\n"
        f"\t\t<height>{height}</height>\n\t\t<depth>1</depth>\n\t</size>\n\t<segmented>0</segmented>\n{objs}</annotation>\n"
    )


def llvip_illumination(index: int) -> float:
    """Illumination of scene ``index`` in :func:`write_llvip`: odd scenes daylight (0.9), even ones night
    (0.05 to 0.25)."""
    return 0.9 if index % 2 == 1 else 0.05 + 0.2 * ((index * 7919) % 97) / 97


def write_llvip(
    root: str | os.PathLike,
    n_train: int = 40,
    n_test: int = 20,
    seed: int = 0,
    height: int = 256,
    width: int = 320,
    thermal_crossover: float = 0.75,
) -> Path:
    """Write night and day scenes in the LLVIP layout (JPEG pairs + VOC XML with ``person`` boxes).

    Half the scenes are night (pedestrians warm in infrared, dark in visible light); in the daytime half each
    pedestrian is at thermal crossover with probability ``thermal_crossover`` (see :func:`render_scene`), seen by the
    visible camera only. So each modality misses pedestrians the other one shows, and a detector needs both.
    """
    root = Path(root)
    for i in range(n_train + n_test):
        part = "train" if i < n_train else "test"
        s = render_scene(i, seed, height, width, illumination=llvip_illumination(i),
                         thermal_crossover=thermal_crossover)
        ident = f"{(1 if part == 'train' else 19) * 10000 + i + 1:06d}"
        write_image(root / "visible" / part / f"{ident}.jpg", s.vis)
        write_image(root / "infrared" / part / f"{ident}.jpg", np.repeat(s.ir[..., None], 3, axis=2))
        atomic_write_text(root / "Annotations" / f"{ident}.xml", _voc_xml(f"{ident}.jpg", width, height, s.boxes))
    return root


_WRITERS = {"mfnet": write_mfnet, "fmb": write_fmb, "llvip": write_llvip}


def write_synthetic_once(root: str | os.PathLike, layout: str, *, owner: str = "the synthetic scene writer",
                         stamp_name: str = "synthetic.json", **settings) -> Path:
    """Write synthetic scenes in ``layout`` (``mfnet``, ``fmb`` or ``llvip``) into ``root`` unless a folder written
    with the same settings by the same generator version is already there; returns ``root``.

    The folder is written under ``<root>.partial`` and renamed, so an interrupted run never leaves a half folder
    that looks finished; a stamp file (``stamp_name``) records layout, settings and :data:`GENERATOR_VERSION`.
    A stale folder (other settings or generator) is replaced; a folder without the stamp is not ours and is never
    touched.

    Raises:
        DatasetError: ``root`` exists but was not written here (the message names ``owner``).
    """
    if layout not in _WRITERS:
        raise ValueError(f"write_synthetic_once: layout must be one of {', '.join(_WRITERS)}, got {layout!r}")
    root = Path(root)
    stamp = root / stamp_name
    record = {**settings, "layout": layout, "generator": GENERATOR_VERSION}
    if stamp.is_file():
        try:
            if json.loads(stamp.read_text(encoding="utf-8")) == record:
                return root
        except json.JSONDecodeError:
            pass
    if root.exists():
        if not stamp.is_file():
            raise DatasetError(f"{root}: exists but was not written by {owner}'s synthetic writer; not replacing it")
        shutil.rmtree(root)
    tmp = root.with_name(root.name + ".partial")
    if tmp.exists():
        shutil.rmtree(tmp)
    t0 = time.perf_counter()
    _WRITERS[layout](tmp, **settings)
    atomic_write_text(tmp / stamp_name, json.dumps(record, sort_keys=True) + "\n")
    tmp.rename(root)
    log.info("rendered synthetic %s-layout scenes %s into %s in %.1f s", layout, settings, root,
             time.perf_counter() - t0)
    return root
