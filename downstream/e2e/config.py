"""Configuration of end-to-end finetuning: defaults, config files with ``_base_``, ``key=value`` overrides, checks.

A configuration is a nested plain dict (``weights_only``-safe, stored in every checkpoint). Config files are Python
files defining a dict ``cfg`` (optionally ``_base_``: another file, relative to this one, whose values this one
overrides key by key) or YAML files. Every key must exist in :data:`DEFAULTS` (a misspelt key is a
:class:`~fusion.errors.ConfigError`). :data:`DEFAULTS` is the shipped ``configs/e2e/defaults.py`` (which documents
each option), read through :func:`fusion.utils.config.config_path`. ``segmenter.config`` names an mmseg config file:
a path that exists, or a shipped one (``configs/seg/<name>.py``, found from any folder, installed or not).

Schedules (``schedule.mode``):

* ``joint`` (default; the SegMiF / TarDAL-style joint objective): every iteration fuses with gradients and takes one
  step of ``λ_fusion · L_fusion + λ_seg · L_seg`` on the TC-MoA adapters and the segmenter together;
* ``alternating`` (SeAFusion-style rounds): ``schedule.seg_iters`` segmenter-only steps on the current fuser's
  (detached) outputs, then ``schedule.fusion_iters`` fuser-only steps of ``λ_fusion · L_fusion + λ_seg · L_seg``
  through the frozen segmenter (BN statistics fixed), with ``λ_seg`` growing by ``schedule.lambda_seg_growth``
  per round;
* ``frozen``: the reference pipeline, the fuser never changes (eval mode, no gradients) and only the segmenter
  trains on its outputs; the comparison trains it with the very same schedule, data order and seed.

In every mode the first ``train.seg_warmup_iters`` iterations are ``frozen`` iterations (a randomly initialised
segmenter's gradients would only push the fuser around).
"""

from __future__ import annotations

import copy
import os
from pathlib import Path
from typing import Any

from fusion.errors import ConfigError
from fusion.tasks import TASKS
from fusion.utils.config import config_path, load_layered_config, read_config_file, resolve_config
from fusion.utils.config import get_dotted as _get
from fusion.utils.config import merge_config as _merge

__all__ = ["DEFAULTS", "MODES", "DOWNSTREAMS", "default_config", "load_config", "merge_config", "validate_config"]

MODES: tuple[str, ...] = ("joint", "alternating", "frozen")

DEFAULTS: dict[str, Any] = read_config_file(config_path("e2e/defaults.py"))
"""Every option the finetuning reads, with its default: the shipped ``configs/e2e/defaults.py``, which says
what each one means."""

DOWNSTREAMS: tuple[str, ...] = ("segmentation", "detection")

_CHOICES: dict[str, tuple[Any, ...]] = {
    "downstream": DOWNSTREAMS,
    "data.layout": ("auto", "llvip", "m3fd", "msrs"),
    "schedule.mode": MODES,
    "train.amp": ("none", "bf16", "fp16"),
    "model.init": ("auto", "checkpoint", "codec", "random"),
    "model.task": TASKS,
    "loss.fusion_phase": ("warmup", "main"),
}
# free-form sections: keys inside them are not checked against DEFAULTS
_OPEN_KEYS = ("model.overrides", "segmenter.cfg_options", "eval.band", "detector.hyp")


def default_config() -> dict[str, Any]:
    """A deep copy of :data:`DEFAULTS`."""
    return copy.deepcopy(DEFAULTS)


def merge_config(base: dict[str, Any], update: dict[str, Any], *, where: str = "") -> dict[str, Any]:
    """Recursively merge ``update`` into a copy of ``base``; unknown keys raise :class:`ConfigError`."""
    return _merge(base, update, where=where, open_keys=_OPEN_KEYS)


