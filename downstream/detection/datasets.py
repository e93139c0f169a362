"""Paired infrared/visible detection sets in their original on-disk layouts, read into one form.

* **LLVIP** (the standard night-pedestrian set): ``visible/{train,test}/<id>.jpg``, ``infrared/{train,test}/<id>.jpg``,
  ``Annotations/<id>.xml``. The official split is the folders' split; one XML serves both images of a pair.
  A flat sample of it (``vis``/``visible``, ``ir``/``infrared`` and ``label``/``Annotations`` with no split folders,
  as LLVIP excerpts are often shared) is read as one evaluation split of the annotated pairs; pairs without an XML
  are left out with a warning that names them.
* **M3FD** (6 classes): one folder of infrared and one of visible images (``ir``/``Ir``/``infrared`` and
  ``vi``/``vis``/``Vis``/``visible``) plus VOC XML (``Annotation``/``Annotations``/``labels``) or one COCO JSON.
  M3FD publishes no split: ``train.txt``/``test.txt`` (one id per line) in the root are used when present, else a
  fixed rule (every fifth id, in sorted order, is test).
* **MSRS** detection labels: ``{ir,vi}/<id>.png`` (optionally below ``train/`` and ``test/``) and YOLO text files
  annotated separately on each modality, ``label_det/{infrared,visible,fusion}/<id>.txt``; one of them is chosen as
  the ground truth for every input.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from PIL import Image

from downstream.detection.labels import (
    LLVIP_CLASSES,
    M3FD_CLASSES,
    MSRS_DET_CLASSES,
    ImageLabels,
    read_class_names,
    read_coco_json,
    read_voc_xml,
    read_yolo_txt,
)
from fusion.data.pairs import pair_folders
from fusion.errors import DatasetError
from fusion.utils.logging import get_logger

__all__ = [
    "DetSample",
    "DetDataset",
    "LAYOUTS",
    "load_llvip",
    "load_m3fd",
    "load_msrs",
    "load_detection_dataset",
    "detect_layout",
]

LAYOUTS = ("llvip", "m3fd", "msrs")

log = get_logger(__name__)
_VIS_DIRS = ("vi", "Vi", "vis", "Vis", "visible", "Visible")
_IR_DIRS = ("ir", "Ir", "infrared", "Infrared")
_XML_DIRS = ("Annotation", "Annotations", "labels", "label", "xml")
"""Folder names of visible / infrared images and VOC XML in M3FD-like and flat sample trees (first match wins)."""


@dataclass(frozen=True)
class DetSample:
    """One registered pair and its boxes (in the visible image's pixel frame, which is also the infrared's)."""

    ident: str
    vis: Path
    ir: Path
    labels: ImageLabels


@dataclass
class DetDataset:
    """A detection set: class names and samples per split (``train``, ``test``)."""

    name: str
    classes: tuple[str, ...]
    splits: dict[str, list[DetSample]]

    def split(self, name: str) -> list[DetSample]:
        if name not in self.splits or not self.splits[name]:
            raise DatasetError(f"{self.name}: no samples in split {name!r} (have: {', '.join(self.splits)})")
        return self.splits[name]

    def subset(self, max_per_split: dict[str, int | None]) -> DetDataset:
        """The first ``n`` samples (sorted by id) of each split; ``None`` keeps all."""
        return DetDataset(
            self.name,
            self.classes,
            {k: v[: max_per_split.get(k)] if max_per_split.get(k) else v for k, v in self.splits.items()},
        )


def _pair(vis_dir: Path, ir_dir: Path) -> list[tuple[str, Path, Path]]:
    """``[(id, visible, infrared)]``; a file without a partner is an error (the project's pairing rule)."""
    return [(p.name, p.a, p.b) for p in pair_folders(vis_dir, ir_dir, task="vif")]


def _first_dir(root: Path, names: Iterable[str]) -> Path | None:
    for n in names:
        if (root / n).is_dir():
            return root / n
    return None


def _image_size(path: Path) -> tuple[int, int]:
    try:
        with Image.open(path) as im:
            return im.size
    except OSError as exc:
        raise DatasetError(f"{path}: cannot read image size ({exc})") from None


def load_llvip(root: str | os.PathLike, splits: Sequence[str] = ("train", "test")) -> DetDataset:
    """Read LLVIP (or a tree in its layout) with its official train/test split, or a flat sample of it.

    Raises:
        DatasetError: missing folders, unpaired images, an image without XML (official layout), no annotated pair
            (flat sample), or a malformed XML.
    """
    root = Path(root)
    ann = root / "Annotations"
    if not ann.is_dir() or not any((root / "visible" / split).is_dir() for split in ("train", "test")):
        return _load_llvip_flat(root)
    out: dict[str, list[DetSample]] = {}
    for split in splits:
        vis_dir, ir_dir = root / "visible" / split, root / "infrared" / split
        if not vis_dir.is_dir() or not ir_dir.is_dir():
            raise DatasetError(f"{root}: LLVIP split {split!r} needs visible/{split}/ and infrared/{split}/")
        samples = []
        for ident, vis, ir in _pair(vis_dir, ir_dir):
            xml = ann / f"{ident}.xml"
            if not xml.is_file():
                raise DatasetError(f"{xml}: annotation missing for {vis}")
            samples.append(DetSample(ident, vis, ir, read_voc_xml(xml, LLVIP_CLASSES, one_based=False)))
        if not samples:
            raise DatasetError(f"{vis_dir}: no images")
        out[split] = samples
    return DetDataset("llvip", LLVIP_CLASSES, out)


def _load_llvip_flat(root: Path) -> DetDataset:
    """A flat LLVIP sample: every annotated pair in one split (``test``, also served as ``train``, as MSRS)."""
    vis_dir, ir_dir, ann = _first_dir(root, _VIS_DIRS), _first_dir(root, _IR_DIRS), _first_dir(root, _XML_DIRS)
    if vis_dir is None or ir_dir is None or ann is None:
        raise DatasetError(f"{root}: not an LLVIP tree (needs Annotations/ with visible/ and infrared/, or a flat "
                           "sample with vis/, ir/ and label/ folders)")  # fmt: skip
    samples, unlabelled = [], []
    for ident, vis, ir in _pair(vis_dir, ir_dir):
        xml = ann / f"{ident}.xml"
        if xml.is_file():
            samples.append(DetSample(ident, vis, ir, read_voc_xml(xml, LLVIP_CLASSES, one_based=False)))
        else:
            unlabelled.append(ident)
    if not samples:
        raise DatasetError(f"{ann}: no XML annotation for any pair in {vis_dir}")
    if unlabelled:
        log.warning("%s: %d pair(s) have no annotation in %s and are left out: %s", root, len(unlabelled), ann,
                    ", ".join(unlabelled[:10]) + (" ..." if len(unlabelled) > 10 else ""))
    return DetDataset("llvip", LLVIP_CLASSES, {"test": samples, "train": samples})


def _xml_names_people(folder: Path, look_at: int = 5) -> bool:
    """True when the first VOC XMLs in ``folder`` that name objects name LLVIP's ``person`` class only (M3FD says
    ``People``, ``Car``, ...)."""
    names: set[str] = set()
    for path in sorted(folder.glob("*.xml"))[:look_at]:
        try:
            text = path.read_text(encoding="utf-8", errors="replace")
        except OSError:
            continue
        names.update(n.strip() for n in re.findall(r"<name>(.*?)</name>", text, flags=re.S))
    return bool(names) and names == {"person"}


def _split_ids(root: Path, ids: list[str], test_every: int = 5) -> dict[str, list[str]]:
    lists = {s: root / f"{s}.txt" for s in ("train", "test")}
    if all(p.is_file() for p in lists.values()):
        known = set(ids)
        out = {}
        for s, p in lists.items():
            names = [Path(ln.strip()).stem for ln in p.read_text(encoding="utf-8").splitlines() if ln.strip()]
            missing = [n for n in names if n not in known]
            if missing:
                raise DatasetError(f"{p}: id {missing[0]!r} has no image pair")
            out[s] = names
        return out
    return {
        "train": [k for i, k in enumerate(ids) if i % test_every != test_every - 1],
        "test": [k for i, k in enumerate(ids) if i % test_every == test_every - 1],
    }


def load_m3fd(root: str | os.PathLike, labels: str | os.PathLike | None = None) -> DetDataset:
    """Read M3FD detection pairs with VOC XML or COCO JSON boxes (see the module notes for folder names).

    ``labels`` may name the XML folder or the JSON file; by default it is looked up in ``root``. M3FD's XML is
    1-based VOC, converted as ``voc2coco`` does, so XML and JSON give identical boxes.
    """
    root = Path(root)
    vis_dir = _first_dir(root, _VIS_DIRS)
    ir_dir = _first_dir(root, _IR_DIRS)
    if vis_dir is None or ir_dir is None:
        raise DatasetError(f"{root}: not an M3FD tree (needs an ir/ and a vi/ folder)")
    pairs = {}
    for ident, vis, ir in _pair(vis_dir, ir_dir):
        # TarDAL's sample names files M3FD_00471.png while the labels say 00471.
        pairs[ident.removeprefix("M3FD_")] = (ident, vis, ir)
    lab = Path(labels) if labels is not None else None
    if lab is None:
        lab = _first_dir(root, _XML_DIRS)
        if lab is None or not any(lab.glob("*.xml")):
            jsons = sorted(root.glob("*.json")) + sorted((lab or root / "label").glob("*.json"))
            lab = jsons[0] if jsons else lab
    if lab is None:
        raise DatasetError(f"{root}: no M3FD labels found (an Annotation/ XML folder or a COCO .json)")
    if lab.is_file():
        coco = {k.removeprefix("M3FD_"): v for k, v in read_coco_json(lab, M3FD_CLASSES).items()}
        get = coco.get
    else:

        def get(key: str) -> ImageLabels | None:
            for name in (f"{key}.xml", f"M3FD_{key}.xml"):
                if (lab / name).is_file():
                    return read_voc_xml(lab / name, M3FD_CLASSES, one_based=True)
            return None

    samples: dict[str, DetSample] = {}
    for key, (_ident, vis, ir) in sorted(pairs.items()):
        got = get(key)
        if got is None:
            raise DatasetError(f"{lab}: no boxes for image {vis.name}")
        samples[key] = DetSample(key, vis, ir, got)
    ids = sorted(samples)
    split = _split_ids(root, ids)
    return DetDataset("m3fd", M3FD_CLASSES, {s: [samples[k] for k in v] for s, v in split.items()})


def load_msrs(root: str | os.PathLike, label_source: str = "fusion") -> DetDataset:
    """Read MSRS pairs with the public YOLO detection labels.

    Args:
        root: folder with ``ir``/``vi`` (or ``train/``, ``test/`` each holding them) and ``label_det/``.
        label_source: ``fusion``, ``infrared`` or ``visible``: which annotation pass is the ground truth.
    """
    root = Path(root)
    if label_source not in ("fusion", "infrared", "visible"):
        raise DatasetError(f"label_source={label_source!r}: expected fusion, infrared or visible")
    lab_root = _first_dir(root, ("label_det", "labels_det", "det_labels"))
    if lab_root is None or not (lab_root / label_source).is_dir():
        raise DatasetError(f"{root}: no label_det/{label_source}/ folder of YOLO labels")
    classes = read_class_names(lab_root / "classes.txt") if (lab_root / "classes.txt").is_file() else MSRS_DET_CLASSES
    split_roots = {s: root / s for s in ("train", "test") if (root / s).is_dir()} or {"test": root}
    out: dict[str, list[DetSample]] = {}
    for split, sroot in split_roots.items():
        vis_dir = _first_dir(sroot, _VIS_DIRS)
        ir_dir = _first_dir(sroot, _IR_DIRS)
        if vis_dir is None or ir_dir is None:
            raise DatasetError(f"{sroot}: needs an ir/ and a vi/ folder")
        samples = []
        for ident, vis, ir in _pair(vis_dir, ir_dir):
            txt = next(
                (p for p in (lab_root / label_source / split / f"{ident}.txt", lab_root / label_source / f"{ident}.txt")
                 if p.is_file()), None,
            )  # fmt: skip
            if txt is None:
                raise DatasetError(f"{lab_root / label_source}: no label file for {ident}")
            w, h = _image_size(vis)
            samples.append(DetSample(ident, vis, ir, read_yolo_txt(txt, w, h, num_classes=len(classes))))
        out[split] = samples
    if "train" not in out:
        # The public labels cover test images only: the same images serve both roles (evaluation of a given
        # detector); training on them is possible but says nothing about generalisation.
        out["train"] = out["test"]
    return DetDataset("msrs", tuple(classes), out)


def detect_layout(root: str | os.PathLike) -> str:
    """Guess the layout of ``root``: ``llvip``, ``msrs`` or ``m3fd``."""
    root = Path(root)
    if not root.is_dir():
        raise DatasetError(f"{root}: no such folder")
    if (root / "Annotations").is_dir() and (root / "visible").is_dir() and (root / "infrared").is_dir():
        return "llvip"
    if _first_dir(root, ("label_det", "labels_det", "det_labels")) is not None:
        return "msrs"
    xml_dir = _first_dir(root, _XML_DIRS)
    if xml_dir is not None and _first_dir(root, _IR_DIRS) is not None and _xml_names_people(xml_dir):
        return "llvip"
    if _first_dir(root, _IR_DIRS) is not None:
        return "m3fd"
    raise DatasetError(f"{root}: unknown detection layout (expected LLVIP, M3FD or MSRS folders)")


def load_detection_dataset(root: str | os.PathLike, layout: str = "auto", **kwargs) -> DetDataset:
    """Read ``root`` in the given layout (``auto``, ``llvip``, ``m3fd``, ``msrs``); kwargs go to the reader."""
    layout = detect_layout(root) if layout == "auto" else layout
    if layout == "llvip":
        return load_llvip(root, **kwargs)
    if layout == "m3fd":
        return load_m3fd(root, **kwargs)
    if layout == "msrs":
        return load_msrs(root, **kwargs)
    raise DatasetError(f"layout={layout!r}: expected auto or one of {', '.join(LAYOUTS)}")
