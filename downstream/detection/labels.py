"""Box labels: Pascal VOC XML, COCO JSON and YOLO text, all read into one :class:`ImageLabels` form.

Coordinate conventions (each reader documents which one it applies):

* :class:`ImageLabels` holds *continuous* pixel coordinates ``x1, y1, x2, y2`` (a box covering pixels 0..9 of a row
  spans ``x1=0, x2=10``); YOLO text is ``class cx cy w h`` normalised by the image size.
* LLVIP's XML is converted as the LLVIP authors' own ``xml2txt_yolov5.py`` does: the XML numbers are taken as
  continuous coordinates (``cx = (xmin + xmax) / 2 / W``, ``w = (xmax - xmin) / W``). This is ``one_based=False``.
* Classic 1-based VOC (and the M3FD XML behind ``voc2coco``) marks the first and last pixel inclusively;
  ``one_based=True`` maps it to ``(xmin - 1, ymin - 1, xmax, ymax)``, which is exactly the COCO box that ``voc2coco``
  wrote (``x = xmin - 1``, ``w = xmax - (xmin - 1)``), so the two M3FD formats agree.
"""

from __future__ import annotations

import json
import os
import xml.etree.ElementTree as ET
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from fusion.errors import DatasetError
from fusion.utils.io import atomic_write_text

__all__ = [
    "PERSON_NAMES",
    "person_class",
    "LLVIP_CLASSES",
    "M3FD_CLASSES",
    "MSRS_DET_CLASSES",
    "ImageLabels",
    "read_voc_xml",
    "read_coco_json",
    "read_yolo_txt",
    "read_class_names",
    "yolo_lines",
    "write_yolo_txt",
]

LLVIP_CLASSES: tuple[str, ...] = ("person",)
M3FD_CLASSES: tuple[str, ...] = ("People", "Car", "Motorcycle", "Bus", "Truck", "Lamp")
"""M3FD's six classes in its own order (COCO category ids 1..6)."""
MSRS_DET_CLASSES: tuple[str, ...] = ("person", "bicycle", "car")
"""Classes of the public MSRS detection labels (``classes.txt``: 0 person, 1 bicycle, 2 car)."""


PERSON_NAMES: tuple[str, ...] = ("person", "people", "pedestrian")
"""Class names that mean a pedestrian (LLVIP/MSRS ``person``, M3FD ``People``), compared case-insensitively."""


def person_class(classes: Sequence[str]) -> int | None:
    """Index of the pedestrian class among ``classes`` (the first of :data:`PERSON_NAMES`), or ``None``."""
    for i, c in enumerate(classes):
        if c.lower() in PERSON_NAMES:
            return i
    return None


@dataclass
class ImageLabels:
    """Ground-truth boxes of one image.

    Attributes:
        boxes: ``(N, 4)`` float64 continuous pixel coordinates ``x1, y1, x2, y2``.
        classes: ``(N,)`` int64 class indices.
        width, height: image size in pixels.
        ignore: ``(N,)`` bool, boxes marked ``difficult`` (not counted as misses, detections on them not false).
    """

    boxes: np.ndarray
    classes: np.ndarray
    width: int
    height: int
    ignore: np.ndarray = field(default=None)  # type: ignore[assignment]

    def __post_init__(self) -> None:
        self.boxes = np.asarray(self.boxes, dtype=np.float64).reshape(-1, 4)
        self.classes = np.asarray(self.classes, dtype=np.int64).reshape(-1)
        if self.ignore is None:
            self.ignore = np.zeros(len(self.classes), dtype=bool)
        self.ignore = np.asarray(self.ignore, dtype=bool).reshape(-1)
        if not (len(self.boxes) == len(self.classes) == len(self.ignore)):
            raise ValueError(
                f"ImageLabels: {len(self.boxes)} boxes, {len(self.classes)} classes, {len(self.ignore)} ignore flags"
            )

    def __len__(self) -> int:
        return len(self.classes)

    def only_class(self, cls: int) -> ImageLabels:
        """The boxes of class ``cls`` alone, relabelled as class 0 (for a one-class detector)."""
        keep = self.classes == cls
        return ImageLabels(self.boxes[keep], np.zeros(int(keep.sum()), dtype=np.int64), self.width, self.height,
                           self.ignore[keep])

    def scaled(self, width: int, height: int) -> ImageLabels:
        """The same boxes for the image resized to ``width`` x ``height``."""
        s = np.array([width / self.width, height / self.height] * 2)
        return ImageLabels(self.boxes * s, self.classes.copy(), width, height, self.ignore.copy())


def _class_index(name: str, classes: Sequence[str] | None, source: Path) -> int:
    if classes is None:
        return 0
    lookup = {c.lower(): i for i, c in enumerate(classes)}
    if name.lower() not in lookup:
        raise DatasetError(f"{source}: unknown class {name!r} (expected one of {', '.join(classes)})")
    return lookup[name.lower()]