def load_config(path: str | os.PathLike | None = None, overrides: dict[str, Any] | None = None) -> dict[str, Any]:
    """Load a config file over :data:`DEFAULTS` (following ``_base_``), apply ``overrides``, validate.

    Args:
        path: ``.py`` (defines ``cfg``) or ``.yaml`` file, or a shipped config name (``configs/e2e/x.py``);
            ``None`` gives the defaults.
        overrides: nested dict, e.g. from :func:`fusion.utils.cli.parse_overrides` (``train.iters=50``).

    Raises:
        ConfigError: unreadable file, unknown key, bad value, or a ``_base_`` cycle.
    """
    cfg = load_layered_config(path, overrides, defaults=DEFAULTS, validate=validate_config, open_keys=_OPEN_KEYS)
    seg = cfg["segmenter"]["config"]
    # a shipped config name: its installed path (a path given as it exists stays as is)
    if cfg["downstream"] == "segmentation" and not Path(seg).exists():
        cfg["segmenter"]["config"] = str(resolve_config(seg))
    return cfg


def _positive_int(cfg: dict[str, Any], key: str, *, zero: bool = False, none: bool = False) -> None:
    v = _get(cfg, key)
    if v is None and none:
        return
    if not isinstance(v, int) or isinstance(v, bool) or v < (0 if zero else 1):
        raise ConfigError(f"{key}={v!r}: expected an int >= {0 if zero else 1}" + (" or None" if none else ""))


def _number(cfg: dict[str, Any], key: str, *, none: bool = False, positive: bool = False) -> None:
    v = _get(cfg, key)
    if v is None and none:
        return
    if not isinstance(v, (int, float)) or isinstance(v, bool) or v < 0 or (positive and v == 0):
        raise ConfigError(f"{key}={v!r}: expected a {'positive' if positive else 'non-negative'} number"
                          + (" or None" if none else ""))


