"""One registry class for everything built by name: fusers, stream perceivers (mmengine-style, with plugins).

A :class:`Registry` maps names to factories (classes or functions). Factories arrive three ways:

* ``@registry.register("name")`` in a module of this package;
* *providers*: modules of this package imported lazily on the first lookup that needs them (cheap ones first), so
  that building ``average`` does not import the TC-MoA stack;
* *plugins*: entry points of the group ``registry.group`` (``pyproject.toml``), named after the factory they
  register. This is how ``downstream`` adds its fuser and perceivers without ``fusion`` ever importing it.
"""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Callable, Sequence
from importlib.metadata import entry_points
from typing import Any, Generic, TypeVar

from fusion.errors import ConfigError

__all__ = ["Registry", "declared_keywords"]

F = TypeVar("F")  # what is registered: a factory (fusers, perceivers) or a value (metric profiles)


class Registry(Generic[F]):
    """Named factories of one kind.

    Args:
        kind: what is registered, for messages (``"fusion method"``, ``"perceiver"``).
        group: the entry-point group of plugins (``None``: no plugins).
        providers: modules imported, in order, until a looked-up name is registered.
        missing_hint: appended to the unknown-name error (e.g. how to install plugins).
    """

    def __init__(self, kind: str, *, group: str | None = None, providers: Sequence[str] = (),
                 missing_hint: str = "") -> None:
        self.kind = kind
        self.group = group
        self.providers = tuple(providers)
        self.missing_hint = missing_hint
        self._factories: dict[str, F] = {}

    def register(self, name: str) -> Callable[[F], F]:
        """Decorator registering a class or factory under ``name`` (twice with another factory is an error)."""

        def deco(factory: F) -> F:
            if name in self._factories and self._factories[name] is not factory:
                raise ConfigError(f"{self.kind} {name!r} registered twice")
            self._factories[name] = factory
            return factory

        return deco

    def _load(self, until: str | None = None) -> None:
        """Import providers, then plugins, stopping once ``until`` is registered."""
        for mod in self.providers:
            if until is not None and until in self._factories:
                return
            try:
                importlib.import_module(mod)
            except ModuleNotFoundError as exc:
                # Tolerate an absent provider (or its package); a missing dependency *inside* it is a real error.
                if not exc.name or not (mod == exc.name or mod.startswith(exc.name + ".")):
                    raise
        if self.group is None:
            return
        for ep in entry_points(group=self.group):
            if until is not None and until in self._factories:
                return
            if until is None or ep.name == until:
                ep.load()

    def names(self) -> list[str]:
        """Every registered name, providers and installed plugins included."""
        self._load()
        return sorted(self._factories)

    def __contains__(self, name: object) -> bool:
        if not isinstance(name, str):
            return False
        if name not in self._factories:
            self._load(until=name)
        return name in self._factories

    def get(self, name: str) -> F:
        """The factory registered as ``name``.

        Raises:
            ConfigError: no such name (the message lists the known ones).
        """
        if name not in self:
            known = ", ".join(sorted(self._factories)) or "none"
            hint = f"; {self.missing_hint}" if self.missing_hint else ""
            raise ConfigError(f"unknown {self.kind} {name!r} (known: {known}{hint})")
        return self._factories[name]


def declared_keywords(factory: Callable[..., Any], *, exclude: Sequence[str] = ()) -> dict[str, Any] | None:
    """The keyword arguments ``factory`` declares, with their defaults; ``None`` when it takes ``**kwargs``.

    This is how a registry entry declares its runtime options (``device``, ``compat`` ...): by its signature, as timm's
    ``create_model`` passes keyword arguments through, so callers never probe by catching ``TypeError``.
    """
    if isinstance(factory, type) and factory.__init__ is object.__init__:
        return {}
    target = factory.__init__ if isinstance(factory, type) else factory
    params = list(inspect.signature(target).parameters.values())
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params):
        return None
    return {p.name: p.default for p in params
            if p.kind in (inspect.Parameter.KEYWORD_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
            and p.name not in ("self", *exclude)}
