"""Per-input YOLO dataset folders and their dataset YAML, generated inside a run folder.

Ultralytics finds a label by replacing the last ``images`` folder of an image's path with ``labels``; the source
files live in other layouts (``visible/train/<id>.jpg``), so each input gets
``<dir>/images/<split>/<id>.<ext>`` (a symbolic link to the source, a copy where links are not allowed) and
``<dir>/labels/<split>/<id>.txt``. The YAML names ``train``, ``val`` and ``test``; ``val`` is the test split
(LLVIP has no validation split), and the pipeline never selects checkpoints on it.
"""

from __future__ import annotations

import hashlib
import os
import shutil
from collections.abc import Mapping, Sequence
from pathlib import Path

import yaml

from downstream.detection.datasets import DetSample
from downstream.detection.labels import yolo_lines
from fusion.errors import DatasetError
from fusion.utils.io import atomic_write_text, is_within

__all__ = ["write_yolo_dataset", "read_fingerprint", "MARKER"]

MARKER = ".det_eval_dataset"


def _link(src: Path, dst: Path) -> None:
    try:
        os.symlink(src.resolve(), dst)
    except OSError:
        try:
            os.link(src, dst)
        except OSError:
            shutil.copyfile(src, dst)


def write_yolo_dataset(
    folder: str | os.PathLike,
    samples: Mapping[str, Sequence[DetSample]],
    images: Mapping[str, Mapping[str, Path]],
    classes: Sequence[str],
    *,
    channels: int = 3,
    val_split: str = "test",
) -> Path:
    """Write a YOLO dataset for one input and return its YAML path.

    Args:
        folder: the input's dataset folder (created; a previous one written by this function is replaced).
        samples: ``{split: samples}`` (labels come from here).
        images: ``{split: {sample id: image file}}`` for this input.
        classes: class names in index order.
        channels: image channels (3, or 4 for early fusion; written as ultralytics' ``channels:`` key).
        val_split: the split ultralytics validates on during training.

    Raises:
        DatasetError: ``folder`` exists and was not written by this function, or an image is missing.
    """
    folder = Path(folder)
    if folder.exists():
        if not (folder / MARKER).is_file():
            raise DatasetError(f"{folder}: exists and is not a dataset folder written by det_eval; not replacing it")
        for sub in ("images", "labels"):
            if (folder / sub).exists():
                shutil.rmtree(folder / sub)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / MARKER).touch()
    digest = hashlib.sha256()
    for split, items in samples.items():
        img_dir, lab_dir = folder / "images" / split, folder / "labels" / split
        img_dir.mkdir(parents=True, exist_ok=True)
        lab_dir.mkdir(parents=True, exist_ok=True)
        for s in items:
            src = Path(images[split][s.ident])
            if not src.is_file():
                raise DatasetError(f"{src}: image missing for sample {s.ident}")
            if is_within(src, folder):
                raise DatasetError(f"{src}: image lies inside the dataset folder {folder}")
            _link(src, img_dir / f"{s.ident}{src.suffix.lower()}")
            text = "".join(f"{ln}\n" for ln in yolo_lines(s.labels))
            (lab_dir / f"{s.ident}.txt").write_text(text, encoding="utf-8")
            st = src.stat()
            digest.update(f"{split}\0{s.ident}\0{src}\0{st.st_size}\0{st.st_mtime_ns}\0{text}\n".encode())
    if val_split not in samples:
        raise DatasetError(f"{folder}: validation split {val_split!r} not among {', '.join(samples)}")
    data = {
        "path": str(folder.resolve()),
        "train": f"images/{'train' if 'train' in samples else val_split}",
        "val": f"images/{val_split}",
        "test": f"images/{'test' if 'test' in samples else val_split}",
        "nc": len(classes),
        "names": {i: n for i, n in enumerate(classes)},
    }
    if channels != 3:
        data["channels"] = int(channels)
    digest.update(yaml.safe_dump(data, sort_keys=True).encode())
    atomic_write_text(folder / "fingerprint", digest.hexdigest() + "\n")
    return atomic_write_text(folder / "data.yaml", yaml.safe_dump(data, sort_keys=False))


def read_fingerprint(folder: str | os.PathLike) -> str:
    """The content hash written with a dataset folder (sources, sizes, times, labels, YAML)."""
    p = Path(folder) / "fingerprint"
    return p.read_text(encoding="utf-8").strip() if p.is_file() else ""
