"""Training TC-MoA: configuration, data streams, schedule, checkpoints, the trainer, and initialisations.

``pipelines/train_fusion.py`` is a thin command line over :func:`train`; the pieces are importable on their own
(``fusion.training.data``, ``.schedule``, ``.checkpoint``, ``.ema``, ``.init``) and light to import.
"""

from __future__ import annotations

from typing import Any

__all__ = ["Trainer", "train", "load_config", "default_config"]


def __getattr__(name: str) -> Any:
    # Lazy: ``import fusion.training`` must not import torch-heavy modules until something is used.
    if name in ("Trainer", "train"):
        from fusion.training import trainer

        return getattr(trainer, name)
    if name in ("load_config", "default_config"):
        from fusion.training import config

        return getattr(config, name)
    raise AttributeError(f"module 'fusion.training' has no attribute {name!r}")
