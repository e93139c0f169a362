"""The end-to-end finetuning loop: TC-MoA adapters + a task network (an mmseg segmenter, or a YOLO detector when
``downstream`` is ``detection``), joint / alternating / frozen schedules.

It reuses the fusion-training machinery (``fusion.training``): the resumable data stream
(:class:`~fusion.training.data.TaskStream`), AdamW parameter groups and the warm-up + cosine learning rate
(:mod:`~fusion.training.schedule`), atomic rotating checkpoints with every process's RNG states
(:mod:`~fusion.training.checkpoint`), the CSV / TensorBoard logger (:class:`~fusion.training.run_logger.RunLogger`)
and the ``torchrun`` process group (:mod:`~fusion.runners.dist`; both networks sit in one DDP wrapper).

Per iteration the schedule (:func:`phase_at`) picks one of four phases:

============ ================================ ============================= ==========================================
phase        fuser                            segmenter                     loss / what steps
============ ================================ ============================= ==========================================
``frozen``   eval mode, no gradient (cached)  training                      ``L_seg``; segmenter
``seg``      eval mode, no gradient           training                      ``L_seg``; segmenter (alternating rounds)
``fusion``   training (noisy routing)         eval mode (BN fixed)          ``λf·L_fusion + λs·L_seg``; fuser
``joint``    training                         training                      ``λf·L_fusion + λs·L_seg``; both
============ ================================ ============================= ==========================================

Only parameters with ``requires_grad`` train: the TC-MoA backbone is frozen by construction; a part that should not
step in a phase has its gradients dropped (``None``) before the optimiser step, which AdamW then skips.
"""

from __future__ import annotations

import copy
import json
import os
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from downstream.e2e.checkpoint import save_e2e_checkpoint
from downstream.e2e.config import validate_config
from downstream.e2e.data import DetPairDataset, SegPairDataset, list_triples
from downstream.e2e.model import E2EModel, build_det_model, build_fusion_model, build_seg_model, trainable_fusion_names
from fusion.errors import CheckpointError, ConfigError
from fusion.losses import FusionLoss
from fusion.runners.dist import DistContext, barrier, cleanup_distributed
from fusion.training.checkpoint import load_training_checkpoint, remove_stale_temporaries
from fusion.training.data import TaskStream
from fusion.training.run_logger import RunLogger, csv_columns
from fusion.training.runtime import (
    amp_setup,
    backward_and_step,
    reduce_means,
    resolve_resume,
    restore_rng_snapshot,
    rng_snapshot,
    save_checkpoint_collective,
    seed_everything,
    setup_runtime,
    wrap_ddp,
)
from fusion.training.schedule import build_optimizer, lr_at, param_groups
from fusion.utils.io import atomic_write_text
from fusion.utils.logging import get_logger

__all__ = ["E2ETrainer", "finetune", "phase_at", "lambda_seg_at", "LOG_TERMS", "PHASES", "split_datasets",
           "detection_samples"]

log = get_logger(__name__)

PHASES: tuple[str, ...] = ("frozen", "seg", "fusion", "joint")
LOG_TERMS: tuple[str, ...] = ("loss", "seg_loss", "fusion_loss", "seg_acc", "lambda_seg", "lr_fusion", "fusion_step")
"""Scalars written to ``metrics.csv`` / TensorBoard (as ``train/<term>``; ``lr`` is the segmenter's rate)."""
_CKPT_KIND = "tcmoa-e2e-train/1"
FROZEN_CACHE_CROPS = 4096
"""Frozen-fusion outputs kept per run (oldest dropped first; the synthetic sets' crops all fit)."""

Callback = Callable[["E2ETrainer"], None]


def phase_at(cfg: dict[str, Any], iteration: int) -> str:
    """The phase of 0-based ``iteration`` (see the module table)."""
    warm = int(cfg["train"]["seg_warmup_iters"])
    mode = cfg["schedule"]["mode"]
    if mode == "frozen" or iteration < warm:
        return "frozen"
    if mode == "joint":
        return "joint"
    s, f = int(cfg["schedule"]["seg_iters"]), int(cfg["schedule"]["fusion_iters"])
    return "seg" if (iteration - warm) % (s + f) < s else "fusion"


