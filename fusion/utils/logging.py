"""Library code logs through :func:`get_logger`; only scripts configure handlers."""

from __future__ import annotations

import logging

__all__ = ["get_logger", "setup_script_logging"]


def get_logger(name: str) -> logging.Logger:
    """Return the logger for a module (``__name__``)."""
    return logging.getLogger(name)


def setup_script_logging(verbose: bool = False) -> None:
    """Configure a plain stderr handler for a command-line script."""
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(levelname).1s %(name)s: %(message)s",
        datefmt="%H:%M:%S",
    )
