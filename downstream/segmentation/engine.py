"""Config handling, training and evaluation of mmseg segmenters for the fusion comparison.

Training drives mmengine's ``Runner`` (real mmseg models, optimisers, schedules and checkpoints; ``launcher`` for
distributed runs). Evaluation is a lean loop over the test split with :class:`RGBTIoUMetric` (the Runner's
``test()`` would give the same numbers but costs a second Runner per model and keeps no predictions).
"""

from __future__ import annotations

import copy
import os
import time
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from mmengine.config import Config, ConfigDict
from mmengine.dataset import pseudo_collate
from mmengine.dist import barrier, is_distributed
from mmengine.registry import DefaultScope
from mmengine.runner import Runner
from mmseg.registry import DATASETS, MODELS
from tqdm import tqdm

from downstream.segmentation.checkpoint import read_segmenter_state
from downstream.segmentation.confusion import SegScores
from downstream.segmentation.metric import RGBTIoUMetric
from fusion.errors import CheckpointError, ConfigError
from fusion.utils.logging import get_logger

__all__ = [
    "load_config",
    "dataset_cfgs",
    "set_data_root",
    "set_input",
    "prepare_training",
    "train_segmenter",
    "build_segmenter",
    "EvalResult",
    "evaluate_segmenter",
]

log = get_logger(__name__)
_LOADERS = ("train_dataloader", "val_dataloader", "test_dataloader")


def load_config(path: str | os.PathLike, cfg_options: dict[str, Any] | None = None) -> Config:
    """Read an mmengine config file and merge ``cfg_options`` (nested or dotted keys)."""
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"{p}: segmentation config not found")
    try:
        cfg = Config.fromfile(str(p))
    except Exception as exc:  # mmengine raises many types for a bad file
        raise ConfigError(f"{p}: cannot read config ({exc.__class__.__name__}: {exc})") from None
    if cfg_options:
        cfg.merge_from_dict(cfg_options)
    return cfg


def _unwrap(ds: Any) -> Iterator[Any]:
    """Leaf dataset dicts of a dataset cfg (through RepeatDataset / ConcatDataset wrappers)."""
    if isinstance(ds, dict):
        if "datasets" in ds:
            for d in ds["datasets"]:
                yield from _unwrap(d)
        elif "dataset" in ds:
            yield from _unwrap(ds["dataset"])
        else:
            yield ds


def dataset_cfgs(cfg: Config, loaders: Sequence[str] = _LOADERS) -> list[ConfigDict]:
    """The leaf dataset configs of the given dataloaders (those present and not None)."""
    out = []
    for name in loaders:
        loader = cfg.get(name)
        if loader:
            out.extend(_unwrap(loader["dataset"]))
    return out


def set_data_root(cfg: Config, data_root: str | os.PathLike) -> Config:
    """Point every dataloader's dataset at ``data_root``."""
    cfg.data_root = str(data_root)
    for ds in dataset_cfgs(cfg):
        ds["data_root"] = str(data_root)
    return cfg


def set_input(cfg: Config, modality: str, *, fused_dir: str | os.PathLike | None = None,
              fuser: str | None = None, fuser_settings: dict[str, Any] | None = None) -> Config:
    """Select what every dataloader feeds the model: ``vis``, ``ir`` or ``fused`` (with ``fused_dir`` or ``fuser``)."""
    for ds in dataset_cfgs(cfg):
        ds["modality"] = modality
        ds["fused_dir"] = None if fused_dir is None else str(fused_dir)
        ds["fuser"] = fuser
        ds["fuser_settings"] = dict(fuser_settings or {})
    return cfg


