"""MFNet and FMB as mmsegmentation datasets (registered in ``mmseg.registry.DATASETS``), read in their original layouts.

Which image the model sees is chosen per dataset with ``modality``:

* ``"vis"``: the visible image; ``"ir"``: the infrared image (replicated to 3 channels);
* ``"fused"`` with ``fused_dir``: a folder of fused images, looked up as ``<fused_dir>/<split>/<name>.<ext>`` and
  then ``<fused_dir>/<name>.<ext>`` (any of :data:`fusion.utils.io.IMAGE_EXTENSIONS`, PNG first);
* ``"fused"`` with ``fuser``: fused on the fly by ``fusion.fusers.create_fuser(fuser, **fuser_settings)``
  (roles ``a`` = visible, ``b`` = infrared, task ``vif``).

The pixels are read by the :class:`~downstream.segmentation.transforms.LoadRGBTImage` transform, which must be the
first step of the pipeline; it uses the keys each data info carries (``modality``, ``vis_path``, ``ir_path``,
``ir_channel``, ``fused_path``, ``fuser``, ``fuser_settings``, ``sample_name``).

Layouts:

* **MFNet** (Ha et al., IROS 2017): ``images/<name>.png`` 4-channel PNG (R, G, B, thermal), ``labels/<name>.png``
  (uint8 ids 0..8), split lists ``train.txt`` / ``val.txt`` / ``test.txt`` (one name per line).
* **FMB** (Liu et al., SegMiF, ICCV 2023): ``{train,test}/{Visible,Infrared,Label}/<name>.png`` (ids 0..14).
  FMB has **no validation split**. Our choice: train with a fixed schedule and evaluate the final weights on
  ``test``, with no model selection on it (what SegMiF and later papers report). For early stopping or tuning,
  ``val_every=k`` holds out every k-th training image (sorted by name) as ``split="val"``, and those images are then
  removed from ``split="train"``.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
from mmseg.datasets import BaseSegDataset
from mmseg.registry import DATASETS
from PIL import Image
from tqdm import tqdm

from downstream.segmentation.classes import FMB_CLASSES, FMB_PALETTE, MFNET_CLASSES, MFNET_PALETTE
from fusion.errors import ConfigError, DatasetError, InputError
from fusion.utils.io import IMAGE_EXTENSIONS, open_image_checked

__all__ = ["RGBTSegDataset", "MFNetDataset", "FMBDataset", "MODALITIES", "find_fused_image", "check_split_files"]

MODALITIES: tuple[str, ...] = ("vis", "ir", "fused")

# Extensions in lookup order: the lossless ones first, so a cached PNG wins over a stale JPEG of the same name.
_LOOKUP_EXT = (".png", ".bmp", ".tif", ".tiff", ".jpg", ".jpeg")


def _find_image(folder: Path, name: str) -> Path | None:
    for ext in _LOOKUP_EXT:
        p = folder / f"{name}{ext}"
        if p.is_file():
            return p
    return None


def find_fused_image(fused_dir: str | os.PathLike, split: str, name: str) -> Path | None:
    """The fused image of sample ``name``: ``<fused_dir>/<split>/<name>.<ext>``, else ``<fused_dir>/<name>.<ext>``."""
    base = Path(fused_dir)
    return _find_image(base / split, name) or _find_image(base, name)


class RGBTSegDataset(BaseSegDataset):
    """Common part of the infrared-visible datasets: split, modality choice and per-sample path resolution.

    Args:
        data_root: dataset root folder (original layout).
        split: ``train``, ``val`` or ``test``.
        modality: ``vis``, ``ir`` or ``fused``.
        fused_dir: folder of fused images (``modality="fused"``).
        fuser: fuser spec for on-the-fly fusion (``modality="fused"``), e.g. ``"average"``.
        fuser_settings: keyword settings for :func:`fusion.fusers.create_fuser`.
        **kwargs: passed to :class:`mmseg.datasets.BaseSegDataset` (``pipeline``, ``test_mode``, ``indices``...).
    """

    SPLITS: tuple[str, ...] = ("train", "val", "test")
    layout: str = "rgbt"

    def __init__(self, data_root: str, split: str = "train", modality: str = "vis",
                 fused_dir: str | None = None, fuser: str | None = None,
                 fuser_settings: dict[str, Any] | None = None, **kwargs) -> None:
        if split not in self.SPLITS:
            raise ConfigError(f"{type(self).__name__}: split={split!r} is not one of {', '.join(self.SPLITS)}")
        if modality not in MODALITIES:
            raise ConfigError(f"{type(self).__name__}: modality={modality!r} is not one of {', '.join(MODALITIES)}")
        if modality == "fused" and (fused_dir is None) == (fuser is None):
            raise ConfigError(f"{type(self).__name__}: modality='fused' needs exactly one of fused_dir or fuser")
        if modality != "fused" and (fused_dir is not None or fuser is not None):
            raise ConfigError(f"{type(self).__name__}: fused_dir/fuser are only used with modality='fused'")
        if data_root is None or not Path(data_root).is_dir():
            raise DatasetError(f"{data_root}: dataset root folder not found")
        if fused_dir is not None and not Path(fused_dir).is_dir():
            raise DatasetError(f"{fused_dir}: fused image folder not found")
        self.split = split
        self.modality = modality
        self.fused_dir = None if fused_dir is None else str(fused_dir)
        self.fuser = fuser
        self.fuser_settings = dict(fuser_settings or {})
        kwargs.setdefault("img_suffix", ".png")
        kwargs.setdefault("seg_map_suffix", ".png")
        super().__init__(data_root=str(data_root), **kwargs)

    # -- per-layout part -------------------------------------------------------------------------------------
    def list_samples(self) -> list[dict[str, Any]]:
        """``[{"sample_name", "vis_path", "ir_path", "ir_channel", "seg_map_path"}]`` of the split, in order."""
        raise NotImplementedError

    # -- shared part -----------------------------------------------------------------------------------------
    def load_data_list(self) -> list[dict]:
        samples = self.list_samples()
        if not samples:
            raise DatasetError(f"{self.data_root}: split {self.split!r} has no samples")
        missing = [s["seg_map_path"] for s in samples if not Path(s["seg_map_path"]).is_file()]
        missing += [s["vis_path"] for s in samples if not Path(s["vis_path"]).is_file()]
        missing += [s["ir_path"] for s in samples if s["ir_path"] != s["vis_path"] and not Path(s["ir_path"]).is_file()]
        if missing:
            raise DatasetError(f"{missing[0]}: file not found ({len(missing)} missing in split {self.split!r})")
        data_list = []
        absent = []
        for s in samples:
            fused_path = None
            if self.fused_dir is not None:
                found = find_fused_image(self.fused_dir, self.split, s["sample_name"])
                if found is None:
                    absent.append(s["sample_name"])
                    continue
                fused_path = str(found)
            img_path = {"vis": s["vis_path"], "ir": s["ir_path"]}.get(self.modality, fused_path or s["vis_path"])
            data_list.append(dict(
                img_path=img_path,
                seg_map_path=s["seg_map_path"],
                label_map=self.label_map,
                reduce_zero_label=self.reduce_zero_label,
                seg_fields=[],
                sample_name=s["sample_name"],
                modality=self.modality,
                vis_path=s["vis_path"],
                ir_path=s["ir_path"],
                ir_channel=s["ir_channel"],
                fused_path=fused_path,
                fuser=self.fuser,
                fuser_settings=self.fuser_settings,
            ))
        if absent:
            raise DatasetError(f"{self.fused_dir}: no fused image for {len(absent)} of {len(samples)} "
                               f"{self.split!r} samples (first: {absent[0]})")
        return data_list


def _read_split_list(path: Path) -> list[str]:
    if not path.is_file():
        raise DatasetError(f"{path}: split list not found (expected one sample name per line)")
    names = []
    for line in path.read_text(encoding="utf-8").splitlines():
        name = line.strip()
        if name:
            names.append(Path(name).stem if name.lower().endswith(IMAGE_EXTENSIONS) else name)
    return names


@DATASETS.register_module()
class MFNetDataset(RGBTSegDataset):
    """MFNet (9 classes, ``unlabeled`` included): ``images/`` 4-channel PNG, ``labels/``, ``<split>.txt``.

    See :class:`RGBTSegDataset` for the arguments.
    """

    METAINFO = dict(classes=MFNET_CLASSES, palette=[list(c) for c in MFNET_PALETTE])
    layout = "mfnet"

    def list_samples(self) -> list[dict[str, Any]]:
        root = Path(self.data_root)
        out = []
        for name in _read_split_list(root / f"{self.split}.txt"):
            rgbt = str(root / "images" / f"{name}.png")
            out.append(dict(sample_name=name, vis_path=rgbt, ir_path=rgbt, ir_channel=3,
                            seg_map_path=str(root / "labels" / f"{name}.png")))
        return out


@DATASETS.register_module()
class FMBDataset(RGBTSegDataset):
    """FMB (15 classes, ``unlabeled`` included): ``{train,test}/{Visible,Infrared,Label}/<name>.png``.

    Args:
        val_every: 0 (default) means there is no ``val`` split; ``k > 0`` holds out every k-th training image
            (sorted by name) as ``val`` and leaves the rest as ``train``.
        other arguments: see :class:`RGBTSegDataset`.
    """

    METAINFO = dict(classes=FMB_CLASSES, palette=[list(c) for c in FMB_PALETTE])
    layout = "fmb"

    def __init__(self, data_root: str, split: str = "train", val_every: int = 0, **kwargs) -> None:
        if split == "val" and val_every <= 0:
            raise ConfigError("FMBDataset: FMB has no validation split; use split='test', or val_every=k to hold "
                              "out every k-th training image")
        if val_every < 0:
            raise ConfigError(f"FMBDataset: val_every must be >= 0, got {val_every}")
        self.val_every = int(val_every)
        super().__init__(data_root, split=split, **kwargs)

    def list_samples(self) -> list[dict[str, Any]]:
        root = Path(self.data_root)
        folder = root / ("test" if self.split == "test" else "train")
        vis_dir, ir_dir, label_dir = folder / "Visible", folder / "Infrared", folder / "Label"
        for d in (vis_dir, ir_dir, label_dir):
            if not d.is_dir():
                raise DatasetError(f"{d}: folder not found (FMB layout is {{train,test}}/{{Visible,Infrared,Label}})")
        vis = {p.stem: p for p in sorted(vis_dir.iterdir()) if p.suffix.lower() in IMAGE_EXTENSIONS}
        names = sorted(vis)
        if self.split != "test" and self.val_every > 0:
            held = set(names[:: self.val_every])
            names = [n for n in names if (n in held) == (self.split == "val")]
        out = []
        for name in names:
            ir = _find_image(ir_dir, name) or ir_dir / f"{name}.png"
            label = _find_image(label_dir, name) or label_dir / f"{name}.png"
            out.append(dict(sample_name=name, vis_path=str(vis[name]), ir_path=str(ir), ir_channel=None,
                            seg_map_path=str(label)))
        return out


def _decode(path: str, what: str) -> np.ndarray:
    """Pixels as stored (no conversion: label ids stay ids), with the project's pixel limit."""
    p = Path(path)
    try:
        with open_image_checked(p) as im:
            im.load()
            return np.asarray(im)
    except InputError as exc:
        raise DatasetError(str(exc)) from None
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as exc:
        raise DatasetError(f"{p}: cannot decode {what} ({exc.__class__.__name__}: {exc})") from None


