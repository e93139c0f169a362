"""The :class:`Fuser` interface shared by TC-MoA and every baseline, and the one factory :func:`create_fuser`.

Conventions (every fuser, every pipeline):

* ``a`` and ``b`` are the two sources as ``uint8`` numpy arrays in RGB order, ``(H, W, 3)``; single-channel sources
  are replicated to three channels by the readers. Roles follow the official TC-MoA code:
  ``vif``: a = visible, b = infrared; ``mef``: a = over-exposed, b = under-exposed; ``mff``: a = far focus,
  b = near focus. Medical pairs use ``vif``.
* The result is a ``uint8`` RGB array ``(H, W, 3)`` of the same height and width as the sources.
* ``fuse_batch`` fuses several pairs at once; fusers that gain from batching (TC-MoA on a GPU) override it.

A fuser is named by a spec string ``name`` or ``name:argument`` (e.g. ``average``, ``tcmoa_base:/ckpt.pth``);
extra keyword settings go to the fuser's constructor.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from fusion.errors import ConfigError, InputError
from fusion.registry import Registry, declared_keywords
from fusion.tasks import TASKS
from fusion.utils.checks import check_image_pair

__all__ = ["TASKS", "FUSERS", "Fuser", "register_fuser", "create_fuser", "fuser_settings", "accepted_options",
           "list_fusers", "check_pair"]

ENTRY_POINT_GROUP = "tcmoa_fusion.fusers"
# Providers are imported lazily so that ``create_fuser("average")`` does not pay for building the TC-MoA stack.
# Fusers of other packages (``downstream``'s ``tcmoa_e2e``) are plugins: entry points of ENTRY_POINT_GROUP named
# after the fuser, so this package never imports them by name.
FUSERS: Registry[Callable[..., Fuser]] = Registry(
    "fusion method", group=ENTRY_POINT_GROUP, providers=("fusion.fusers.baselines", "fusion.fusers.tcmoa"))


def check_pair(a: np.ndarray, b: np.ndarray, name: str = "pair") -> None:
    """Raise :class:`InputError` unless ``a`` and ``b`` are ``uint8`` ``(H, W, 3)`` arrays of equal size."""
    check_image_pair(a, b, name)


class Fuser(ABC):
    """Fuse a pair of registered source images into one image.

    Subclasses set :attr:`name`, implement :meth:`fuse` and report their settings in :meth:`settings`.
    """

    name: str = "fuser"
    tasks: tuple[str, ...] = TASKS

    @abstractmethod
    def fuse(self, a: np.ndarray, b: np.ndarray, task: str = "vif") -> np.ndarray:
        """Fuse one pair: ``uint8`` ``(H, W, 3)`` RGB in, ``uint8`` ``(H, W, 3)`` RGB out."""

    def fuse_batch(
        self, a: Sequence[np.ndarray], b: Sequence[np.ndarray], task: str = "vif"
    ) -> list[np.ndarray]:
        """Fuse several pairs (sizes may differ between pairs). The default loops over :meth:`fuse`."""
        if len(a) != len(b):
            raise InputError(f"{self.name}: got {len(a)} a-images but {len(b)} b-images")
        return [self.fuse(x, y, task) for x, y in zip(a, b, strict=True)]

    def settings(self) -> dict[str, Any]:
        """The settings that define this fuser's output (written next to results for reproducibility)."""
        return {}

    def check_task(self, task: str) -> None:
        if task not in self.tasks:
            raise InputError(f"{self.name}: task {task!r} not supported (supported: {', '.join(self.tasks)})")

    def __call__(self, a: np.ndarray, b: np.ndarray, task: str = "vif") -> np.ndarray:
        return self.fuse(a, b, task)

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.settings().items())
        return f"{type(self).__name__}({args})"


def register_fuser(name: str) -> Callable[[Callable[..., Fuser]], Callable[..., Fuser]]:
    """Decorator registering a fuser class or factory under ``name``.

    The factory is called as ``factory(arg, **settings)`` when the spec has an argument (``name:arg``),
    else ``factory(**settings)``.
    """
    return FUSERS.register(name)


def list_fusers() -> list[str]:
    """Names of all registered fusers."""
    return FUSERS.names()


def create_fuser(spec: str | Fuser, **settings: Any) -> Fuser:
    """Build a fuser from ``name`` or ``name:argument`` (e.g. ``tcmoa_base:/path/ckpt.pth``)."""
    if isinstance(spec, Fuser):
        return spec
    from fusion.fusers.spec import FuserSpec  # spec.py builds through this function

    parsed = FuserSpec.parse(spec)
    factory = FUSERS.get(parsed.name)
    _check_settings(parsed.name, factory, settings)
    return factory(parsed.checkpoint, **settings) if parsed.checkpoint is not None else factory(**settings)


def fuser_settings(name: str) -> dict[str, Any] | None:
    """The keyword settings fuser ``name`` accepts, with their defaults (``None`` if it takes any keyword)."""
    return declared_keywords(FUSERS.get(name), exclude=("checkpoint",))


def accepted_options(spec: str, options: dict[str, Any]) -> dict[str, Any]:
    """The subset of runtime ``options`` (``device``, ``amp_dtype``, ``compat`` ...) that fuser ``spec`` declares.

    A fuser declares its settings by its constructor's keywords; one that takes ``**settings`` (TC-MoA) takes all.
    Nothing is probed by catching ``TypeError``.
    """
    from fusion.fusers.spec import FuserSpec

    accepted = fuser_settings(FuserSpec.parse(spec).name)
    return dict(options) if accepted is None else {k: v for k, v in options.items() if k in accepted}


def _check_settings(name: str, factory: Callable[..., Any], settings: dict[str, Any]) -> None:
    accepted = declared_keywords(factory, exclude=("checkpoint",))
    if accepted is None:
        return
    unknown = sorted(set(settings) - set(accepted))
    if unknown:
        known = ", ".join(sorted(accepted)) or "none"
        raise ConfigError(f"fusion method {name!r}: unknown setting(s) {', '.join(unknown)} (accepted: {known})")
