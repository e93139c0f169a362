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
from collections import OrderedDict
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from fusion.errors import DatasetError, InputError
from fusion.utils.io import read_image

__all__ = ["SegTriple", "SegPairDataset", "DetPairDataset", "list_triples", "load_triple", "load_det_pair",
           "to_tensor01", "crop_params", "unpad_boxes", "MAX_BOXES"]

IGNORE_INDEX = 255
MAX_BOXES = 100
"""Boxes per detection training item (padded with class -1 so that items of a batch stack)."""
CACHE_PAIRS = 1024
"""Decoded samples a training dataset keeps in memory (the synthetic and sample sets fit whole)."""


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


def crop_params(seed: int, epoch: int, index: int, height: int, width: int, crop_size: tuple[int, int],
                hflip: float) -> tuple[int, int, bool]:
    """``(top, left, flip)`` of one training item: a pure function of ``(seed, epoch, index)`` and the sizes."""
    rng = np.random.default_rng([int(seed), int(epoch), int(index)])
    ch, cw = crop_size
    top = int(rng.integers(0, max(0, height - ch) + 1))
    left = int(rng.integers(0, max(0, width - cw) + 1))
    flip = bool(rng.uniform() < hflip)
    return top, left, flip


def _pad_to(arr: np.ndarray, h: int, w: int, value: int | None) -> np.ndarray:
    ph, pw = max(0, h - arr.shape[0]), max(0, w - arr.shape[1])
    if not ph and not pw:
        return arr
    pad = ((0, ph), (0, pw)) + ((0, 0),) * (arr.ndim - 2)
    if value is None:
        mode = "reflect" if arr.shape[0] > ph and arr.shape[1] > pw else "edge"
        return np.pad(arr, pad, mode=mode)
    return np.pad(arr, pad, mode="constant", constant_values=value)


