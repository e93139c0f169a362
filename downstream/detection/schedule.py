"""Training schedules for the detector: ultralytics-style YAML files of train arguments plus ``model``.

A schedule is a flat dict of ultralytics ``train()`` arguments (the keys of ``ultralytics/cfg/default.yaml``) and
``model`` (a model YAML such as ``yolov8n.yaml``/``yolo11s.yaml``, or a local ``.pt``). Files live in the shipped
``configs/det/`` (:func:`fusion.utils.config.config_path`); :func:`load_schedule` accepts a name from there or a
path, then applies ``key=value`` overrides.
Keys that the pipeline itself sets (data, project, name, device, ...) are refused with a clear message.
"""

from __future__ import annotations

import importlib.util
import os
from functools import lru_cache
from pathlib import Path
from typing import Any

import yaml

from fusion.errors import ConfigError
from fusion.utils.cli import parse_overrides
from fusion.utils.config import config_path, resolve_config

__all__ = ["CONFIG_DIR", "RESERVED_KEYS", "list_schedules", "load_schedule", "ultralytics_arg_names"]

CONFIG_DIR = config_path("det")
"""The shipped schedules (``configs/det``)."""
RESERVED_KEYS = {
    "data": "the pipeline writes one dataset YAML per input",
    "project": "runs go to <out>/train",
    "name": "runs are named after the input",
    "exist_ok": "set by the pipeline",
    "mode": "set by the pipeline",
    "task": "only detection is supported",
    "device": "use --device",
    "resume": "reruns reuse finished trainings automatically",
    "source": "not a training argument",
}


@lru_cache(maxsize=1)
def ultralytics_arg_names() -> frozenset[str]:
    """Argument names of the installed ultralytics (read from its default.yaml, without importing ultralytics)."""
    spec = importlib.util.find_spec("ultralytics")
    if spec is None or not spec.submodule_search_locations:
        raise ConfigError("ultralytics is not installed (pip install ultralytics)")
    default = Path(next(iter(spec.submodule_search_locations))) / "cfg" / "default.yaml"
    return frozenset(yaml.safe_load(default.read_text(encoding="utf-8")))


def list_schedules() -> list[str]:
    """Names of the schedules shipped in ``configs/det/``."""
    return sorted(p.stem for p in CONFIG_DIR.glob("*.yaml"))


def _resolve(name_or_path: str | os.PathLike) -> Path:
    p = Path(name_or_path)
    if p.suffix in (".yaml", ".yml"):
        p = resolve_config(p)  # a path as given, else a shipped one (configs/det/x.yaml from any folder)
        if not p.is_file():
            raise ConfigError(f"{p}: schedule file not found")
        return p
    shipped = CONFIG_DIR / f"{p.name}.yaml"
    if shipped.is_file():
        return shipped
    raise ConfigError(f"schedule {str(name_or_path)!r} not found (shipped: {', '.join(list_schedules())}; or a .yaml)")


def _check(cfg: dict[str, Any], source: str) -> None:
    known = ultralytics_arg_names()
    for key in cfg:
        if key in RESERVED_KEYS:
            raise ConfigError(f"{source}: key {key!r} cannot be set here ({RESERVED_KEYS[key]})")
        if key not in known:
            raise ConfigError(f"{source}: unknown training argument {key!r} (see ultralytics/cfg/default.yaml)")
    if not cfg.get("model"):
        raise ConfigError(f"{source}: 'model' is required (e.g. yolov8n.yaml or a local .pt)")
    for key in ("epochs", "imgsz", "batch"):
        if key in cfg and (not isinstance(cfg[key], int) or isinstance(cfg[key], bool) or cfg[key] < 1):
            if not (key == "batch" and cfg[key] == -1):
                raise ConfigError(f"{source}: {key}={cfg[key]!r} must be a positive integer")


def load_schedule(
    name_or_path: str | os.PathLike = "llvip", overrides: list[str] | dict[str, Any] | None = None
) -> dict[str, Any]:
    """Read a schedule and apply overrides (``["epochs=5", "model=yolo11n.yaml"]`` or a dict).

    Raises:
        ConfigError: missing file, not a mapping, an unknown or reserved key, or a bad value.
    """
    path = _resolve(name_or_path)
    try:
        cfg = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError(f"{path}: cannot read schedule ({exc.__class__.__name__})") from None
    if not isinstance(cfg, dict):
        raise ConfigError(f"{path}: a schedule must be a mapping of key: value")
    cfg = dict(cfg)
    _check(cfg, str(path))
    if overrides:
        extra = parse_overrides(overrides) if isinstance(overrides, list) else dict(overrides)
        for key, value in extra.items():
            if isinstance(value, dict):
                raise ConfigError(f"override {key!r}: schedules are flat (no dotted keys)")
        _check({**cfg, **extra}, "override")
        cfg.update(extra)
    return cfg
