"""Perception on fused frames: a :class:`Perceiver` takes an RGB frame and returns it with results drawn on it.

Perceivers are registered by name (:func:`register_perceiver`), mmengine-style. The overlays that need the
perception stack (``segment``: mmsegmentation, ``detect``: ultralytics) live in ``downstream.perception`` and are
found through the ``tcmoa_fusion.perceivers`` entry point, so this package never imports ``downstream``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol, runtime_checkable

import numpy as np

from fusion.errors import ConfigError
from fusion.registry import Registry
from fusion.utils.logging import get_logger

__all__ = ["Perceiver", "register_perceiver", "list_perceivers", "create_perceiver"]

log = get_logger(__name__)

ENTRY_POINT_GROUP = "tcmoa_fusion.perceivers"
PERCEIVERS: Registry[Callable[..., Any]] = Registry(
    "perceiver", group=ENTRY_POINT_GROUP,
    missing_hint=f"install the project with pip so that its {ENTRY_POINT_GROUP} entry points are registered")


@runtime_checkable
class Perceiver(Protocol):
    """Callable ``frame -> overlay``: ``uint8`` RGB ``(H, W, 3)`` in, same shape out, results drawn on it."""

    def __call__(self, frame: np.ndarray) -> np.ndarray: ...


def register_perceiver(name: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Decorator registering a perceiver class or factory under ``name``."""
    return PERCEIVERS.register(name)


def list_perceivers() -> list[str]:
    """Names of the registered perceivers (installed plugins included)."""
    return PERCEIVERS.names()


def _build(name: str, *args: Any, **kwargs: Any) -> Any:
    return PERCEIVERS.get(name)(*args, **kwargs)


def create_perceiver(
    segment: str | None = None,
    *,
    seg_checkpoint: str | None = None,
    detect: str | None = None,
    device: str = "cpu",
    precision: str = "fp32",
    **options: Any,
) -> Perceiver | None:
    """Build the perceiver the command line asks for (at most one of ``segment`` config / ``detect`` weights)."""
    if segment and detect:
        raise ConfigError("choose one perception overlay: --segment or --detect, not both")
    if segment:
        return _build("segment", segment, seg_checkpoint, device=device, **options)
    if detect:
        return _build("detect", detect, device=device, half=precision == "fp16", **options)
    return None
