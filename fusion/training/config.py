"""Training configuration: the defaults, config files with ``_base_`` inheritance, and ``key=value`` overrides.

A configuration is a nested plain dict (JSON/YAML-able, ``weights_only``-safe). Config files are Python files that
define a dict named ``cfg`` (the body is executed with nothing but builtins), or YAML files. Either may name a
``_base_`` file (relative to itself) whose values it overrides, key by key, recursively. Every key must exist in
:data:`DEFAULTS`; a misspelt key is a :class:`~fusion.errors.ConfigError`, not a silently ignored option.

The defaults are the shipped ``configs/fusion/defaults.py`` (which documents every option), read once through
:func:`fusion.utils.config.config_path`: they are defined there and nowhere else.
"""

from __future__ import annotations

import copy
import os
import re
from typing import Any

from fusion.errors import ConfigError
from fusion.tasks import TASKS
from fusion.utils.config import config_path, load_layered_config, read_config_file
from fusion.utils.config import get_dotted as _get
from fusion.utils.config import merge_config as _merge

__all__ = ["DEFAULTS", "default_config", "load_config", "merge_config", "validate_config", "TASK_ORDER"]

TASK_ORDER: tuple[str, ...] = TASKS  # training streams run in the official task order

DEFAULTS: dict[str, Any] = read_config_file(config_path("fusion/defaults.py"))
"""Every option the trainer reads, with its default: the shipped ``configs/fusion/defaults.py``, which says
what each one means."""

_CHOICES: dict[str, tuple[Any, ...]] = {
    "train.step_mode": ("per_task", "sum"),
    "train.amp": ("none", "bf16", "fp16"),
    "data.interpolation": ("bicubic", "bilinear", "area", "nearest"),
    "data.resize": (None, "b_to_a", "a_to_b"),
    "model.init": (None, "codec"),
}
# Values that are free-form dicts/lists: overrides may add keys there.
_OPEN_KEYS = ("model.overrides",)


def default_config() -> dict[str, Any]:
    """A deep copy of :data:`DEFAULTS`."""
    return copy.deepcopy(DEFAULTS)


def merge_config(base: dict[str, Any], update: dict[str, Any], *, strict: bool = True, where: str = "") -> dict:
    """Recursively merge ``update`` into a copy of ``base``; with ``strict`` unknown keys raise ConfigError."""
    return _merge(base, update, strict=strict, where=where, open_keys=_OPEN_KEYS)


def load_config(path: str | os.PathLike | None = None, overrides: dict[str, Any] | None = None) -> dict[str, Any]:
    """Load a config file over :data:`DEFAULTS` (following ``_base_``), then apply ``overrides``.

    Args:
        path: ``.py`` (defines ``cfg``) or ``.yaml`` file, or a shipped config name (``configs/fusion/x.py``);
            ``None`` gives the defaults.
        overrides: nested dict from :func:`fusion.utils.cli.parse_overrides` (``train.lr=1e-4``).

    Raises:
        ConfigError: unreadable file, unknown key, bad value, or a ``_base_`` cycle.
    """
    return load_layered_config(path, overrides, defaults=DEFAULTS, validate=validate_config, open_keys=_OPEN_KEYS)


def validate_config(cfg: dict[str, Any]) -> None:
    """Raise :class:`ConfigError` naming the first invalid value."""
    for key, choices in _CHOICES.items():
        value = _get(cfg, key)
        if value not in choices:
            raise ConfigError(f"{key}={value!r}: expected one of {', '.join(map(repr, choices))}")
    tasks = cfg["data"]["tasks"]
    for name, spec in tasks.items():
        if name not in TASK_ORDER:
            raise ConfigError(f"data.tasks.{name}: unknown task (known: {', '.join(TASK_ORDER)})")
        if not isinstance(spec.get("datasets"), list):
            raise ConfigError(f"data.tasks.{name}.datasets must be a list of dataset specs")
        for i, ds in enumerate(spec["datasets"]):
            if isinstance(ds, str):
                continue
            if not isinstance(ds, dict) or "root" not in ds:
                raise ConfigError(f"data.tasks.{name}.datasets[{i}] must be a path or a dict with 'root'")
            unknown = set(ds) - {"root", "layout", "split", "exclude", "include", "repeat"}
            if unknown:
                raise ConfigError(f"data.tasks.{name}.datasets[{i}]: unknown keys {sorted(unknown)}")
        scale = spec.get("crop_scale")
        if not (isinstance(scale, (list, tuple)) and len(scale) == 2 and 0 < scale[0] <= scale[1] <= 1):
            raise ConfigError(f"data.tasks.{name}.crop_scale={scale!r}: expected [lo, hi] with 0 < lo <= hi <= 1")
        if not isinstance(spec.get("batch_size"), int) or spec["batch_size"] < 1:
            raise ConfigError(f"data.tasks.{name}.batch_size must be a positive int")
    active = [t for t in TASK_ORDER if t in tasks and tasks[t]["datasets"]]
    if active and cfg["data"]["lead_task"] not in active:
        raise ConfigError(
            f"data.lead_task={cfg['data']['lead_task']!r} has no datasets (tasks with data: {', '.join(active)})"
        )
    crop = cfg["data"]["crop_size"]
    if not isinstance(crop, int) or crop <= 0 or crop % 112:
        raise ConfigError(f"data.crop_size={crop!r}: must be a positive multiple of 112 (the model's input unit)")
    tr = cfg["train"]
    for key in ("epochs", "seed"):
        if not isinstance(tr[key], int) or tr[key] < 0:
            raise ConfigError(f"train.{key}={tr[key]!r}: expected a non-negative int")
    for key in ("lr", "min_lr", "weight_decay", "backbone_lr_scale"):
        if not isinstance(tr[key], (int, float)) or tr[key] < 0:
            raise ConfigError(f"train.{key}={tr[key]!r}: expected a non-negative number")
    if tr["warmup_epochs"] < 0:
        raise ConfigError(f"train.warmup_epochs={tr['warmup_epochs']!r}: expected >= 0")
    if not isinstance(tr["freeze"], list) or not all(isinstance(x, str) for x in tr["freeze"]):
        raise ConfigError(f"train.freeze={tr['freeze']!r}: expected a list of regular expressions")
    for pattern in tr["freeze"]:
        try:
            re.compile(pattern)
        except re.error as exc:
            raise ConfigError(f"train.freeze: invalid regular expression {pattern!r} ({exc})") from None
    for key in ("max_iters", "iters_per_epoch", "grad_clip", "threads"):
        v = tr[key]
        if v is not None and (not isinstance(v, (int, float)) or v <= 0):
            raise ConfigError(f"train.{key}={v!r}: expected a positive number or None")
    ck = cfg["checkpoint"]
    if not isinstance(ck["keep_last"], int) or ck["keep_last"] < 1:
        raise ConfigError(f"checkpoint.keep_last={ck['keep_last']!r}: expected an int >= 1")
    if ck["every_iters"] is not None and (not isinstance(ck["every_iters"], int) or ck["every_iters"] < 1):
        raise ConfigError(f"checkpoint.every_iters={ck['every_iters']!r}: expected an int >= 1 or None")
    if not 0 <= cfg["ema"]["decay"] < 1:
        raise ConfigError(f"ema.decay={cfg['ema']['decay']!r}: expected a number in [0, 1)")
