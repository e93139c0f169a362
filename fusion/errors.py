"""One exception hierarchy for the whole project.

Every message names the offending file (or key, or option) and the problem, in one line, so that scripts can print
``str(err)`` and exit with status 2 instead of showing a traceback.
"""

from __future__ import annotations

__all__ = ["FusionError", "InputError", "CheckpointError", "DatasetError", "ConfigError"]


class FusionError(Exception):
    """Base class of every error this project raises on purpose."""


class InputError(FusionError, ValueError):
    """An input image, video or argument is unreadable, malformed or inconsistent."""


class CheckpointError(FusionError):
    """A checkpoint is missing, unreadable, or does not match the model (missing/unexpected/mis-shaped keys)."""


class DatasetError(FusionError):
    """A dataset folder does not have the expected layout (missing partners, empty folders, unknown layout)."""


class ConfigError(FusionError, ValueError):
    """A configuration value or ``key=value`` override is invalid."""