def prepare_training(
    cfg: Config,
    work_dir: str | os.PathLike,
    *,
    seed: int = 0,
    max_iters: int | None = None,
    batch_size: int | None = None,
    launcher: str = "none",
    deterministic: bool = False,
    validate: bool = False,
    progress: bool = True,
    quiet: bool = True,
    name: str = "seg",
) -> Config:
    """Return a copy of ``cfg`` ready for :func:`train_segmenter`.

    Sets the work folder, seed, launcher and (optionally) iterations and batch size; keeps the checkpoint interval
    within the schedule; drops validation unless ``validate`` (the comparison evaluates on the test split after
    training); adds the tqdm bar; makes the experiment name unique so several runs can share one process.
    """
    cfg = copy.deepcopy(cfg)
    cfg.work_dir = str(work_dir)
    cfg.launcher = launcher
    cfg.randomness = dict(seed=int(seed), deterministic=bool(deterministic))
    cfg.experiment_name = f"{name}_{uuid.uuid4().hex[:6]}"
    if not torch.cuda.is_available():
        cfg.setdefault("env_cfg", ConfigDict())
        cfg.env_cfg.setdefault("dist_cfg", ConfigDict())
        cfg.env_cfg.dist_cfg["backend"] = "gloo"
        if launcher != "none" and not cfg.get("model_wrapper_cfg"):
            # mmengine passes device_ids=[LOCAL_RANK] to DDP, which torch refuses for CPU modules.
            cfg.model_wrapper_cfg = dict(type="MMDistributedDataParallel", device_ids=None, broadcast_buffers=False)
    if "train_cfg" not in cfg or "train_dataloader" not in cfg:
        raise ConfigError(f"{cfg.filename}: not a training config (no train_cfg / train_dataloader)")
    if max_iters is not None:
        if max_iters < 1:
            raise ConfigError(f"max_iters must be >= 1, got {max_iters}")
        old = cfg.train_cfg.get("max_iters")
        cfg.train_cfg["max_iters"] = int(max_iters)
        # Stretch or shrink the LR schedule with the iterations so a shorter run still decays fully.
        for sched in cfg.get("param_scheduler", None) or []:
            if old and sched.get("end") is not None and not sched.get("by_epoch", True):
                sched["end"] = max(1, round(sched["end"] * max_iters / old))
                if sched.get("begin"):
                    sched["begin"] = min(sched["end"] - 1, round(sched["begin"] * max_iters / old))
    total = cfg.train_cfg.get("max_iters")
    if batch_size is not None:
        cfg.train_dataloader["batch_size"] = int(batch_size)
    ckpt = cfg.default_hooks.get("checkpoint")
    if ckpt is not None and total:
        ckpt["interval"] = min(int(ckpt.get("interval", total)), int(total))
        ckpt["save_last"] = True
    if not validate:
        cfg.val_cfg = None
        cfg.val_dataloader = None
        cfg.val_evaluator = None
        cfg.train_cfg.pop("val_interval", None)
    if not progress:
        cfg.custom_hooks = [h for h in cfg.get("custom_hooks", []) if h.get("type") != "TqdmProgressHook"]
    else:
        for h in cfg.get("custom_hooks", []):
            if h.get("type") == "TqdmProgressHook":
                h["desc"] = f"train {name}"
    if quiet:
        cfg.log_level = "ERROR"  # mmengine deprecation chatter; losses still go to <work_dir>/*/vis_data/scalars.json
    # Visualisation of val samples is not wanted in the comparison (and would need a val loop).
    cfg.default_hooks.pop("visualization", None)
    return cfg


def _last_checkpoint(work_dir: Path) -> Path | None:
    marker = work_dir / "last_checkpoint"
    if not marker.is_file():
        return None
    p = Path(marker.read_text(encoding="utf-8").strip())
    return p if p.is_file() else None


def train_segmenter(cfg: Config) -> Path:
    """Train with mmengine's Runner (resuming from the work folder's last checkpoint); return the final checkpoint."""
    work_dir = Path(cfg.work_dir)
    cfg = copy.deepcopy(cfg)
    last = _last_checkpoint(work_dir)
    if last is not None and last.name == f"iter_{cfg.train_cfg.get('max_iters')}.pth":
        return last  # finished before; building a Runner just to find that out costs seconds
    if last is not None:
        cfg.resume = True
        cfg.load_from = None
    t0 = time.perf_counter()
    runner = Runner.from_cfg(cfg)
    runner.train()
    if is_distributed():
        barrier()  # rank 0 writes the checkpoint; the others must not look before it is there
    ckpt = _last_checkpoint(work_dir)
    if ckpt is None:
        raise CheckpointError(f"{work_dir}: training finished but no checkpoint was written")
    log.info("trained %s in %.1f s -> %s", cfg.experiment_name, time.perf_counter() - t0, ckpt)
    return ckpt