def _xml_number(node: ET.Element, key: str, source: Path) -> float:
    text = node.findtext(key)
    if text is None or not text.strip():
        raise DatasetError(f"{source}: <{key}> missing")
    try:
        return float(text.strip())
    except ValueError:
        raise DatasetError(f"{source}: <{key}> is not a number: {text.strip()!r}") from None


def read_voc_xml(
    path: str | os.PathLike,
    classes: Sequence[str] | None = LLVIP_CLASSES,
    *,
    one_based: bool = False,
    image_size: tuple[int, int] | None = None,
) -> ImageLabels:
    """Read a Pascal VOC annotation file.

    Args:
        path: the ``.xml`` file (any line endings).
        classes: class names in index order (matched case-insensitively); ``None`` maps every object to class 0.
        one_based: treat ``xmin..xmax`` as inclusive 1-based pixel indices (see the module notes); LLVIP: False.
        image_size: ``(width, height)`` to use when the file has no ``<size>`` (or to check it against).

    Raises:
        DatasetError: unreadable XML, missing fields, unknown class, or a size that disagrees with ``image_size``.
    """
    p = Path(path)
    try:
        root = ET.parse(p).getroot()
    except (ET.ParseError, OSError) as exc:
        raise DatasetError(f"{p}: cannot read VOC XML ({exc})") from None
    size = root.find("size")
    if size is not None and size.findtext("width"):
        w, h = int(_xml_number(size, "width", p)), int(_xml_number(size, "height", p))
        if image_size is not None and (w, h) != tuple(image_size):
            raise DatasetError(f"{p}: <size> {w}x{h} differs from the image's {image_size[0]}x{image_size[1]}")
    elif image_size is not None:
        w, h = image_size
    else:
        raise DatasetError(f"{p}: no <size> and no image size given")
    boxes, cls, ignore = [], [], []
    for obj in root.iter("object"):
        bb = obj.find("bndbox")
        if bb is None:
            raise DatasetError(f"{p}: <object> without <bndbox>")
        x1, y1, x2, y2 = (_xml_number(bb, k, p) for k in ("xmin", "ymin", "xmax", "ymax"))
        if one_based:
            x1, y1 = x1 - 1.0, y1 - 1.0
        if x2 <= x1 or y2 <= y1:
            raise DatasetError(f"{p}: empty box ({x1}, {y1}, {x2}, {y2})")
        boxes.append((x1, y1, x2, y2))
        cls.append(_class_index((obj.findtext("name") or "").strip(), classes, p))
        ignore.append((obj.findtext("difficult") or "0").strip() == "1")
    return ImageLabels(np.array(boxes).reshape(-1, 4), cls, w, h, ignore)


