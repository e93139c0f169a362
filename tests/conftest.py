"""Shared fixtures. Real sample data lives in ``../shared/data`` beside the checkout; tests that need it skip with a
clear reason when it is absent (e.g. on a clone without the shared folder)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("TCMOA_SHARED_DATA", ROOT.parent / "shared" / "data"))

# Ultralytics must never reach for the network or the user's settings, in tests too.
os.environ.setdefault("YOLO_OFFLINE", "1")


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """Root of the real sample datasets; skips the test when it is missing."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"real sample data not found at {SHARED_DATA} (set TCMOA_SHARED_DATA to its location)")
    return SHARED_DATA


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return ROOT
