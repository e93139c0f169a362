"""The TC-MoA training loop (official ``engine_train`` semantics) with AMP, DDP, checkpoints and exact resumption.

One iteration takes one batch of every task that has data, in the order vif, mef, mff. With
``train.step_mode="per_task"`` (official) each task gets its own forward, backward and optimiser step; with
``"sum"`` the task losses are added and one step is taken. The learning rate is set once per iteration
(:func:`~fusion.training.schedule.lr_at`); the loss uses the integer epoch for its warm-up switch.

Exact resumption: a checkpoint holds everything that decides the rest of the run (weights, optimiser, scaler,
EMA, iteration, data-stream positions, and every process's RNG states), and data augmentation is a pure function
of (seed, task, stream epoch, sample index). On CPU with ``train.deterministic=True`` a run killed at any point
and resumed from its last checkpoint ends with bit-identical weights (tested).
"""

from __future__ import annotations

import copy
import json
import os
import re
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from fusion.errors import CheckpointError, ConfigError
from fusion.losses import FusionLoss
from fusion.models.shortcuts import skip_identity_blocks
from fusion.runners.dist import DistContext, barrier, cleanup_distributed
from fusion.training.checkpoint import load_training_checkpoint, remove_stale_temporaries
from fusion.training.config import TASK_ORDER, validate_config
from fusion.training.data import PairCropDataset, TaskStream, collect_pairs
from fusion.training.ema import ModelEMA
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
from fusion.training.schedule import build_optimizer, lr_at, param_groups, set_lr
from fusion.utils.io import atomic_write_text
from fusion.utils.logging import get_logger

__all__ = ["Trainer", "train", "skip_identity_blocks", "LOG_TERMS", "FIXED_BACKBONE_KEYS"]

log = get_logger(__name__)

LOG_TERMS: tuple[str, ...] = (*FusionLoss.TERMS, "aux", "loss")
"""Loss terms written to the logs for each task."""

FIXED_BACKBONE_KEYS: tuple[str, ...] = ("cls_token", "pos_embed", "decoder_pos_embed")
"""Parameters that stay frozen even with ``train.unfreeze`` (MAE keeps its sin-cos embeddings fixed)."""

Callback = Callable[["Trainer"], None]


def _normalize(x: torch.Tensor) -> torch.Tensor:
    from fusion.models.tcmoa import normalize

    return normalize(x)


