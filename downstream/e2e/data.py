"""Visible, infrared and label triples of a segmentation dataset (MFNet / FMB layouts) as training crops.

The samples are listed by the project's mmseg datasets (:class:`~downstream.segmentation.MFNetDataset`,
``FMBDataset``, …) built from the segmenter config's dataset entry, so every layout the segmentation comparison
reads is read here too; the pixels come from
:func:`~downstream.segmentation.transforms.read_rgbt_sources` (roles: ``a`` = visible, ``b`` = infrared).

Training items are fixed-size crops (multiples of TC-MoA's 112-pixel unit) with a shared horizontal flip; images
smaller than the crop are reflect-padded and their labels padded with the ignore value. The crop of an item is a
pure function of ``(seed, epoch, index)``, so that :class:`fusion.training.data.TaskStream` can stream and resume
them exactly as it does for fusion training.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from fusion.errors import DatasetError, InputError
from fusion.utils.io import read_image

__all__ = ["SegTriple", "SegPairDataset", "list_triples", "load_triple", "to_tensor01"]

IGNORE_INDEX = 255


class SegTriple(dict):
    """One sample: ``name``, ``vis_path``, ``ir_path``, ``ir_channel``, ``seg_map_path`` (a data-info dict)."""


def list_triples(dataset_cfg: dict[str, Any]) -> list[SegTriple]:
    """The samples of an mmseg dataset config (``cfg.train_dataloader.dataset`` with ``split`` / ``data_root``).

    Raises:
        DatasetError: the dataset is empty or its layout is wrong (the dataset's own message).
    """
    from mmengine.registry import DefaultScope
    from mmseg.registry import DATASETS

    import downstream.segmentation  # noqa: F401  registers the RGB-T datasets

    ds_cfg = copy.deepcopy(dict(dataset_cfg))
    ds_cfg["pipeline"] = []
    ds_cfg["modality"] = "vis"
    for key in ("fused_dir", "fuser", "fuser_settings"):
        ds_cfg.pop(key, None)
    with DefaultScope.overwrite_default_scope("mmseg"):
        dataset = DATASETS.build(ds_cfg)
    out = []
    for i in range(len(dataset)):
        info = dataset.get_data_info(i)
        out.append(SegTriple(name=info["sample_name"], vis_path=info["vis_path"], ir_path=info["ir_path"],
                             ir_channel=info["ir_channel"], seg_map_path=info["seg_map_path"]))
    if not out:
        raise DatasetError(f"{ds_cfg.get('data_root')}: split {ds_cfg.get('split')!r} has no samples")
    return out


def load_triple(triple: SegTriple) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(vis, ir, label)``: ``uint8`` RGB ``(H, W, 3)`` twice (infrared replicated) and ``uint8`` ``(H, W)`` ids."""
    from downstream.segmentation.transforms import read_rgbt_sources

    vis, ir = read_rgbt_sources(triple)
    label = read_image(triple["seg_map_path"], mode="unchanged")
    if label.ndim == 3:
        label = label[:, :, 0]
    if label.shape != vis.shape[:2]:
        raise InputError(f"{triple['seg_map_path']}: label size {label.shape} differs from the image "
                         f"{vis.shape[:2]}")
    return vis, ir, label


def to_tensor01(img: np.ndarray) -> torch.Tensor:
    """``uint8`` ``(H, W, 3)`` → float ``(3, H, W)`` in [0, 1]."""
    return torch.from_numpy(np.array(img, dtype=np.float32)).permute(2, 0, 1).div_(255.0)


def _pad_to(arr: np.ndarray, h: int, w: int, value: int | None) -> np.ndarray:
    ph, pw = max(0, h - arr.shape[0]), max(0, w - arr.shape[1])
    if not ph and not pw:
        return arr
    pad = ((0, ph), (0, pw)) + ((0, 0),) * (arr.ndim - 2)
    if value is None:
        mode = "reflect" if arr.shape[0] > ph and arr.shape[1] > pw else "edge"
        return np.pad(arr, pad, mode=mode)
    return np.pad(arr, pad, mode="constant", constant_values=value)


class SegPairDataset(Dataset):
    """Random crops of (visible, infrared, label) triples.

    Items are addressed by ``(index, epoch)`` (a plain int means epoch 0) and are dicts: ``a`` (visible) and ``b``
    (infrared) float ``(3, H, W)`` in [0, 1], ``label`` int64 ``(H, W)``, ``index``, ``name`` and ``crop``
    (``[top, left, flip]``, which identifies the pixels for caching frozen-fusion outputs).

    Args:
        triples: from :func:`list_triples`.
        crop_size: ``(H, W)``, multiples of 112.
        hflip: probability of the shared horizontal flip.
        seed: base seed of the crops.
        task: the fusion task (read by :class:`~fusion.training.data.TaskStream`).
    """

    def __init__(self, triples: Sequence[SegTriple], crop_size: Sequence[int] | int = (112, 112), *,
                 hflip: float = 0.5, seed: int = 0, task: str = "vif") -> None:
        if not triples:
            raise DatasetError("SegPairDataset: no samples")
        self.triples = list(triples)
        crop = (crop_size, crop_size) if isinstance(crop_size, int) else tuple(int(c) for c in crop_size)
        if len(crop) != 2 or min(crop) < 1:
            raise InputError(f"SegPairDataset: crop_size must be (H, W), got {crop_size!r}")
        self.crop_size = crop
        self.hflip = float(hflip)
        self.seed = int(seed)
        self.task = task
        self._cache: dict[int, tuple[np.ndarray, np.ndarray, np.ndarray]] = {}

    def __len__(self) -> int:
        return len(self.triples)

    def load(self, index: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Decoded ``(vis, ir, label)`` of sample ``index`` (kept in memory: the datasets here are small crops)."""
        if index not in self._cache:
            self._cache[index] = load_triple(self.triples[index])
        return self._cache[index]

    def preload(self) -> None:
        """Decode every sample now (before DataLoader workers fork, so that they share the memory)."""
        for i in range(len(self)):
            self.load(i)

    def crop_params(self, index: int, epoch: int, height: int, width: int) -> tuple[int, int, bool]:
        """``(top, left, flip)`` of one item; a pure function of ``(seed, epoch, index)`` and the image size."""
        rng = np.random.default_rng([self.seed, int(epoch), int(index)])
        ch, cw = self.crop_size
        top = int(rng.integers(0, max(0, height - ch) + 1))
        left = int(rng.integers(0, max(0, width - cw) + 1))
        flip = bool(rng.uniform() < self.hflip)
        return top, left, flip

    def __getitem__(self, key: int | tuple[int, int]) -> dict[str, Any]:
        index, epoch = (key, 0) if isinstance(key, (int, np.integer)) else key
        index = int(index)
        vis, ir, label = self.load(index)
        ch, cw = self.crop_size
        top, left, flip = self.crop_params(index, epoch, *label.shape)
        out = []
        for arr, value in ((vis, None), (ir, None), (label, IGNORE_INDEX)):
            arr = _pad_to(arr, ch, cw, value)[top : top + ch, left : left + cw]
            if flip:
                arr = arr[:, ::-1]
            out.append(np.array(arr))  # a writable copy: decoded images are cached read-only
        return {"a": to_tensor01(out[0]), "b": to_tensor01(out[1]), "label": torch.from_numpy(out[2]).long(),
                "index": index, "name": self.triples[index]["name"],
                "crop": torch.tensor([top, left, int(flip)], dtype=torch.int64)}