def _check_sample(s: dict[str, Any], num_classes: int, ignore_index: int) -> None:
    label = _decode(s["seg_map_path"], "label")
    if label.ndim != 2:
        raise DatasetError(f"{s['seg_map_path']}: label has shape {label.shape}, expected one channel of class ids")
    values = np.unique(label)
    bad = values[(values >= num_classes) & (values != ignore_index)]
    if bad.size:
        raise DatasetError(f"{s['seg_map_path']}: label value {int(bad[0])} is neither a class (0..{num_classes - 1}) "
                           f"nor the ignore label {ignore_index}")
    paths = [s["vis_path"]] + ([s["ir_path"]] if s["ir_path"] != s["vis_path"] else [])
    for path in paths:
        img = _decode(path, "image")
        if img.shape[:2] != label.shape:
            raise DatasetError(f"{path}: image is {img.shape[1]}x{img.shape[0]}, its label "
                               f"{s['seg_map_path']} is {label.shape[1]}x{label.shape[0]}")
        if s.get("ir_channel") is not None and (img.ndim != 3 or img.shape[2] <= s["ir_channel"]):
            raise DatasetError(f"{path}: expected an RGB + thermal image with {s['ir_channel'] + 1} channels, "
                               f"got shape {img.shape}")


def check_split_files(dataset: RGBTSegDataset, *, ignore_index: int = 255, workers: int = 2,
                      progress: bool = False) -> int:
    """Decode every source image and label of ``dataset``'s split before anything trains; returns the count.

    Raises:
        DatasetError: the first unreadable or truncated file, an image whose size differs from its label, a label
            with more than one channel, or a label value that is neither a class nor ``ignore_index``; the file is
            named.
    """
    samples = dataset.list_samples()
    num_classes = len(dataset.METAINFO["classes"])
    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        futures = [pool.submit(_check_sample, s, num_classes, ignore_index) for s in samples]
        for fut in tqdm(futures, desc=f"checking {dataset.split}", unit="sample", disable=not progress, leave=False):
            fut.result()
    return len(samples)