class Trainer:
    """Builds everything a run needs from a configuration (see ``configs/fusion/defaults.py``) and trains.

    Args:
        cfg: a validated configuration dict (:func:`fusion.training.config.load_config`).
        resume: ``None`` (fresh run), a checkpoint file, a run folder, or ``"auto"`` (the newest checkpoint in
            ``cfg["output_dir"]`` if there is one, else a fresh run).
        callbacks: called as ``cb(trainer)`` after every iteration (after any checkpoint of that iteration).

    Attributes after construction: ``model`` (possibly DDP-wrapped), ``module`` (the bare model), ``optimizer``,
    ``scaler``, ``ema``, ``streams`` (task -> :class:`~fusion.training.data.TaskStream`), ``iteration``
    (completed iterations), ``iters_per_epoch``, ``total_iters``, ``dist``.
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

        # the model is built from the same seed on every process; per-process seeds (official: seed + rank) follow
        seed_everything(int(tr["seed"]))
        self.module = self._build_model()
        self.streams = self._build_streams()
        if not self.streams:
            raise ConfigError("data.tasks: no task has any dataset (set data.tasks.<task>.datasets)")
        self.tasks = [t for t in TASK_ORDER if t in self.streams]
        lead = self.streams[self.cfg["data"]["lead_task"]]
        self.iters_per_epoch = int(tr["iters_per_epoch"] or lead.batches_per_epoch)
        self.total_iters = int(tr["epochs"]) * self.iters_per_epoch
        if tr["max_iters"]:
            self.total_iters = min(self.total_iters, int(tr["max_iters"]))

        self.model: nn.Module = wrap_ddp(self.module, self.dist)
        from fusion.models.tcmoa import is_backbone_key

        groups = param_groups(self.module.named_parameters(), tr["weight_decay"],
                              backbone_lr_scale=tr["backbone_lr_scale"], is_backbone=is_backbone_key)
        if not groups:
            raise ConfigError("nothing to train: every parameter is frozen")
        self.param_names = [n for g in groups for n in g["names"]]
        self.optimizer = build_optimizer(groups, tr["lr"], tr["betas"])
        self.amp_dtype, self.scaler = amp_setup(tr["amp"], self.device)
        self.ema = ModelEMA(self.module, self.cfg["ema"]["decay"]) if self.cfg["ema"]["enabled"] else None
        self.loss_fn = FusionLoss(self.cfg["loss"]["preset"], self.cfg["loss"]["warmup_epochs"])
        self.iteration = 0
        self.last_checkpoint: Path | None = None
        self._last_batches: dict[str, dict[str, Any]] = {}

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
            self.logger = RunLogger(self.output_dir, csv_columns(self.tasks, LOG_TERMS),
                                    tensorboard=lg["tensorboard"], csv_enabled=lg["csv"],
                                    resume_iteration=self.iteration)
        n_train = sum(p.numel() for p in self.module.parameters() if p.requires_grad)
        log.info("%s: %d trainable parameters, tasks %s, %d iterations/epoch, %d iterations in all, world size %d",
                 self.module.config.name, n_train, ",".join(self.tasks), self.iters_per_epoch, self.total_iters,
                 self.dist.world_size)

    # ------------------------------------------------------------------ construction
    def _build_model(self) -> nn.Module:
        import fusion.models as models

        mc = self.cfg["model"]
        model = models.create_model(mc["name"], checkpoint=mc["checkpoint"],
                                    pretrained_backbone=mc["pretrained_backbone"], **dict(mc["overrides"] or {}))
        if mc["init"] == "codec":
            if mc["checkpoint"] is not None:
                raise ConfigError("model.init='codec' and model.checkpoint are exclusive (the init would be lost)")
            from fusion.training.codec_init import codec_init

            codec_init(model)
        if self.cfg["train"]["unfreeze"]:
            for name, p in model.named_parameters():
                if name.endswith("modal_shifts"):
                    p.requires_grad_(model.config.train_modal_shifts)
                else:
                    p.requires_grad_(name not in FIXED_BACKBONE_KEYS)
        for pattern in self.cfg["train"]["freeze"]:
            hits = [n for n, p in model.named_parameters() if re.search(pattern, n)]
            if not hits:
                raise ConfigError(f"train.freeze: {pattern!r} matches no parameter of {model.config.name}")
            for name, p in model.named_parameters():
                if name in hits:
                    p.requires_grad_(False)
        if mc["grad_checkpointing"]:
            model.set_grad_checkpointing(True)
        if mc["skip_identity_blocks"]:
            skipped = skip_identity_blocks(model)
            if skipped:
                log.info("%d frozen backbone blocks are exact identities (zero output projections): skipped", skipped)
        return model.to(self.device)

    def _build_streams(self) -> dict[str, TaskStream]:
        dc = self.cfg["data"]
        seed = int(self.cfg["train"]["seed"])
        streams: dict[str, TaskStream] = {}
        for task in TASK_ORDER:
            spec = dc["tasks"].get(task)
            if not spec or not spec["datasets"]:
                continue
            pairs = collect_pairs(task, spec["datasets"])
            ds = PairCropDataset(pairs, task, crop_size=dc["crop_size"], scale=spec["crop_scale"],
                                 ratio=dc["crop_ratio"], hflip=dc["hflip"], interpolation=dc["interpolation"],
                                 resize=dc["resize"], cache=dc["cache"], seed=seed)
            if dc["cache"] and dc["num_workers"] > 0:
                ds.preload()
            streams[task] = TaskStream(ds, spec["batch_size"], world_size=self.dist.world_size, rank=self.dist.rank,
                                       seed=seed, num_workers=dc["num_workers"])
        return streams

    # ------------------------------------------------------------------ state
    def set_train_mode(self) -> None:
        """``train()`` everywhere, except the routers when ``model.router_noise`` is off."""
        self.model.train()
        if not self.cfg["model"]["router_noise"]:
            from fusion.models.layers import MMoE

            for m in self.module.modules():
                if isinstance(m, MMoE):
                    m.eval()

    def state_dict(self) -> dict[str, Any]:
        """Everything a checkpoint holds (RNG states of all processes are gathered; collective call)."""
        rng = rng_snapshot(self.dist)
        return {
            "model": {k: v.detach().cpu() for k, v in self.module.state_dict().items()},
            "config": self.module.config.to_dict(),
            "train_config": copy.deepcopy(self.cfg),
            "optimizer": self.optimizer.state_dict(),
            "scaler": self.scaler.state_dict() if self.scaler is not None else None,
            "ema": self.ema.state_dict() if self.ema is not None else None,
            "progress": {"iteration": self.iteration, "epoch": self.iteration // self.iters_per_epoch,
                         "iters_per_epoch": self.iters_per_epoch, "total_iters": self.total_iters},
            "streams": {t: s.state_dict() for t, s in self.streams.items()},
            "rng": rng,
            "param_names": list(self.param_names),
        }

    def save(self) -> Path | None:
        """Write a checkpoint of the current state (rank 0 writes; every rank must call)."""
        path = save_checkpoint_collective(self.state_dict(), self.ckpt_dir, self.iteration,
                                          int(self.cfg["checkpoint"]["keep_last"]), self.dist)
        if path is not None:
            self.last_checkpoint = path
        return path

    def load(self, path: str | os.PathLike) -> None:
        """Restore a training checkpoint (weights, optimiser, scaler, EMA, progress, data positions, RNG)."""
        ck = load_training_checkpoint(path)
        try:
            self.module.load_state_dict(ck["model"], strict=True)
        except RuntimeError as exc:
            first = str(exc).splitlines()[0]
            raise CheckpointError(f"{path}: model does not match the checkpoint ({first})") from None
        if ck.get("param_names") is not None and list(ck["param_names"]) != self.param_names:
            raise CheckpointError(f"{path}: the trainable parameters differ from the checkpoint's "
                                  "(train.unfreeze or model options changed?)")
        self.optimizer.load_state_dict(ck["optimizer"])
        if self.scaler is not None and ck.get("scaler") is not None:
            self.scaler.load_state_dict(ck["scaler"])
        if self.ema is not None and ck.get("ema") is not None:
            self.ema.load_state_dict(ck["ema"])
        prog = ck["progress"]
        if int(prog["iters_per_epoch"]) != self.iters_per_epoch:
            log.warning("%s: %s iterations per epoch in the checkpoint, %d now: the schedule will differ",
                        path, prog["iters_per_epoch"], self.iters_per_epoch)
        self.iteration = int(prog["iteration"])
        for task, stream in self.streams.items():
            if task in ck["streams"]:
                stream.load_state_dict(ck["streams"][task])
        restore_rng_snapshot(ck["rng"], self.dist, path)
        self.last_checkpoint = Path(path)
        if self.dist.is_main:
            log.info("resumed from %s at iteration %d", path, self.iteration)

    # ------------------------------------------------------------------ training
    @property
    def epoch(self) -> int:
        return self.iteration // self.iters_per_epoch

    def current_lr(self) -> float:
        """The rate of the next iteration."""
        return self.current_lr_at(self.iteration)

    def _forward_loss(self, task: str, batch: dict[str, Any], epoch: int) -> dict[str, torch.Tensor]:
        a = batch["a"].to(self.device, non_blocking=True)
        b = batch["b"].to(self.device, non_blocking=True)
        with torch.autocast(self.device.type, dtype=self.amp_dtype or torch.float32,
                            enabled=self.amp_dtype is not None):
            fused, aux = self.model(_normalize(a), _normalize(b), task=task, return_aux=True)
        m = self.module.config.frame_margin
        if m and min(fused.shape[-2:]) > 4 * m:
            # the border the model's token convolutions see zero-padded is context only (inference pads it too)
            fused, a, b = (x[..., m:-m, m:-m] for x in (fused, a, b))
        return self.loss_fn(task, fused, a, b, aux, epoch)

    def _backward_step(self, loss: torch.Tensor) -> None:
        backward_and_step(loss, self.optimizer, self.scaler, self.cfg["train"]["grad_clip"])

    def train_iteration(self) -> dict[str, dict[str, float]]:
        """One iteration (a batch of every task); returns ``{task: {term: value}}`` of this process."""
        epoch = self.epoch
        lr = self.current_lr()
        set_lr(self.optimizer, lr)
        batches = {task: self.streams[task].next() for task in self.tasks}
        self._last_batches = batches
        values: dict[str, dict[str, float]] = {}
        if self.cfg["train"]["step_mode"] == "sum":
            total = None
            for task in self.tasks:
                terms = self._forward_loss(task, batches[task], epoch)
                total = terms["loss"] if total is None else total + terms["loss"]
                values[task] = {k: float(v.detach()) for k, v in terms.items()}
            self._check_finite(total)
            self._backward_step(total)
        else:
            for task in self.tasks:
                terms = self._forward_loss(task, batches[task], epoch)
                self._check_finite(terms["loss"], task)
                self._backward_step(terms["loss"])
                values[task] = {k: float(v.detach()) for k, v in terms.items()}
        self.iteration += 1
        if self.ema is not None:
            self.ema.update(self.module)
        return values

    def _check_finite(self, loss: torch.Tensor, task: str = "all") -> None:
        if not torch.isfinite(loss.detach()).all():
            raise FloatingPointError(f"non-finite {task} loss at iteration {self.iteration} "
                                     f"(lower train.lr, set train.grad_clip, or use train.amp=bf16)")

    def fit(self) -> Path | None:
        """Train until ``total_iters``; returns the exported final weights (rank 0) or None."""
        from tqdm import tqdm

        lg, ck = self.cfg["log"], self.cfg["checkpoint"]
        self.set_train_mode()
        bar = tqdm(total=self.total_iters, initial=self.iteration, desc="train", dynamic_ncols=True,
                   disable=not (lg["progress"] and self.dist.is_main))
        sums: dict[str, float] = {}
        count = 0
        t0 = time.perf_counter()
        try:
            while self.iteration < self.total_iters:
                values = self.train_iteration()
                count += 1
                for task, terms in values.items():
                    for k, v in terms.items():
                        sums[f"{task}/{k}"] = sums.get(f"{task}/{k}", 0.0) + v
                bar.update(1)
                it = self.iteration
                if it % max(1, int(lg["every_iters"])) == 0 or it == self.total_iters:
                    scalars = reduce_means(sums, count)
                    if self.logger is not None:
                        self.logger.log_scalars(it, (it - 1) // self.iters_per_epoch, self.current_lr_at(it - 1),
                                                time.perf_counter() - t0, scalars)
                    bar.set_postfix({t: f"{scalars.get(f'{t}/loss', float('nan')):.3f}" for t in self.tasks})
                    sums, count = {}, 0
                every = lg["samples_every_iters"]
                if every and (it % int(every) == 0 or it == self.total_iters) and self.logger is not None:
                    self.log_samples()
                end_of_epoch = it % self.iters_per_epoch == 0
                if ((ck["every_iters"] and it % int(ck["every_iters"]) == 0)
                        or (ck["every_epoch"] and end_of_epoch) or it == self.total_iters):
                    self.save()
                for cb in self.callbacks:
                    cb(self)
        finally:
            bar.close()
        out = self.export() if self.dist.is_main else None
        barrier()
        if self.logger is not None:
            self.logger.close()
        return out

    def current_lr_at(self, iteration: int) -> float:
        tr = self.cfg["train"]
        return lr_at(iteration / self.iters_per_epoch, lr=tr["lr"], min_lr=tr["min_lr"],
                     warmup_epochs=tr["warmup_epochs"], epochs=tr["epochs"])

    @torch.no_grad()
    def log_samples(self) -> Path | None:
        """Fuse the first pair of the latest batch of every task in eval mode and write a PNG grid."""
        if self.logger is None or not self._last_batches:
            return None
        self.module.eval()
        rows = []
        try:
            for task in self.tasks:
                batch = self._last_batches[task]
                a = batch["a"][:1].to(self.device)
                b = batch["b"][:1].to(self.device)
                fused = self.module(_normalize(a), _normalize(b), task=task)
                rows.append([a[0], b[0], fused[0]])
        finally:
            self.set_train_mode()
        return self.logger.log_samples(self.iteration, rows)

    def final_state_dict(self) -> dict[str, torch.Tensor]:
        """The weights to ship: EMA averages when EMA is on and ``ema.export``, else the raw weights."""
        if self.ema is not None and self.cfg["ema"]["export"]:
            return self.ema.averaged_state_dict(self.module)
        return {k: v.detach().clone() for k, v in self.module.state_dict().items()}

    def export(self, path: str | os.PathLike | None = None) -> Path:
        """Write the final weights as ``model_final.safetensors`` (model state dict + config metadata)."""
        from fusion.models.checkpoint import save_checkpoint

        target = Path(path) if path is not None else self.output_dir / "model_final.safetensors"
        model = copy.deepcopy(self.module).cpu()
        model.load_state_dict({k: v.cpu() for k, v in self.final_state_dict().items()})
        save_checkpoint(model, target)
        log.info("final weights written to %s", target)
        return target

    def close(self) -> None:
        if self.logger is not None:
            self.logger.close()
        cleanup_distributed()


def train(cfg: dict[str, Any], *, resume: str | os.PathLike | None = None,
          callbacks: Sequence[Callback] = ()) -> Path | None:
    """Build a :class:`Trainer`, run it to the end and release the process group. Returns the exported weights."""
    trainer = Trainer(cfg, resume=resume, callbacks=callbacks)
    try:
        return trainer.fit()
    finally:
        trainer.close()
