"""Layered plain-dict configurations shared by fusion training and end-to-end finetuning.

A configuration is a nested plain dict over a set of defaults. Config files are Python files that define a dict named
``cfg`` (mmengine style; ``_base_`` may also be a module-level name) or YAML files; either may name a ``_base_`` file
(relative to itself) whose values it overrides key by key, recursively. Every key must exist in the defaults, except
below the *open* sections (free-form dicts such as model overrides), so a misspelt key is a
:class:`~fusion.errors.ConfigError` rather than a silently ignored option.
"""

from __future__ import annotations

import copy
import os
import re
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from fusion.errors import ConfigError

__all__ = ["read_config_file", "merge_config", "load_layered_config", "get_dotted"]


def _yaml_loader():
    """PyYAML's SafeLoader that also reads ``1e-4`` as a float (YAML 1.1 wants ``1.0e-4``; 1.2 and JSON do not)."""
    import yaml

    class Loader(yaml.SafeLoader):
        pass

    float_re = re.compile(
        r"""^(?:[-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+]?[0-9]+)?
        |[-+]?(?:[0-9][0-9_]*)(?:[eE][-+]?[0-9]+)
        |\.[0-9_]+(?:[eE][-+]?[0-9]+)?
        |[-+]?\.(?:inf|Inf|INF)
        |\.(?:nan|NaN|NAN))$""",
        re.X,
    )
    Loader.add_implicit_resolver("tag:yaml.org,2002:float", float_re, list("-+0123456789."))
    return Loader


def read_config_file(path: str | os.PathLike) -> dict[str, Any]:
    """Read a ``.py`` (defining ``cfg``) or ``.yaml``/``.yml`` config file into a fresh dict (``_base_`` kept)."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: no such config file")
    suffix = path.suffix.lower()
    if suffix in (".yaml", ".yml"):
        import yaml

        try:
            data = yaml.load(path.read_text(encoding="utf-8"), Loader=_yaml_loader()) or {}
        except yaml.YAMLError as exc:
            raise ConfigError(f"{path}: invalid YAML ({exc.__class__.__name__})") from None
    elif suffix == ".py":
        scope: dict[str, Any] = {}
        try:
            code = compile(path.read_text(encoding="utf-8"), str(path), "exec")
            exec(code, scope)  # noqa: S102 - config files are the user's own code, like mmengine configs
        except Exception as exc:
            raise ConfigError(f"{path}: cannot execute config ({exc.__class__.__name__}: {exc})") from None
        if not isinstance(scope.get("cfg"), dict):
            raise ConfigError(f"{path}: a Python config must define a dict named 'cfg'")
        data = dict(scope["cfg"])
        if "_base_" in scope and "_base_" not in data:  # mmengine style: _base_ as a module-level name
            data["_base_"] = scope["_base_"]
    else:
        raise ConfigError(f"{path}: config files must be .py, .yaml or .yml")
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: the config must be a mapping, got {type(data).__name__}")
    return copy.deepcopy(data)


def _is_open(section: str, open_keys: Sequence[str]) -> bool:
    return any(section == k or section.startswith(f"{k}.") for k in open_keys)


def merge_config(
    base: dict[str, Any], update: dict[str, Any], *, strict: bool = True, where: str = "",
    open_keys: Sequence[str] = (),
) -> dict[str, Any]:
    """Recursively merge ``update`` into a copy of ``base``.

    With ``strict``, a key missing from ``base`` raises :class:`ConfigError`, except inside the dotted sections named
    in ``open_keys`` (free-form dicts, which accept new keys and are merged like the rest).
    """
    out = copy.deepcopy(base)
    open_here = _is_open(where.rstrip("."), open_keys)
    for key, value in update.items():
        name = f"{where}{key}"
        if strict and key not in out and not open_here:
            raise ConfigError(f"unknown config key {name!r} (known here: {', '.join(sorted(out))})")
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merge_config(out[key], value, strict=strict, where=f"{name}.", open_keys=open_keys)
        else:
            out[key] = copy.deepcopy(value)
    return out


def load_layered_config(
    path: str | os.PathLike | None,
    overrides: dict[str, Any] | None,
    *,
    defaults: dict[str, Any],
    validate: Callable[[dict[str, Any]], None],
    open_keys: Sequence[str] = (),
    _depth: int = 0,
) -> dict[str, Any]:
    """Load ``path`` over ``defaults`` (following ``_base_``), apply ``overrides``, then ``validate`` the result.

    Raises:
        ConfigError: unreadable file, unknown key, bad value (from ``validate``), or a ``_base_`` cycle.
    """
    if _depth > 8:
        raise ConfigError(f"{path}: _base_ chain deeper than 8 (a cycle?)")
    cfg = copy.deepcopy(defaults)
    if path is not None:
        p = Path(path)
        data = read_config_file(p)
        base = data.pop("_base_", None)
        if base is not None:
            cfg = load_layered_config((p.parent / base).resolve(), None, defaults=defaults, validate=validate,
                                      open_keys=open_keys, _depth=_depth + 1)
        cfg = merge_config(cfg, data, open_keys=open_keys)
    if overrides:
        cfg = merge_config(cfg, overrides, open_keys=open_keys)
    if _depth == 0:
        validate(cfg)
    return cfg


def get_dotted(cfg: dict[str, Any], dotted: str) -> Any:
    """``cfg["a"]["b"]`` for ``"a.b"``."""
    node: Any = cfg
    for part in dotted.split("."):
        node = node[part]
    return node
