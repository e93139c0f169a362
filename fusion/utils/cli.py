"""Conventions shared by the scripts in ``pipelines/``.

* :func:`run_cli` turns a :class:`~fusion.errors.FusionError` into one line on stderr and exit status 2.
* One override grammar in every script: positional ``key=value`` arguments (dotted keys for nested options, values
  read as Python literals when they parse as one), as ultralytics and mmengine users know it; fuser settings are the
  section ``fuser.<setting>=<value>``. :func:`script_positionals` separates them from plain positionals,
  :func:`parse_overrides` reads them into a nested dict, :func:`pop_section` takes the ``fuser`` part out.
* Lists are comma-separated everywhere (``--inputs ir,vis,gff``); :func:`comma_list` also accepts them space-separated.
  In list options that take several words (``--inputs ir vis``), a word with a dotted key (``fuser.device=cuda``) is
  an override, not an item (:func:`split_list_overrides`).
* A script reads its positionals with :func:`script_positionals` (its plain arguments and its ``key=value``
  overrides); old spellings stay as hidden aliases that log one line through :func:`deprecated` and become
  overrides through :func:`legacy_overrides`.
"""

from __future__ import annotations

import ast
import os
import sys
from collections.abc import Callable, Iterable
from typing import Any

from fusion.errors import ConfigError, FusionError
from fusion.utils.logging import get_logger

__all__ = ["run_cli", "parse_overrides", "apply_overrides", "pop_section", "comma_list",
           "script_positionals", "split_list_overrides", "deprecated", "legacy_overrides"]

log = get_logger(__name__)


def run_cli(main: Callable[[], int | None]) -> None:
    """Run ``main`` and exit; project errors become ``error: <message>`` and status 2."""
    try:
        code = main()
    except FusionError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)
    except OSError as exc:  # a full or read-only disk met outside the atomic writers
        where = f"{exc.filename}: " if exc.filename else ""
        print(f"error: {where}{exc.strerror or exc}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        sys.exit(130)
    sys.exit(int(code or 0))


def _parse_value(text: str) -> Any:
    low = text.lower()
    if low in ("true", "false"):
        return low == "true"
    if low in ("none", "null"):
        return None
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text


def parse_overrides(items: Iterable[str]) -> dict[str, Any]:
    """Parse ``["a.b=1", "name=x"]`` into ``{"a": {"b": 1}, "name": "x"}``.

    Values are Python literals when they parse as one (numbers, lists, tuples, booleans, ``None``), else strings.
    """
    out: dict[str, Any] = {}
    for item in items:
        if "=" not in item:
            raise ConfigError(f"override {item!r}: expected key=value")
        key, value = item.split("=", 1)
        key = key.strip()
        if not key:
            raise ConfigError(f"override {item!r}: empty key")
        node = out
        parts = key.split(".")
        for part in parts[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ConfigError(f"override {item!r}: {part!r} is both a value and a section")
        node[parts[-1]] = _parse_value(value.strip())
    return out


def apply_overrides(cfg: dict[str, Any], overrides: dict[str, Any], *, strict: bool = True, _prefix: str = "") -> dict:
    """Merge ``overrides`` into ``cfg`` in place; with ``strict``, unknown keys are a :class:`ConfigError`."""
    for key, value in overrides.items():
        name = f"{_prefix}{key}"
        if strict and key not in cfg:
            raise ConfigError(f"unknown option {name!r} (known: {', '.join(sorted(cfg))})")
        if isinstance(value, dict) and isinstance(cfg.get(key), dict):
            apply_overrides(cfg[key], value, strict=strict, _prefix=f"{name}.")
        else:
            cfg[key] = value
    return cfg


def pop_section(overrides: dict[str, Any], section: str) -> dict[str, Any]:
    """Remove and return ``overrides[section]`` (``{}`` when absent); a non-dict value is a :class:`ConfigError`."""
    value = overrides.pop(section, {})
    if not isinstance(value, dict):
        raise ConfigError(f"{section}={value!r}: expected {section}.<key>=<value>")
    return value


def comma_list(values: str | Iterable[str] | None) -> list[str]:
    """``"a,b"`` or ``["a,b", "c"]`` -> ``["a", "b", "c"]`` (empty items dropped)."""
    if values is None:
        return []
    items = [values] if isinstance(values, str) else list(values)
    return [part.strip() for item in items for part in str(item).split(",") if part.strip()]


def _is_override(token: str, *, dotted: bool = False) -> bool:
    if "=" not in token:
        return False
    parts = token.split("=", 1)[0].split(".")
    return all(part.isidentifier() for part in parts) and (len(parts) > 1 or not dotted)


def script_positionals(tokens: Iterable[str | None], *, max_plain: int, plain_name: str) -> tuple[list[str], list[str]]:
    """``(plain, overrides)`` of a script's positional words (``None`` entries, from ``nargs="?"``, are dropped).

    A word is an override when the part before its first ``=`` is a dotted identifier and it does not name an
    existing file or folder (so ``runs/a=b`` stays plain). More than
    ``max_plain`` plain words is a :class:`ConfigError` (``plain_name`` says what a plain word is).
    """
    plain: list[str] = []
    overrides: list[str] = []
    for tok in tokens:
        if tok is None:
            continue
        if _is_override(tok) and not os.path.exists(tok):
            overrides.append(tok)
        else:
            plain.append(tok)
    if len(plain) > max_plain:
        extra = plain[max_plain]
        expected = f"at most {max_plain} {plain_name}" if max_plain else f"no {plain_name}"
        raise ConfigError(f"unexpected argument {extra!r}: expected {expected}, then key=value overrides")
    return plain, overrides


def split_list_overrides(values: Iterable[str] | None) -> tuple[list[str], list[str]]:
    """``(items, overrides)`` of a list option that takes several words: ``--inputs ir vis fuser.device=cuda`` gives
    ``(["ir", "vis"], ["fuser.device=cuda"])``. Only words with a dotted key count as overrides (``LABEL=INPUT``
    items stay items); the items are then split at commas by :func:`comma_list`."""
    items: list[str] = []
    overrides: list[str] = []
    for value in values or ():
        (overrides if _is_override(value, dotted=True) else items).append(value)
    return comma_list(items), overrides


def deprecated(old: str, new: str) -> None:
    """Log one line: the spelling ``old`` still works but ``new`` is the one to use."""
    log.warning("%s is deprecated; use %s", old, new)


def legacy_overrides(items: Iterable[str] | None, *, option: str, section: str | None = None) -> list[str]:
    """The ``KEY=VALUE`` values of a deprecated option (``--set``, ``--cfg-options``...) as override tokens of the
    one grammar (``section.KEY=VALUE`` with a ``section``), with one deprecation line when there are any."""
    items = list(items or ())
    if not items:
        return []
    for item in items:
        if "=" not in item or not item.split("=", 1)[0].strip():
            raise ConfigError(f"{option} {item!r}: expected KEY=VALUE")
    prefix = f"{section}." if section else ""
    deprecated(f"{option} KEY=VALUE", f"positional {prefix}KEY=VALUE (e.g. {prefix}{items[0].strip()})")
    return [f"{prefix}{item.strip()}" for item in items]
