"""Given detectors built by name (``det_eval.py --detector NAME``): detectors that need no training and no file.

YOLO detectors are trained per input or given as a weights file (``--det-checkpoint``); the detectors registered
here come with a package instead. Each one is a class with ``name``, ``channels``, ``display_score`` (the score
from which pictures draw a box), ``record()`` and ``predict(image_paths) -> list[Detections]`` in person-only form
(class 0 = person).
"""

from __future__ import annotations

from typing import Any

from fusion.registry import Registry

__all__ = ["DETECTORS", "create_detector", "list_detectors"]

DETECTORS: Registry[Any] = Registry("detector", providers=("downstream.detection.hog",))


def list_detectors() -> list[str]:
    """Names of the given detectors."""
    return DETECTORS.names()


def create_detector(name: str, **settings: Any) -> Any:
    """Build the given detector ``name`` with its ``settings`` (``detector.KEY=VALUE`` on the command line).

    Raises:
        ConfigError: unknown name or setting.
    """
    return DETECTORS.get(name)(**settings)
