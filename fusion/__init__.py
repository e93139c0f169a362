"""TC-MoA image fusion: models, data, metrics, baselines and training.

``fusion.create_model`` is the one factory for TC-MoA variants; ``fusion.fusers.create_fuser`` builds any fusion
method (TC-MoA or a classical baseline) behind the common :class:`~fusion.fusers.Fuser` interface.
"""

from __future__ import annotations

from typing import Any

from fusion.errors import CheckpointError, ConfigError, DatasetError, FusionError, InputError

__version__ = "0.1.0"
__all__ = [
    "CheckpointError",
    "ConfigError",
    "DatasetError",
    "FusionError",
    "InputError",
    "create_model",
    "__version__",
]


def create_model(name: str, checkpoint: Any = None, pretrained_backbone: Any = None, **overrides: Any):
    """Build a registered TC-MoA variant (see :func:`fusion.models.create_model`)."""
    from fusion.models import create_model as _create

    return _create(name, checkpoint=checkpoint, pretrained_backbone=pretrained_backbone, **overrides)