def validate_config(cfg: dict[str, Any]) -> None:
    """Raise :class:`ConfigError` naming the first invalid value."""
    for key, choices in _CHOICES.items():
        value = _get(cfg, key)
        if value not in choices:
            raise ConfigError(f"{key}={value!r}: expected one of {', '.join(map(repr, choices))}")
    crop = cfg["data"]["crop_size"]
    if isinstance(crop, int):
        crop = [crop, crop]
    if not (isinstance(crop, (list, tuple)) and len(crop) == 2
            and all(isinstance(c, int) and not isinstance(c, bool) and c > 0 and c % 112 == 0 for c in crop)):
        raise ConfigError(f"data.crop_size={cfg['data']['crop_size']!r}: expected [H, W], positive multiples of 112 "
                          "(TC-MoA's input unit)")
    if cfg["downstream"] == "segmentation" and (not isinstance(cfg["segmenter"]["config"], str)
                                                or not cfg["segmenter"]["config"]):
        raise ConfigError("segmenter.config: the mmseg config file of the segmenter is required")
    det = cfg["detector"]
    if cfg["downstream"] == "detection":
        if not isinstance(det["model"], str) or not det["model"]:
            raise ConfigError("detector.model: an ultralytics model yaml or a local .pt is required")
        classes = det["classes"]
        if classes is not None and not (isinstance(classes, (list, tuple)) and classes
                                        and all(isinstance(c, str) for c in classes)
                                        and len({c.lower() for c in classes}) == len(classes)):
            raise ConfigError(f"detector.classes={classes!r}: expected a non-empty list of distinct class names or "
                              "None")  # fmt: skip
        if not isinstance(det["hyp"], dict):
            raise ConfigError(f"detector.hyp={det['hyp']!r}: expected a mapping of ultralytics loss settings")
        if det["checkpoint"] is not None and not isinstance(det["checkpoint"], str):
            raise ConfigError(f"detector.checkpoint={det['checkpoint']!r}: expected a file path or None")
        for key in ("conf", "iou"):
            v = det[key]
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not 0 <= v <= 1:
                raise ConfigError(f"detector.{key}={v!r}: expected a number in [0, 1]")
    for key in ("data.batch_size", "data.eval_batch_size", "train.iters", "schedule.seg_iters",
                "schedule.fusion_iters", "checkpoint.keep_last", "log.every_iters"):
        _positive_int(cfg, key)
    for key in ("data.num_workers", "train.seg_warmup_iters", "train.warmup_iters", "train.seed"):
        _positive_int(cfg, key, zero=True)
    for key in ("data.max_test", "checkpoint.every_iters", "train.threads"):
        _positive_int(cfg, key, none=True)
    for key in ("loss.lambda_fusion", "loss.lambda_seg", "schedule.lambda_seg_growth", "train.lr_fusion",
                "train.lr_seg", "train.min_lr_ratio", "train.weight_decay_fusion", "train.weight_decay_seg"):
        _number(cfg, key)
    _number(cfg, "train.grad_clip", none=True, positive=True)
    if not 0 <= cfg["data"]["hflip"] <= 1:
        raise ConfigError(f"data.hflip={cfg['data']['hflip']!r}: expected a probability in [0, 1]")
    if cfg["train"]["min_lr_ratio"] > 1:
        raise ConfigError(f"train.min_lr_ratio={cfg['train']['min_lr_ratio']!r}: expected a fraction in [0, 1]")
    if cfg["train"]["seg_warmup_iters"] > cfg["train"]["iters"]:
        raise ConfigError(f"train.seg_warmup_iters={cfg['train']['seg_warmup_iters']} exceeds "
                          f"train.iters={cfg['train']['iters']}")
    betas = cfg["train"]["betas"]
    if not (isinstance(betas, (list, tuple)) and len(betas) == 2 and all(0 <= float(b) < 1 for b in betas)):
        raise ConfigError(f"train.betas={betas!r}: expected two numbers in [0, 1)")
    if cfg["model"]["init"] == "checkpoint" and not cfg["model"]["checkpoint"]:
        raise ConfigError("model.init='checkpoint' needs model.checkpoint")
    if cfg["model"]["init"] in ("codec", "random") and cfg["model"]["checkpoint"]:
        raise ConfigError(f"model.init={cfg['model']['init']!r} and model.checkpoint are exclusive "
                          "(the initialisation would be overwritten)")
    syn = cfg["data"]["synthetic"]
    for key in ("n", "height", "width"):
        if not isinstance(syn.get(key), int) or syn[key] < 1:
            raise ConfigError(f"data.synthetic.{key}={syn.get(key)!r}: expected a positive int")
    cross = syn.get("thermal_crossover")
    if isinstance(cross, bool) or not isinstance(cross, (int, float)) or not 0 <= cross <= 1:
        raise ConfigError(f"data.synthetic.thermal_crossover={cross!r}: expected a probability in [0, 1]")
    freeze = cfg["model"]["freeze"]
    if not isinstance(freeze, (list, tuple)) or not all(isinstance(f, str) for f in freeze):
        raise ConfigError(f"model.freeze={freeze!r}: expected a list of parameter-name patterns (fnmatch)")
    metrics = cfg["eval"]["metrics"]
    if not isinstance(metrics, (list, tuple)) or not all(isinstance(m, str) for m in metrics):
        raise ConfigError(f"eval.metrics={metrics!r}: expected a list of metric names")
    for name, tol in cfg["eval"]["band"].items():
        number = isinstance(tol, (int, float)) and not isinstance(tol, bool)
        pair = isinstance(tol, (list, tuple)) and len(tol) == 2 and all(
            v is None or (isinstance(v, (int, float)) and not isinstance(v, bool)) for v in tol)
        ordered = pair and (tol[0] is None or tol[0] <= 0) and (tol[1] is None or tol[1] >= 0)
        if not ((number and tol >= 0) or ordered):
            raise ConfigError(f"eval.band.{name}={tol!r}: expected a relative tolerance t >= 0 (meaning ±t) or "
                              "[low <= 0, high >= 0] (None: no limit on that side)")
