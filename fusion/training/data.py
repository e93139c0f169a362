"""Training data: paired random crops, one sampler per task, and resumable per-task streams.

Each task (vif, mef, mff) has its own list of pairs (from one or more datasets read by
:func:`fusion.data.layouts.list_pairs`), its own :class:`~torch.utils.data.DistributedSampler` and its own
:class:`TaskStream`. The stream of the lead task (vif by default) defines the epoch; the others restart whenever
they run out, as the official ``engine_train``.

Augmentation is the official one: a RandomResizedCrop (scale per task, ratio 3/4..4/3, bicubic) with the *same*
parameters for both sources, then the same horizontal flip. The random parameters of a sample are drawn from a
generator seeded by ``(seed, task, stream epoch, sample index)``, so a sample is the same whatever the number of
workers or processes, and a stream's whole state is two integers (its epoch and the batches it has handed out):
resuming a run replays exactly the data the uninterrupted run would have seen.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset, DistributedSampler

from fusion.data.layouts import list_pairs
from fusion.data.pairs import Pair, load_pair
from fusion.errors import ConfigError, DatasetError
from fusion.utils.logging import get_logger

__all__ = [
    "DatasetSpec",
    "collect_pairs",
    "sample_crop_params",
    "PairCropDataset",
    "TaskStream",
    "TASK_IDS",
]

log = get_logger(__name__)

TASK_IDS: dict[str, int] = {"vif": 0, "mef": 1, "mff": 2}

_RESAMPLE = {
    "bicubic": Image.Resampling.BICUBIC,
    "bilinear": Image.Resampling.BILINEAR,
    "area": Image.Resampling.BOX,
    "nearest": Image.Resampling.NEAREST,
}


@dataclass(frozen=True)
class DatasetSpec:
    """One dataset of a task.

    Attributes:
        root: dataset root folder.
        layout: layout name for :func:`fusion.data.layouts.list_pairs` (detected when None).
        split: one split/subset (``"train"``); all when None.
        exclude: pair names to leave out (held-back evaluation pairs).
        include: if given, only these pair names.
        repeat: how many times each pair appears per epoch (oversampling of small sets).
    """

    root: str
    layout: str | None = None
    split: str | None = None
    exclude: tuple[str, ...] = ()
    include: tuple[str, ...] | None = None
    repeat: int = 1

    @classmethod
    def from_config(cls, spec: str | dict[str, Any]) -> DatasetSpec:
        if isinstance(spec, (str, Path)):
            return cls(root=str(spec))
        include = spec.get("include")
        return cls(
            root=str(spec["root"]),
            layout=spec.get("layout"),
            split=spec.get("split"),
            exclude=tuple(spec.get("exclude") or ()),
            include=tuple(include) if include is not None else None,
            repeat=int(spec.get("repeat", 1)),
        )


def collect_pairs(task: str, specs: Sequence[DatasetSpec | str | dict[str, Any]]) -> list[Pair]:
    """The training pairs of one task from its dataset specs, in a stable order.

    Raises:
        DatasetError: a dataset is missing, has no pairs left after ``include``/``exclude``, or names an
            excluded/included pair that does not exist (a typo would silently train on a held-back pair).
    """
    out: list[Pair] = []
    for raw in specs:
        spec = raw if isinstance(raw, DatasetSpec) else DatasetSpec.from_config(raw)
        if spec.repeat < 1:
            raise ConfigError(f"{spec.root}: repeat must be >= 1, got {spec.repeat}")
        pairs = list_pairs(spec.root, layout=spec.layout, split=spec.split, task=task)
        names = {p.name for p in pairs}
        for label, wanted in (("exclude", spec.exclude), ("include", spec.include or ())):
            missing = sorted(set(wanted) - names)
            if missing:
                raise DatasetError(f"{spec.root}: {label} names pairs that do not exist: {', '.join(missing)}")
        if spec.include is not None:
            pairs = [p for p in pairs if p.name in set(spec.include)]
        pairs = [p for p in pairs if p.name not in set(spec.exclude)]
        if not pairs:
            raise DatasetError(f"{spec.root}: no {task} training pairs left after include/exclude")
        out.extend(pairs * spec.repeat)
    return out


def sample_crop_params(
    rng: np.random.Generator, height: int, width: int, scale: Sequence[float], ratio: Sequence[float]
) -> tuple[int, int, int, int]:
    """``(top, left, h, w)`` of a RandomResizedCrop, torchvision's algorithm with numpy randomness."""
    area = height * width
    log_ratio = (math.log(ratio[0]), math.log(ratio[1]))
    for _ in range(10):
        target_area = area * rng.uniform(scale[0], scale[1])
        aspect = math.exp(rng.uniform(*log_ratio))
        w = int(round(math.sqrt(target_area * aspect)))
        h = int(round(math.sqrt(target_area / aspect)))
        if 0 < w <= width and 0 < h <= height:
            top = int(rng.integers(0, height - h + 1))
            left = int(rng.integers(0, width - w + 1))
            return top, left, h, w
    in_ratio = width / height
    if in_ratio < min(ratio):
        w = width
        h = int(round(w / min(ratio)))
    elif in_ratio > max(ratio):
        h = height
        w = int(round(h * max(ratio)))
    else:
        w, h = width, height
    return (height - h) // 2, (width - w) // 2, h, w