class _PairCrops(Dataset):
    """What both training-crop datasets share: the samples, the crop size, the per-item crop rule, the decode
    cache. Subclasses say how a sample is decoded (:meth:`_decode`) and what an item holds."""

    def __init__(self, items: Sequence[Any], crop_size: Sequence[int] | int, *, hflip: float, seed: int,
                 task: str) -> None:
        if not items:
            raise DatasetError(f"{type(self).__name__}: no samples")
        self.items = list(items)
        crop = (crop_size, crop_size) if isinstance(crop_size, int) else tuple(int(c) for c in crop_size)
        if len(crop) != 2 or min(crop) < 1:
            raise InputError(f"{type(self).__name__}: crop_size must be (H, W), got {crop_size!r}")
        self.crop_size = crop
        self.hflip = float(hflip)
        self.seed = int(seed)
        self.task = task
        self._cache: OrderedDict[int, tuple[np.ndarray, np.ndarray, np.ndarray]] = OrderedDict()

    def __len__(self) -> int:
        return len(self.items)

    def _decode(self, index: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        raise NotImplementedError

    def load(self, index: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Decoded sample ``index``; the last :data:`CACHE_PAIRS` decoded samples are kept in memory (all of a small
        set; a full-size set is decoded again when it comes round)."""
        if index in self._cache:
            self._cache.move_to_end(index)
            return self._cache[index]
        item = self._decode(index)
        self._cache[index] = item
        if len(self._cache) > CACHE_PAIRS:
            self._cache.popitem(last=False)
        return item

    def preload(self) -> None:
        """Decode the first :data:`CACHE_PAIRS` samples now (before DataLoader workers fork, so that they share the
        memory)."""
        for i in range(min(len(self), CACHE_PAIRS)):
            self.load(i)

    def crop_params(self, index: int, epoch: int, height: int, width: int) -> tuple[int, int, bool]:
        """``(top, left, flip)`` of one item; a pure function of ``(seed, epoch, index)`` and the image size."""
        return crop_params(self.seed, epoch, index, height, width, self.crop_size, self.hflip)

    def _crop_images(self, arrays: Sequence[tuple[np.ndarray, int | None]], top: int, left: int,
                     flip: bool) -> list[np.ndarray]:
        """Pad (``None``: reflect, else this constant), crop and flip each array; writable copies (decoded images
        are cached read-only)."""
        ch, cw = self.crop_size
        out = []
        for arr, value in arrays:
            arr = _pad_to(arr, ch, cw, value)[top : top + ch, left : left + cw]
            out.append(np.array(arr[:, ::-1] if flip else arr))
        return out


class SegPairDataset(_PairCrops):
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
        super().__init__(triples, crop_size, hflip=hflip, seed=seed, task=task)

    @property
    def triples(self) -> list[SegTriple]:
        return self.items

    def _decode(self, index: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        return load_triple(self.items[index])

    def __getitem__(self, key: int | tuple[int, int]) -> dict[str, Any]:
        index, epoch = (key, 0) if isinstance(key, (int, np.integer)) else key
        index = int(index)
        vis, ir, label = self.load(index)
        top, left, flip = self.crop_params(index, epoch, *label.shape)
        out = self._crop_images(((vis, None), (ir, None), (label, IGNORE_INDEX)), top, left, flip)
        return {"a": to_tensor01(out[0]), "b": to_tensor01(out[1]), "label": torch.from_numpy(out[2]).long(),
                "index": index, "name": self.items[index]["name"],
                "crop": torch.tensor([top, left, int(flip)], dtype=torch.int64)}


def load_det_pair(sample: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(vis, ir, boxes)`` of a :class:`~downstream.detection.datasets.DetSample`: ``uint8`` RGB ``(H, W, 3)`` twice
    (infrared replicated) and ``float32`` ``(n, 5)`` rows ``class, x1, y1, x2, y2`` (ignore boxes left out)."""
    vis = read_image(sample.vis, "rgb")
    ir = read_image(sample.ir, "gray")
    if ir.shape != vis.shape[:2]:
        raise InputError(f"{sample.ir}: size {ir.shape[1]}x{ir.shape[0]} differs from {sample.vis} "
                         f"({vis.shape[1]}x{vis.shape[0]})")
    lab = sample.labels
    if (lab.width, lab.height) != (vis.shape[1], vis.shape[0]):
        lab = lab.scaled(vis.shape[1], vis.shape[0])
    keep = ~lab.ignore
    boxes = np.concatenate([lab.classes[keep, None], lab.boxes[keep]], axis=1).astype(np.float32)
    return vis, np.repeat(ir[:, :, None], 3, axis=2), boxes.reshape(-1, 5)


def unpad_boxes(boxes: torch.Tensor, counts: torch.Tensor) -> list[torch.Tensor]:
    """Per image the ``(n, 5)`` boxes of a padded batch ``(B, MAX_BOXES, 5)`` with ``counts`` ``(B,)``."""
    return [boxes[i, : int(n)] for i, n in enumerate(counts)]


class DetPairDataset(_PairCrops):
    """Random crops of (visible, infrared, boxes) detection samples.

    Items (addressed like :class:`SegPairDataset`'s) are dicts: ``a``, ``b`` float ``(3, H, W)`` in [0, 1],
    ``boxes`` float ``(MAX_BOXES, 5)`` (``class, x1, y1, x2, y2`` in crop pixels, padded with class -1),
    ``n_boxes``, ``index``, ``name``, ``crop``. A box is clipped to the crop and kept when at least
    ``min_visible`` of its area and 2 pixels of each side remain (a person cut in half is still a person; a sliver
    is not). Images smaller than the crop are padded with letterbox grey (114; a reflection would show mirrored
    people without boxes).

    Args:
        samples: :class:`~downstream.detection.datasets.DetSample` list.
        crop_size: ``(H, W)``, multiples of 112.
        hflip: probability of the shared horizontal flip (boxes flipped with the images).
        seed: base seed of the crops.
        task: the fusion task (read by :class:`~fusion.training.data.TaskStream`).
        min_visible: share of a box's area that must remain inside the crop.
    """

    def __init__(self, samples: Sequence[Any], crop_size: Sequence[int] | int = (224, 224), *, hflip: float = 0.5,
                 seed: int = 0, task: str = "vif", min_visible: float = 0.5) -> None:
        super().__init__(samples, crop_size, hflip=hflip, seed=seed, task=task)
        self.min_visible = float(min_visible)

    @property
    def samples(self) -> list[Any]:
        return self.items

    def _decode(self, index: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        return load_det_pair(self.items[index])

    def crop_boxes(self, boxes: np.ndarray, top: int, left: int, flip: bool) -> np.ndarray:
        """The ``(n, 5)`` boxes seen in the crop at ``(top, left)`` (flipped when ``flip``)."""
        ch, cw = self.crop_size
        b = boxes.astype(np.float64).copy()
        area = (b[:, 3] - b[:, 1]) * (b[:, 4] - b[:, 2])
        b[:, [1, 3]] = np.clip(b[:, [1, 3]] - left, 0, cw)
        b[:, [2, 4]] = np.clip(b[:, [2, 4]] - top, 0, ch)
        w, h = b[:, 3] - b[:, 1], b[:, 4] - b[:, 2]
        keep = (w >= 2) & (h >= 2) & (w * h >= self.min_visible * np.maximum(area, 1e-9))
        b = b[keep]
        if flip:
            b[:, [1, 3]] = cw - b[:, [3, 1]]
        return b.astype(np.float32)

    def __getitem__(self, key: int | tuple[int, int]) -> dict[str, Any]:
        index, epoch = (key, 0) if isinstance(key, (int, np.integer)) else key
        index = int(index)
        vis, ir, boxes = self.load(index)
        top, left, flip = self.crop_params(index, epoch, vis.shape[0], vis.shape[1])
        # letterbox grey, not a reflection: a mirrored pedestrian in the padding would have no box
        out = self._crop_images(((vis, 114), (ir, 114)), top, left, flip)
        kept = self.crop_boxes(boxes, top, left, flip)[:MAX_BOXES]
        padded = np.full((MAX_BOXES, 5), -1.0, dtype=np.float32)
        padded[: len(kept)] = kept
        return {"a": to_tensor01(out[0]), "b": to_tensor01(out[1]), "boxes": torch.from_numpy(padded),
                "n_boxes": len(kept), "index": index, "name": self.items[index].ident,
                "crop": torch.tensor([top, left, int(flip)], dtype=torch.int64)}
