"""Shared fixtures. Real sample data lives in ``../shared/data`` beside the checkout; tests that need it skip with a
clear reason when it is absent (e.g. on a clone without the shared folder)."""

from __future__ import annotations

import os
from collections.abc import Callable
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


@pytest.fixture(scope="session")
def llvip_link_tree(shared_data) -> Callable[[Path, list[str], list[str]], Path]:
    """``make(root, train_ids, test_ids)``: an LLVIP-layout tree at ``root`` of symbolic links to the real samples
    (``{visible,infrared}/{train,test}/<id>.jpg``, ``Annotations/<id>.xml``)."""

    def make(root: Path, train: list[str], test: list[str]) -> Path:
        for split, ids in (("train", train), ("test", test)):
            for mod, src in (("visible", "vis"), ("infrared", "ir")):
                (root / mod / split).mkdir(parents=True, exist_ok=True)
                for i in ids:
                    os.symlink(shared_data / "llvip" / src / f"{i}.jpg", root / mod / split / f"{i}.jpg")
        (root / "Annotations").mkdir()
        for i in train + test:
            os.symlink(shared_data / "llvip" / "label" / f"{i}.xml", root / "Annotations" / f"{i}.xml")
        return root

    return make