class PairCropDataset(Dataset):
    """Pairs of one task as random crops ``(3, S, S)`` in [0, 1], identical geometry for both sources.

    Items are addressed by ``(index, epoch)`` keys (plain ints mean epoch 0); the crop and flip of an item are a
    pure function of ``(seed, task, epoch, index)``.

    Args:
        pairs: the pairs.
        task: task name (part of the seed, and returned with each item).
        crop_size: output side S.
        scale, ratio: RandomResizedCrop area fraction and aspect-ratio ranges.
        hflip: probability of the shared horizontal flip.
        interpolation: ``bicubic`` (official), ``bilinear``, ``area`` or ``nearest``; PIL resampling, which
            antialiases when shrinking, as the official PIL pipeline.
        resize: policy for pairs of different sizes (see :func:`fusion.data.pairs.load_pair`).
        cache: keep decoded images in memory (decode each file once per process).
        seed: base seed.
    """

    def __init__(
        self,
        pairs: Sequence[Pair],
        task: str,
        crop_size: int = 448,
        scale: Sequence[float] = (0.81, 1.0),
        ratio: Sequence[float] = (3 / 4, 4 / 3),
        hflip: float = 0.5,
        interpolation: str = "bicubic",
        resize: str | None = "b_to_a",
        cache: bool = True,
        seed: int = 0,
    ) -> None:
        if not pairs:
            raise DatasetError(f"{task}: no training pairs")
        if task not in TASK_IDS:
            raise ConfigError(f"task {task!r}: expected one of {', '.join(TASK_IDS)}")
        if interpolation not in _RESAMPLE:
            raise ConfigError(f"interpolation {interpolation!r}: expected one of {', '.join(_RESAMPLE)}")
        self.pairs = list(pairs)
        self.task = task
        self.crop_size = int(crop_size)
        self.scale = tuple(float(s) for s in scale)
        self.ratio = tuple(float(r) for r in ratio)
        self.hflip = float(hflip)
        self.resample = _RESAMPLE[interpolation]
        self.resize = resize
        self.cache = cache
        self.seed = int(seed)
        self._cache: dict[tuple[Path, Path], tuple[np.ndarray, np.ndarray]] = {}

    def __len__(self) -> int:
        return len(self.pairs)

    def load(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        """Decoded ``uint8`` ``(H, W, 3)`` sources of pair ``index`` (cached when enabled)."""
        pair = self.pairs[index]
        key = (pair.a, pair.b)
        if key in self._cache:
            return self._cache[key]
        a, b = load_pair(pair, resize=self.resize)
        if self.cache:
            self._cache[key] = (a, b)
        return a, b

    def preload(self) -> None:
        """Decode every pair now (before DataLoader workers fork, so that they share the cache)."""
        for i in range(len(self.pairs)):
            self.load(i)

    def rng_for(self, index: int, epoch: int) -> np.random.Generator:
        """The generator of one sample's augmentation."""
        return np.random.default_rng([self.seed, TASK_IDS[self.task], int(epoch), int(index)])

    def __getitem__(self, key: int | tuple[int, int]) -> dict[str, Any]:
        index, epoch = (key, 0) if isinstance(key, (int, np.integer)) else key
        a, b = self.load(int(index))
        rng = self.rng_for(index, epoch)
        h, w = a.shape[:2]
        top, left, ch, cw = sample_crop_params(rng, h, w, self.scale, self.ratio)
        flip = rng.uniform() < self.hflip
        s = self.crop_size
        box = (left, top, left + cw, top + ch)
        out = []
        for img in (a, b):
            im = Image.fromarray(img).resize((s, s), self.resample, box=box)
            arr = np.array(im)  # a writable copy: torch warns on (and must not alias) PIL's read-only buffer
            if flip:
                arr = np.ascontiguousarray(arr[:, ::-1])
            out.append(torch.from_numpy(arr).permute(2, 0, 1).float().div_(255.0))
        return {"a": out[0], "b": out[1], "index": int(index), "name": self.pairs[int(index)].name}


class _EpochBatchSampler:
    """Batches of ``(index, epoch)`` keys from one epoch of a DistributedSampler, starting at a batch offset."""

    def __init__(self, indices: list[int], batch_size: int, epoch: int, start: int) -> None:
        self.indices = indices
        self.batch_size = batch_size
        self.epoch = epoch
        self.start = start

    def __len__(self) -> int:
        return max(0, len(self.indices) // self.batch_size - self.start)

    def __iter__(self) -> Iterator[list[tuple[int, int]]]:
        bs = self.batch_size
        for i in range(self.start, len(self.indices) // bs):
            yield [(idx, self.epoch) for idx in self.indices[i * bs : (i + 1) * bs]]


class TaskStream:
    """An endless, resumable stream of batches of one task for one process.

    The epoch's sample order is a :class:`~torch.utils.data.DistributedSampler` permutation (seed + epoch; this
    process takes every ``world_size``-th sample), cut into batches of ``batch_size`` (incomplete batches are
    dropped). When an epoch runs out the stream moves to the next one. With ``world_size`` processes of batch ``B``
    the union of the processes' ``i``-th batches equals the ``i``-th batch of one process with batch ``B *
    world_size``.

    State (:meth:`state_dict`): ``epoch`` and ``position`` (batches handed out in this epoch).
    """

    def __init__(
        self,
        dataset: PairCropDataset,
        batch_size: int,
        *,
        world_size: int = 1,
        rank: int = 0,
        seed: int = 0,
        num_workers: int = 0,
    ) -> None:
        self.dataset = dataset
        self.task = dataset.task
        self.batch_size = int(batch_size)
        self.world_size = int(world_size)
        self.rank = int(rank)
        self.seed = int(seed)
        self.num_workers = int(num_workers)
        self.sampler = DistributedSampler(
            dataset, num_replicas=world_size, rank=rank, shuffle=True, seed=seed, drop_last=True
        )
        if self.batches_per_epoch < 1:
            need = self.batch_size * self.world_size
            raise DatasetError(
                f"{self.task}: {len(dataset)} training pairs are fewer than one global batch "
                f"({self.batch_size} x {self.world_size} processes = {need})"
            )
        self.epoch = 0
        self.position = 0
        self._iter: Iterator[dict[str, Any]] | None = None

    @property
    def batches_per_epoch(self) -> int:
        return len(self.sampler) // self.batch_size

    def _loader_generator(self) -> torch.Generator:
        # DataLoader draws its workers' base seed from this generator; without one it would consume the global
        # torch RNG, which the model's noisy gating also uses, and break exact resumption.
        return torch.Generator().manual_seed(self.seed * 1_000_003 + TASK_IDS[self.task] * 10_007 + self.epoch)

    def _start(self) -> None:
        self.sampler.set_epoch(self.epoch)
        indices = list(iter(self.sampler))
        batches = _EpochBatchSampler(indices, self.batch_size, self.epoch, self.position)
        loader = DataLoader(
            self.dataset,
            batch_sampler=batches,
            num_workers=self.num_workers,
            generator=self._loader_generator(),
            persistent_workers=False,
        )
        self._iter = iter(loader)

    def next(self) -> dict[str, Any]:
        """The next batch ``{"a", "b": (B, 3, S, S), "index": (B,), "name": [B]}``; rolls over epochs."""
        if self.position >= self.batches_per_epoch:
            self.epoch += 1
            self.position = 0
            self._iter = None
        if self._iter is None:
            self._start()
        batch = next(self._iter)
        self.position += 1
        if self.position >= self.batches_per_epoch:
            self._iter = None
        return batch

    def state_dict(self) -> dict[str, int]:
        return {"epoch": int(self.epoch), "position": int(self.position), "seed": self.seed,
                "world_size": self.world_size, "num_samples": len(self.dataset)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if int(state.get("num_samples", len(self.dataset))) != len(self.dataset):
            log.warning("%s: the checkpoint saw %s pairs, now %d: the data order will differ",
                        self.task, state.get("num_samples"), len(self.dataset))
        if int(state.get("world_size", self.world_size)) != self.world_size:
            log.warning("%s: resumed with %d processes instead of %s: the data order will differ",
                        self.task, self.world_size, state.get("world_size"))
        self.epoch = int(state["epoch"])
        self.position = int(state["position"])
        self._iter = None