def lambda_seg_at(cfg: dict[str, Any], iteration: int) -> float:
    """``λ_seg`` of an iteration: constant, except in alternating rounds where it grows by ``lambda_seg_growth``
    per completed round (SeAFusion raises the semantic weight round by round)."""
    base = float(cfg["loss"]["lambda_seg"])
    if cfg["schedule"]["mode"] != "alternating":
        return base
    warm = int(cfg["train"]["seg_warmup_iters"])
    period = int(cfg["schedule"]["seg_iters"]) + int(cfg["schedule"]["fusion_iters"])
    rounds = max(0, iteration - warm) // period
    return base * (1.0 + float(cfg["schedule"]["lambda_seg_growth"]) * rounds)


def split_datasets(seg_cfg: Any, cfg: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """The train and test dataset configs (leaf dicts) of the segmenter config, with ``data.root`` and the splits
    of ``cfg`` applied."""
    from downstream.segmentation.engine import dataset_cfgs

    train = dataset_cfgs(seg_cfg, ["train_dataloader"])
    test = dataset_cfgs(seg_cfg, ["test_dataloader"]) or dataset_cfgs(seg_cfg, ["val_dataloader"])
    if not train or not test:
        raise ConfigError(f"{cfg['segmenter']['config']}: needs train_dataloader and test_dataloader datasets")
    out = []
    for ds, split in ((train[0], cfg["data"]["train_split"]), (test[0], cfg["data"]["test_split"])):
        d = copy.deepcopy(dict(ds))
        d["split"] = split
        if cfg["data"]["root"]:
            d["data_root"] = str(cfg["data"]["root"])
        out.append(d)
    return out[0], out[1]


def detection_samples(cfg: dict[str, Any]) -> tuple[list[Any], list[Any], tuple[str, ...]]:
    """``(train samples, test samples, classes)`` of the detection dataset at ``data.root`` (its own layout and
    splits); with ``detector.classes`` only those classes' boxes are kept, renumbered in that order."""
    from downstream.detection.datasets import DetSample, load_detection_dataset

    dc = cfg["data"]
    if not dc["root"]:
        raise ConfigError("data.root: the detection dataset folder is required (finetune_e2e.py writes synthetic "
                          "LLVIP-layout scenes when none is given)")  # fmt: skip
    ds = load_detection_dataset(dc["root"], dc["layout"])
    wanted = cfg["detector"]["classes"]
    classes = tuple(ds.classes)
    splits = {name: list(ds.splits.get(split) or []) for name, split in
              (("train", dc["train_split"]), ("test", dc["test_split"]))}
    for name, samples in splits.items():
        if not samples:
            raise ConfigError(f"{dc['root']}: the {name} split {dc[f'{name}_split']!r} has no samples")
    shared = {s.ident for s in splits["train"]} & {s.ident for s in splits["test"]}
    if shared:
        raise ConfigError(f"{dc['root']}: {len(shared)} pair(s) are in both the train and the test split (a sample "
                          "without a train split?): the comparison would score training images")  # fmt: skip
    if wanted:
        lower = [c.lower() for c in classes]
        missing = [c for c in wanted if c.lower() not in lower]
        if missing:
            raise ConfigError(f"detector.classes: {missing[0]!r} is not a class of {dc['root']} "
                              f"({', '.join(classes)})")  # fmt: skip
        index = [lower.index(c.lower()) for c in wanted]

        def relabel(smp: DetSample) -> DetSample:
            lab = smp.labels
            keep = np.isin(lab.classes, index)
            new = np.array([index.index(int(c)) for c in lab.classes[keep]], dtype=np.int64)
            return DetSample(smp.ident, smp.vis, smp.ir, type(lab)(lab.boxes[keep], new, lab.width, lab.height,
                                                                   lab.ignore[keep]))

        splits = {k: [relabel(s) for s in v] for k, v in splits.items()}
        classes = tuple(classes[i] for i in index)
    return splits["train"], splits["test"], classes


def dataset_classes(dataset_cfg: dict[str, Any]) -> tuple[str, ...]:
    """Class names of a dataset config's type (``METAINFO["classes"]``)."""
    from mmseg.registry import DATASETS

    import downstream.segmentation  # noqa: F401

    cls = DATASETS.get(dataset_cfg["type"]) if isinstance(dataset_cfg.get("type"), str) else dataset_cfg.get("type")
    if cls is None or not hasattr(cls, "METAINFO"):
        raise ConfigError(f"dataset type {dataset_cfg.get('type')!r} is not a registered segmentation dataset")
    return tuple(cls.METAINFO["classes"])


class E2ETrainer:
    """Builds the fuser, the segmenter, the data stream and the optimiser from a config and trains them.

    Args:
        cfg: configuration (:func:`downstream.e2e.config.load_config`).
        resume: ``None`` (fresh run), a checkpoint file or run folder, or ``"auto"`` (the newest checkpoint in
            ``cfg["output_dir"]`` when there is one).
        callbacks: called as ``cb(trainer)`` after every iteration.

    Attributes: ``model`` (possibly DDP-wrapped :class:`E2EModel`), ``module`` (the bare one), ``fuser``,
    ``task_net`` (the segmenter or detector; ``segmenter`` is the same object), ``downstream``, ``seg_cfg`` (mmengine
    Config; None for detection), ``optimizer``, ``scaler``, ``stream``, ``iteration`` (completed iterations),
    ``total_iters``, ``fusion_init`` (where the fuser's weights came from), ``classes``, ``train_dataset_cfg`` /
    ``test_dataset_cfg`` (segmentation) or ``test_samples`` (detection), ``dist``.
    """

    def __init__(self, cfg: dict[str, Any], *, resume: str | os.PathLike | None = None,
                 callbacks: Sequence[Callback] = ()) -> None:
        validate_config(cfg)
        self.cfg = copy.deepcopy(cfg)
        self.callbacks = list(callbacks)
        tr = self.cfg["train"]
        self.dist: DistContext = setup_runtime(tr)
        self.device = self.dist.device
        self.output_dir = Path(self.cfg["output_dir"])
        self.ckpt_dir = self.output_dir / "checkpoints"
        crop = self.cfg["data"]["crop_size"]
        self.crop_size = (crop, crop) if isinstance(crop, int) else (int(crop[0]), int(crop[1]))

        seed_everything(int(tr["seed"]))
        mc, sc = self.cfg["model"], self.cfg["segmenter"]
        self.fuser, self.fusion_init = build_fusion_model(mc["name"], mc["checkpoint"], mc["init"], mc["overrides"],
                                                          freeze=mc["freeze"], skip_identity=mc["skip_identity_blocks"])
        unit = self.fuser.config.input_multiple
        if self.crop_size[0] % unit or self.crop_size[1] % unit:
            raise ConfigError(f"data.crop_size={list(self.crop_size)}: must be multiples of {unit} for {mc['name']}")
        self.downstream = self.cfg["downstream"]
        dc = self.cfg["data"]
        self.test_samples: list[Any] = []
        if self.downstream == "detection":
            train_samples, self.test_samples, self.classes = detection_samples(self.cfg)
            dt = self.cfg["detector"]
            self.task_net = build_det_model(dt["model"], dt["checkpoint"], num_classes=len(self.classes),
                                            hyp=dt["hyp"])
            self.task_config_text = json.dumps({"model": dt["model"], "classes": list(self.classes)})
            self.seg_cfg = None
            self.train_dataset_cfg = self.test_dataset_cfg = None
            self.dataset = DetPairDataset(train_samples, self.crop_size, hflip=dc["hflip"], seed=int(tr["seed"]),
                                          task=mc["task"])
        else:
            self.task_net, self.seg_cfg = build_seg_model(sc["config"], sc["checkpoint"], sc["cfg_options"],
                                                          crop_size=self.crop_size)
            self.task_config_text = self.seg_cfg.pretty_text
            self.train_dataset_cfg, self.test_dataset_cfg = split_datasets(self.seg_cfg, self.cfg)
            self.classes = dataset_classes(self.train_dataset_cfg)
            self.dataset = SegPairDataset(list_triples(self.train_dataset_cfg), self.crop_size, hflip=dc["hflip"],
                                          seed=int(tr["seed"]), task=mc["task"])
        if sc["sync_bn"] and self.dist.distributed:
            self.task_net = nn.SyncBatchNorm.convert_sync_batchnorm(self.task_net)
        lc = self.cfg["loss"]
        fusion_loss = FusionLoss(lc["fusion_preset"], warmup_epochs=1 if lc["fusion_phase"] == "warmup" else 0)
        self.module = E2EModel(self.fuser, self.task_net, downstream=self.downstream, task=mc["task"],
                               fusion_loss=fusion_loss, router_noise=mc["router_noise"]).to(self.device)
        self.fusion_param_names = trainable_fusion_names(self.fuser)

        if dc["num_workers"] > 0:
            self.dataset.preload()
        self.stream = TaskStream(self.dataset, dc["batch_size"], world_size=self.dist.world_size,
                                 rank=self.dist.rank, seed=int(tr["seed"]), num_workers=dc["num_workers"])
        self.total_iters = int(tr["iters"])

        self.model: nn.Module = wrap_ddp(self.module, self.dist)
        groups = []
        for kind, part, wd, lr in (("fusion", self.fuser, tr["weight_decay_fusion"], tr["lr_fusion"]),
                                   ("seg", self.segmenter, tr["weight_decay_seg"], tr["lr_seg"])):
            for g in param_groups(part.named_parameters(), wd):
                g.update(kind=kind, base_lr=float(lr))
                groups.append(g)
        self.param_names = [f"{g['kind']}:{n}" for g in groups for n in g["names"]]
        self.optimizer = build_optimizer(groups, float(tr["lr_seg"]), tr["betas"])
        self.amp_dtype, self.scaler = amp_setup(tr["amp"], self.device)
        if self.amp_dtype is not None and self.fusion_init in ("codec", "shipped"):
            log.warning("train.amp=%s with %s weights: codec-derived TC-MoA weights carry codes next to a large "
                        "constant and need float32 (measured: vif loss 1.6 -> 11.3 under bf16); use train.amp=none",
                        tr["amp"], self.fusion_init)
        self.iteration = 0
        self.last_checkpoint: Path | None = None
        self._frozen_cache: OrderedDict[tuple[int, ...], torch.Tensor] = OrderedDict()
        self._last: dict[str, Any] = {}

        seed_everything(int(tr["seed"]) + self.dist.rank)
        resume_path = resolve_resume(resume, self.ckpt_dir)
        if resume_path is not None:
            self.load(resume_path)
        self.logger: RunLogger | None = None
        if self.dist.is_main:
            remove_stale_temporaries(self.ckpt_dir)
            self.output_dir.mkdir(parents=True, exist_ok=True)
            atomic_write_text(self.output_dir / "config.json", json.dumps(self.cfg, indent=2, default=str) + "\n")
            lg = self.cfg["log"]
            self.logger = RunLogger(self.output_dir, csv_columns(["train"], LOG_TERMS), tensorboard=lg["tensorboard"],
                                    csv_enabled=lg["csv"], resume_iteration=self.iteration)
        n_fuse = sum(p.numel() for p in self.fuser.parameters() if p.requires_grad)
        n_seg = sum(p.numel() for p in self.segmenter.parameters() if p.requires_grad)
        net_name = Path(self.cfg["detector"]["model"] if self.downstream == "detection" else sc["config"]).stem
        log.info("e2e %s (%s init) + %s: %d fusion / %d %s trainable parameters, schedule %s, "
                 "%d iterations (%d frozen-fusion warm-up), world size %d", mc["name"], self.fusion_init, net_name,
                 n_fuse, n_seg, self.part_name, self.cfg["schedule"]["mode"], self.total_iters,
                 tr["seg_warmup_iters"], self.dist.world_size)

    @property
    def segmenter(self) -> nn.Module:
        """The task network (segmenter or detector; the name is the segmentation case's, which came first)."""
        return self.task_net

    @property
    def part_name(self) -> str:
        """``segmenter`` or ``detector``: the task network's name in checkpoints and logs."""
        return "detector" if self.downstream == "detection" else "segmenter"

    # ------------------------------------------------------------------ state
    def state_dict(self) -> dict[str, Any]:
        """Everything a training checkpoint holds (collective call: RNG states of all processes are gathered)."""
        rng = rng_snapshot(self.dist)
        return {
            "kind": _CKPT_KIND,
            "model": {k: v.detach().cpu() for k, v in self.fuser.state_dict().items()},
            "config": self.fuser.config.to_dict(),
            self.part_name: {k: v.detach().cpu() for k, v in self.segmenter.state_dict().items()},
            f"{self.part_name}_config": self.task_config_text,
            "train_config": copy.deepcopy(self.cfg),
            "fusion_init": self.fusion_init,
            "optimizer": self.optimizer.state_dict(),
            "scaler": self.scaler.state_dict() if self.scaler is not None else None,
            "progress": {"iteration": self.iteration, "total_iters": self.total_iters},
            "streams": {"seg": self.stream.state_dict()},
            "rng": rng,
            "param_names": list(self.param_names),
        }

    def save(self) -> Path | None:
        """Write a training checkpoint (rank 0 writes; every rank must call)."""
        path = save_checkpoint_collective(self.state_dict(), self.ckpt_dir, self.iteration,
                                          int(self.cfg["checkpoint"]["keep_last"]), self.dist)
        if path is not None:
            self.last_checkpoint = path
        return path

    def load(self, path: str | os.PathLike) -> None:
        """Restore a training checkpoint: both networks, optimiser, scaler, progress, data position, RNG states.

        A checkpoint of another schedule mode (e.g. the shared frozen-fusion warm-up) is accepted: only the
        trained parameters must match.
        """
        ck = load_training_checkpoint(path)
        if ck.get("kind") != _CKPT_KIND or not ({"segmenter", "detector"} & set(ck)):
            raise CheckpointError(f"{path}: not an end-to-end training checkpoint (a fusion-training checkpoint?)")
        if self.part_name not in ck:
            other = "detector" if self.part_name == "segmenter" else "segmenter"
            raise CheckpointError(f"{path}: holds a {other}, this run trains a {self.part_name} (downstream)")
        try:
            self.fuser.load_state_dict(ck["model"], strict=True)
            self.segmenter.load_state_dict(ck[self.part_name], strict=True)
        except RuntimeError as exc:
            first = str(exc).splitlines()[0]
            raise CheckpointError(f"{path}: networks do not match the checkpoint ({first})") from None
        if list(ck.get("param_names") or []) != self.param_names:
            raise CheckpointError(f"{path}: the trained parameters differ from the checkpoint's (other model, "
                                  "segmenter config or detector?)")
        # the configuration decides rates and decay: a resumed (or forked) run may change them
        settings = [{k: g[k] for k in ("base_lr", "weight_decay", "betas", "kind")}
                    for g in self.optimizer.param_groups]
        self.optimizer.load_state_dict(ck["optimizer"])
        for g, keep in zip(self.optimizer.param_groups, settings):
            g.update(keep)
        if self.scaler is not None and ck.get("scaler") is not None:
            self.scaler.load_state_dict(ck["scaler"])
        self.fusion_init = str(ck.get("fusion_init") or self.fusion_init)
        self.iteration = int(ck["progress"]["iteration"])
        if "seg" in ck["streams"]:
            self.stream.load_state_dict(ck["streams"]["seg"])
        restore_rng_snapshot(ck["rng"], self.dist, path)
        self._frozen_cache.clear()
        self.last_checkpoint = Path(path)
        if self.dist.is_main:
            log.info("resumed from %s at iteration %d", path, self.iteration)

    # ------------------------------------------------------------------ schedule
    def lr_factors(self, iteration: int) -> dict[str, float]:
        """Multipliers of the base rates at ``iteration``: warm-up + cosine over the whole run for the segmenter,
        over the part after the frozen-fusion warm-up for the fuser (0 before it)."""
        tr = self.cfg["train"]
        ratio = float(tr["min_lr_ratio"])
        seg = lr_at(iteration, lr=1.0, min_lr=ratio, warmup_epochs=int(tr["warmup_iters"]), epochs=self.total_iters)
        start = int(tr["seg_warmup_iters"])
        fusion = 0.0
        if iteration >= start and self.total_iters > start:
            fusion = lr_at(iteration - start, lr=1.0, min_lr=ratio, warmup_epochs=int(tr["warmup_iters"]),
                           epochs=self.total_iters - start)
        return {"seg": seg, "fusion": fusion}

    def _set_lrs(self, iteration: int) -> dict[str, float]:
        factors = self.lr_factors(iteration)
        rates = {}
        for g in self.optimizer.param_groups:
            g["lr"] = g["base_lr"] * factors[g["kind"]]
            rates[g["kind"]] = g["lr"]
        return rates

    # ------------------------------------------------------------------ one iteration
    def _frozen_fused(self, batch: dict[str, Any]) -> torch.Tensor:
        """Fuser outputs (eval mode, no gradient) of a batch, cached per (sample, crop) when ``data.frozen_cache``
        (the frozen fuser is deterministic, so the cache changes nothing but the time)."""
        a, b = batch["a"].to(self.device), batch["b"].to(self.device)
        if not self.cfg["data"]["frozen_cache"]:
            with torch.no_grad(), self._autocast():
                return self.module.fuse(a, b).float()
        keys = [(int(i), *(int(v) for v in c)) for i, c in zip(batch["index"], batch["crop"])]
        missing = [j for j, k in enumerate(keys) if k not in self._frozen_cache]
        if missing:
            with torch.no_grad(), self._autocast():
                fused = self.module.fuse(a[missing], b[missing]).float()
            for j, f in zip(missing, fused):
                self._frozen_cache[keys[j]] = f
        out = torch.stack([self._frozen_cache[k] for k in keys])
        while len(self._frozen_cache) > FROZEN_CACHE_CROPS:  # bounded for full-size datasets
            self._frozen_cache.popitem(last=False)
        return out

    def _autocast(self):
        return torch.autocast(self.device.type, dtype=self.amp_dtype or torch.float32,
                              enabled=self.amp_dtype is not None)

    def train_iteration(self) -> dict[str, float]:
        """One iteration of the phase :func:`phase_at` gives; returns this process's scalars."""
        it = self.iteration
        phase = phase_at(self.cfg, it)
        rates = self._set_lrs(it)
        lam_seg = lambda_seg_at(self.cfg, it)
        batch = self.stream.next()
        self._last = batch
        a, b = batch["a"].to(self.device), batch["b"].to(self.device)
        detection = self.downstream == "detection"
        labels = (batch["boxes"] if detection else batch["label"]).to(self.device)
        n_boxes = batch["n_boxes"] if detection else None
        fusion_step = phase in ("fusion", "joint")
        self.module.set_modes(fuser_train=fusion_step, seg_train=phase != "fusion")
        fused = self._frozen_fused(batch) if phase == "frozen" else None
        with self._autocast():
            out = self.model(a, b, labels, fusion_grad=fusion_step, fused=fused,
                             lambda_fusion=float(self.cfg["loss"]["lambda_fusion"]), lambda_seg=lam_seg,
                             n_boxes=n_boxes)
        loss = out["loss"]
        if not torch.isfinite(loss.detach()).all():
            raise FloatingPointError(f"non-finite loss at iteration {it} ({phase} phase); lower the learning rates, "
                                     "set train.grad_clip, or use train.amp=bf16")
        self._backward_step(loss, drop_seg=phase == "fusion")
        self.iteration += 1
        logs = out["logs"]
        return {"loss": float(loss.detach()), "seg_loss": float(out["seg_loss"]),
                "fusion_loss": float(out["fusion_loss"]), "seg_acc": logs.get("seg.decode.acc_seg", float("nan")),
                "lambda_seg": lam_seg, "lr_fusion": rates.get("fusion", 0.0), "lr_seg": rates.get("seg", 0.0),
                "fusion_step": float(fusion_step)}

    def _backward_step(self, loss: torch.Tensor, *, drop_seg: bool) -> None:
        def drop_segmenter_grads() -> None:  # fuser-only step: the segmenter is a fixed critic
            for p in self.segmenter.parameters():
                p.grad = None

        backward_and_step(loss, self.optimizer, self.scaler, self.cfg["train"]["grad_clip"],
                          after_backward=drop_segmenter_grads if drop_seg else None)

    # ------------------------------------------------------------------ loop
    def fit(self, stop_at: int | None = None) -> Path | None:
        """Train until ``total_iters`` (or ``stop_at``, for a shared warm-up); returns the exported final
        checkpoint (rank 0, only when the run reached ``total_iters``) or None."""
        from tqdm import tqdm

        end = self.total_iters if stop_at is None else min(int(stop_at), self.total_iters)
        lg, ck = self.cfg["log"], self.cfg["checkpoint"]
        bar = tqdm(total=end, initial=self.iteration, desc=f"e2e {self.cfg['schedule']['mode']}",
                   dynamic_ncols=True, disable=not (lg["progress"] and self.dist.is_main))
        sums: dict[str, float] = {}
        count = 0
        t0 = time.perf_counter()
        try:
            while self.iteration < end:
                values = self.train_iteration()
                count += 1
                for k, v in values.items():
                    sums[k] = sums.get(k, 0.0) + v
                bar.update(1)
                it = self.iteration
                if it % int(lg["every_iters"]) == 0 or it == end:
                    scalars = reduce_means(sums, count)
                    if self.logger is not None:
                        self.logger.log_scalars(it, 0, scalars.pop("lr_seg", 0.0), time.perf_counter() - t0,
                                                {f"train/{k}": v for k, v in scalars.items()})
                    bar.set_postfix(seg=f"{scalars.get('seg_loss', float('nan')):.3f}",
                                    fus=f"{scalars.get('fusion_loss', float('nan')):.3f}")
                    sums, count = {}, 0
                if (ck["every_iters"] and it % int(ck["every_iters"]) == 0) or it == end:
                    self.save()
                for cb in self.callbacks:
                    cb(self)
        finally:
            bar.close()
        out = None
        if self.iteration >= self.total_iters and self.dist.is_main:
            out = self.export()
        barrier()
        return out

    def export(self, path: str | os.PathLike | None = None, meta: dict[str, Any] | None = None) -> Path:
        """Write the finetuned pair as ``e2e_final.safetensors`` (see :mod:`downstream.e2e.checkpoint`)."""
        target = Path(path) if path is not None else self.output_dir / "e2e_final.safetensors"
        net = self.cfg["detector"]["model"] if self.downstream == "detection" else self.cfg["segmenter"]["config"]
        info = {"model": self.cfg["model"]["name"], "task": self.cfg["model"]["task"], "classes": list(self.classes),
                "schedule": self.cfg["schedule"]["mode"], "iterations": self.iteration,
                "fusion_init": self.fusion_init, "downstream": self.downstream, self.part_name: str(net),
                "crop_size": list(self.crop_size), **(meta or {})}
        save_e2e_checkpoint(target, self.fuser.state_dict(), self.segmenter.state_dict(), self.fuser.config.to_dict(),
                            segmenter_config=self.task_config_text, meta=info, part=self.part_name)
        log.info("finetuned fuser + %s written to %s", self.part_name, target)
        return target

    def close(self) -> None:
        if self.logger is not None:
            self.logger.close()
            self.logger = None
        cleanup_distributed()


def finetune(cfg: dict[str, Any], *, resume: str | os.PathLike | None = None,
             callbacks: Sequence[Callback] = ()) -> Path | None:
    """Build an :class:`E2ETrainer`, train to the end, release the process group; returns the exported file."""
    trainer = E2ETrainer(cfg, resume=resume, callbacks=callbacks)
    try:
        return trainer.fit()
    finally:
        trainer.close()
