"""Shipped model weights (package data): ``tcmoa_tiny.safetensors`` with its model card ``tcmoa_tiny.md``, and the
first release ``tcmoa_tiny_v1.safetensors`` (kept for comparisons and for the end-to-end tables measured with it)."""

from __future__ import annotations

from pathlib import Path

__all__ = ["SHIPPED_WEIGHTS"]

SHIPPED_WEIGHTS: dict[str, Path] = {
    "tcmoa_tiny": Path(__file__).resolve().parent / "tcmoa_tiny.safetensors",
    "tcmoa_tiny_v1": Path(__file__).resolve().parent / "tcmoa_tiny_v1.safetensors",
}
"""Weights that ship with the package (used when a fuser spec names no checkpoint)."""
