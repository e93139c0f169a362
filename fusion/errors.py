"""One exception hierarchy for the whole project.

Every message names the offending file (or key, or option) and the problem, in one line, so that scripts can print
``str(err)`` and exit with status 2 instead of showing a traceback.
"""

from __future__ import annotations

__all__ = ["FusionError", "InputError", "CheckpointError", "DatasetError", "ConfigError", "OutputError",
           "NumericalError"]


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


class OutputError(FusionError):
    """An output cannot be written (read-only folder, disk full, no permission); nothing partial is left behind."""


class NumericalError(FusionError):
    """A model produced NaN or infinity (broken weights, or an overflow in reduced precision)."""
