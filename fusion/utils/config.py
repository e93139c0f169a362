"""Layered plain-dict configurations shared by fusion training and end-to-end finetuning.

A configuration is a nested plain dict over a set of defaults. Config files are Python files that define a dict named
``cfg`` (mmengine style; ``_base_`` may also be a module-level name) or YAML files; either may name a ``_base_`` file
(relative to itself) whose values it overrides key by key, recursively. Every key must exist in the defaults, except
below the *open* sections (free-form dicts such as model overrides), so a misspelt key is a
:class:`~fusion.errors.ConfigError` rather than a silently ignored option.

The configs shipped with the project (the ``configs/`` folder of the source tree) are installed as the package
``tcmoa_configs``; :func:`config_path` is the one way library code finds them (from a source checkout with an
editable install it is that checkout's ``configs/``, from a normal install the installed copy), and
:func:`resolve_config` reads a config name a user or a config file gives: a path that exists as given, else a
shipped config (``configs/seg/x.py`` and ``seg/x.py`` both name ``<shipped>/seg/x.py``).
"""

from __future__ import annotations

import copy
import importlib.util
import os
import re
from collections.abc import Callable, Sequence
from functools import lru_cache
from pathlib import Path, PurePosixPath
from typing import Any

from fusion.errors import ConfigError

__all__ = ["CONFIG_PACKAGE", "config_path", "resolve_config", "shipped_config_root", "read_config_file",
           "merge_config", "load_layered_config", "get_dotted"]

CONFIG_PACKAGE = "tcmoa_configs"
"""The package that holds the shipped configs (``configs/`` of the source tree, mapped in pyproject.toml)."""


@lru_cache(maxsize=1)
def shipped_config_root() -> Path:
    """The folder of the shipped configs.

    Raises:
        ConfigError: the project is not installed (``pip install .`` or ``pip install -e .``).
    """
    spec = importlib.util.find_spec(CONFIG_PACKAGE)
    locations = list(spec.submodule_search_locations or ()) if spec is not None else []
    if not locations:
        raise ConfigError(f"the shipped configs (package {CONFIG_PACKAGE!r}) are not installed: install the project "
                          "(pip install -e . in a checkout)")
    return Path(locations[0])


def _shipped_name(name: str | os.PathLike) -> PurePosixPath | None:
    rel = PurePosixPath(str(name).replace(os.sep, "/"))
    if rel.parts[:1] == ("configs",):
        rel = PurePosixPath(*rel.parts[1:])
    if rel.is_absolute() or ".." in rel.parts or rel.parts[:1] == (".",):
        return None
    return rel


def config_path(name: str | os.PathLike = "") -> Path:
    """The shipped config file or folder ``name``, e.g. ``config_path("seg/fcn_r18-slim_mfnet-synthetic.py")`` or
    ``config_path("det")`` (a leading ``configs/`` is accepted).

    Raises:
        ConfigError: no such shipped config.
    """
    rel = _shipped_name(name)
    root = shipped_config_root()
    path = root / rel if rel is not None else None
    if path is None or not path.exists():
        folder = root / (rel.parent if rel is not None else "")
        known = sorted(p.name for p in folder.iterdir() if not p.name.startswith(("_", "."))) if folder.is_dir() else []
        hint = f" (shipped there: {', '.join(known)})" if known else ""
        raise ConfigError(f"{name}: no such shipped config{hint}")
    return path


def resolve_config(path: str | os.PathLike) -> Path:
    """The config file ``path`` names: ``path`` itself when it exists (or is absolute), else the shipped config of
    that name (``configs/seg/x.py`` or ``seg/x.py``), else ``path`` unchanged (its reader reports it missing)."""
    p = Path(path)
    if p.exists() or p.is_absolute():
        return p
    try:
        return config_path(p)
    except ConfigError:
        return p


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

    ``path`` is read through :func:`resolve_config` (a shipped config name works from any folder).

    Raises:
        ConfigError: unreadable file, unknown key, bad value (from ``validate``), or a ``_base_`` cycle.
    """
    if _depth > 8:
        raise ConfigError(f"{path}: _base_ chain deeper than 8 (a cycle?)")
    cfg = copy.deepcopy(defaults)
    if path is not None:
        p = resolve_config(path)
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