def build_segmenter(cfg: Config, checkpoint: str | os.PathLike | None, device: str | torch.device = "cpu"):
    """Build ``cfg.model`` and load ``checkpoint`` (an mmengine checkpoint or a plain state dict), in eval mode."""
    model_cfg = copy.deepcopy(cfg.model)
    model_cfg.pop("pretrained", None)
    if checkpoint is not None:
        # Weights come from the checkpoint; do not (try to) load ImageNet initialisations first.
        model_cfg.get("backbone", {}).pop("init_cfg", None)
    with DefaultScope.overwrite_default_scope("mmseg"):
        model = MODELS.build(model_cfg)
    if checkpoint is not None:
        p = Path(checkpoint)
        if not p.is_file():
            raise CheckpointError(f"{p}: segmentation checkpoint not found")
        state = read_segmenter_state(p)
        try:
            model.load_state_dict(state, strict=True)
        except (RuntimeError, KeyError, ValueError) as exc:
            msg = str(exc).splitlines()[0] if str(exc) else exc.__class__.__name__
            raise CheckpointError(f"{p}: does not fit the config's model ({msg[:300]})") from None
    model.cfg = cfg
    return model.to(device).eval()


@dataclass
class EvalResult:
    """Scores of one model on one split, plus a few predictions for pictures."""

    scores: SegScores
    metrics: dict[str, float]
    confusion: np.ndarray
    predictions: dict[str, np.ndarray] = field(default_factory=dict)  # sample name -> (H, W) uint8 class ids
    seconds: float = 0.0


def evaluate_segmenter(
    model,
    dataset_cfg: dict,
    *,
    batch_size: int = 4,
    keep: Sequence[str] | int = 0,
    progress: bool = True,
    desc: str = "test",
) -> EvalResult:
    """Run ``model`` over a dataset config and score it with :class:`RGBTIoUMetric`.

    Args:
        model: an mmseg segmentor (from :func:`build_segmenter` or a Runner).
        dataset_cfg: a dataset config dict (e.g. ``cfg.test_dataloader.dataset``).
        batch_size: images per forward pass (images of one batch must have the same size).
        keep: sample names whose predictions are returned, or a number of evenly spaced samples.
        progress: show a tqdm bar.
    """
    t0 = time.perf_counter()
    with DefaultScope.overwrite_default_scope("mmseg"):
        dataset = DATASETS.build(copy.deepcopy(dataset_cfg))
    n = len(dataset)
    if isinstance(keep, int):
        wanted = {dataset.get_data_info(int(i))["sample_name"] for i in np.linspace(0, n - 1, keep).round()} \
            if keep > 0 else set()
    else:
        wanted = set(keep)
    metric = RGBTIoUMetric()
    metric.dataset_meta = dataset.metainfo
    loader = torch.utils.data.DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=0,
                                         collate_fn=pseudo_collate)
    predictions: dict[str, np.ndarray] = {}
    was_training = model.training
    model.eval()
    with torch.no_grad():
        for batch in tqdm(loader, desc=desc, unit="batch", disable=not progress, leave=False):
            outputs = model.test_step(batch)
            for sample in outputs:
                name = Path(sample.img_path).stem  # every layout names the image file after the sample
                if name in wanted:
                    predictions[name] = sample.pred_sem_seg.data.squeeze(0).cpu().numpy().astype(np.uint8)
            metric.process(batch, [o.to_dict() for o in outputs])
    # compute_metrics directly, not evaluate(): evaluate() gathers results across ranks, and in a distributed run
    # only rank 0 evaluates.
    metrics = metric.compute_metrics(metric.results)
    metric.results.clear()
    model.train(was_training)
    return EvalResult(scores=metric.last_scores, metrics=metrics, confusion=metric.last_confusion,
                      predictions=predictions, seconds=time.perf_counter() - t0)