def read_coco_json(path: str | os.PathLike, classes: Sequence[str] | None = None) -> dict[str, ImageLabels]:
    """Read COCO instances: ``{image file stem: ImageLabels}``.

    ``bbox=[x, y, w, h]`` is taken as continuous coordinates ``(x, y, x + w, y + h)``. Classes are matched by
    category *name* against ``classes`` (case-insensitive) when given, else category ids are ranked in ascending order.
    ``iscrowd`` or ``ignore`` boxes become ignore regions.
    """
    p = Path(path)
    try:
        data = json.loads(p.read_text(encoding="utf-8"))
        images, anns, cats = data["images"], data.get("annotations", []), data["categories"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise DatasetError(f"{p}: not a COCO instances file ({exc.__class__.__name__}: {exc})") from None
    if classes is None:
        cat_index = {c["id"]: i for i, c in enumerate(sorted(cats, key=lambda c: c["id"]))}
    else:
        cat_index = {c["id"]: _class_index(c["name"], classes, p) for c in cats}
    per_image: dict[object, list[dict]] = {im["id"]: [] for im in images}
    for a in anns:
        if a["image_id"] not in per_image:
            raise DatasetError(f"{p}: annotation {a.get('id')} refers to unknown image {a['image_id']!r}")
        per_image[a["image_id"]].append(a)
    out: dict[str, ImageLabels] = {}
    for im in images:
        items = per_image[im["id"]]
        boxes = [(a["bbox"][0], a["bbox"][1], a["bbox"][0] + a["bbox"][2], a["bbox"][1] + a["bbox"][3]) for a in items]
        if any(a["category_id"] not in cat_index for a in items):
            raise DatasetError(f"{p}: image {im['id']!r} has an annotation with an unknown category")
        cls = [cat_index[a["category_id"]] for a in items]
        ign = [bool(a.get("iscrowd", 0)) or bool(a.get("ignore", 0)) for a in items]
        out[Path(im["file_name"]).stem] = ImageLabels(
            np.array(boxes, dtype=np.float64).reshape(-1, 4), cls, int(im["width"]), int(im["height"]), ign
        )
    return out


def read_yolo_txt(path: str | os.PathLike, width: int, height: int, num_classes: int | None = None) -> ImageLabels:
    """Read a YOLO label file (``class cx cy w h`` per line, normalised) into pixel boxes.

    Tolerates CRLF, repeated spaces, trailing blanks and a missing final newline; a missing file is an image
    without objects only if you create it empty, so a missing file is an error here.
    """
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as exc:
        raise DatasetError(f"{p}: cannot read YOLO labels ({exc.strerror or exc})") from None
    rows = []
    for n, line in enumerate(text.splitlines(), 1):
        parts = line.split()
        if not parts:
            continue
        if len(parts) != 5:
            raise DatasetError(f"{p}:{n}: expected 'class cx cy w h', got {line.strip()!r}")
        try:
            c = int(parts[0])
            cx, cy, bw, bh = (float(v) for v in parts[1:])
        except ValueError:
            raise DatasetError(f"{p}:{n}: not numbers: {line.strip()!r}") from None
        if num_classes is not None and not 0 <= c < num_classes:
            raise DatasetError(f"{p}:{n}: class {c} outside 0..{num_classes - 1}")
        rows.append((c, cx, cy, bw, bh))
    a = np.array(rows, dtype=np.float64).reshape(-1, 5)
    boxes = np.stack(
        [(a[:, 1] - a[:, 3] / 2) * width, (a[:, 2] - a[:, 4] / 2) * height,
         (a[:, 1] + a[:, 3] / 2) * width, (a[:, 2] + a[:, 4] / 2) * height], axis=1,
    )  # fmt: skip
    return ImageLabels(boxes, a[:, 0].astype(np.int64), width, height)


def read_class_names(path: str | os.PathLike) -> tuple[str, ...]:
    """Read a ``classes.txt``: one name per line, optionally preceded by its index (``0 person``)."""
    p = Path(path)
    try:
        lines = [ln.strip() for ln in p.read_text(encoding="utf-8").splitlines() if ln.strip()]
    except OSError as exc:
        raise DatasetError(f"{p}: cannot read class names ({exc.strerror or exc})") from None
    names = []
    for i, ln in enumerate(lines):
        head, _, rest = ln.partition(" ")
        if rest and head.isdigit():
            if int(head) != i:
                raise DatasetError(f"{p}: class index {head} on line {i + 1} (expected {i})")
            ln = rest.strip()
        names.append(ln)
    return tuple(names)


def count_boxes_outside(labels: ImageLabels, *, tolerance: float = 0.02) -> int:
    """How many boxes reach beyond the image by more than ``tolerance`` of its size (at least 2 px), or lie wholly
    outside it. Such boxes are clipped (or dropped) when written for YOLO; annotation tools leave a pixel or two
    past the border routinely, so only larger overhangs count."""
    if len(labels.boxes) == 0:
        return 0
    w, h = float(labels.width), float(labels.height)
    tx, ty = max(2.0, tolerance * w), max(2.0, tolerance * h)
    b = np.asarray(labels.boxes, dtype=np.float64)
    over = (b[:, 0] < -tx) | (b[:, 1] < -ty) | (b[:, 2] > w + tx) | (b[:, 3] > h + ty)
    gone = (b[:, 2] <= 0) | (b[:, 3] <= 0) | (b[:, 0] >= w) | (b[:, 1] >= h)
    return int((over | gone).sum())


def yolo_lines(labels: ImageLabels, *, include_ignored: bool = False) -> list[str]:
    """YOLO text lines (``class cx cy w h``, 6 decimals) for ``labels``; boxes are clipped to the image first.

    Ignored (``difficult``) boxes are left out by default: YOLO has no ignore regions, and training on them
    would teach the detector the opposite of what evaluation rewards.
    """
    w, h = float(labels.width), float(labels.height)
    out = []
    for (x1, y1, x2, y2), c, ign in zip(labels.boxes, labels.classes, labels.ignore, strict=True):
        if ign and not include_ignored:
            continue
        x1, x2 = min(max(x1, 0.0), w), min(max(x2, 0.0), w)
        y1, y2 = min(max(y1, 0.0), h), min(max(y2, 0.0), h)
        if x2 <= x1 or y2 <= y1:
            continue  # entirely outside the image
        out.append(f"{int(c)} {(x1 + x2) / 2 / w:.6f} {(y1 + y2) / 2 / h:.6f} {(x2 - x1) / w:.6f} {(y2 - y1) / h:.6f}")
    return out


def write_yolo_txt(path: str | os.PathLike, labels: ImageLabels) -> Path:
    """Write ``labels`` as a YOLO label file (LF line endings, empty file for an image without objects)."""
    lines = yolo_lines(labels)
    return atomic_write_text(path, "".join(f"{ln}\n" for ln in lines))
