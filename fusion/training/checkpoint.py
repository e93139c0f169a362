"""Training checkpoints: atomic writes, rotation, RNG states, and exact resumption.

A training checkpoint ``iter_00001234.pth`` is a ``torch.save`` of plain dicts, lists, numbers, strings and tensors,
so it loads with ``torch.load(..., weights_only=True)``:

==================== ==========================================================================================
``model``            full model state dict (also readable by ``fusion.create_model(checkpoint=...)``)
``config``           the model's config dict (:meth:`~fusion.models.config.TCMoAConfig.to_dict`)
``train_config``     the training configuration
``optimizer``        AdamW state; ``scaler``: GradScaler state (or None); ``ema``: EMA state (or None)
``progress``         ``iteration`` (completed), ``epoch``, ``iter_in_epoch``, ``iters_per_epoch``
``streams``          per task: data-stream position (epoch, batches handed out) and seed
``rng``              per process rank: python, numpy and torch (CPU and CUDA) generator states as tensors/lists
==================== ==========================================================================================

Files are written to a temporary name in the same folder and renamed, so a run killed at any moment leaves only
complete checkpoints; only the newest ``keep_last`` are kept.
"""

from __future__ import annotations

import os
import random
import re
from pathlib import Path
from typing import Any

import numpy as np
import torch

from fusion.errors import CheckpointError
from fusion.utils.io import atomic_path
from fusion.utils.logging import get_logger
from fusion.utils.safe_load import check_finite, load_torch_file

__all__ = [
    "CHECKPOINT_FORMAT",
    "capture_rng",
    "restore_rng",
    "checkpoint_path",
    "list_checkpoints",
    "find_resume_checkpoint",
    "save_training_checkpoint",
    "load_training_checkpoint",
    "prune_checkpoints",
]

log = get_logger(__name__)

CHECKPOINT_FORMAT = "tcmoa-train/1"
_NAME = re.compile(r"^iter_(\d{8,})\.pth$")


def capture_rng() -> dict[str, Any]:
    """This process's python, numpy (legacy global) and torch RNG states, as tensors and plain numbers."""
    version, mt, gauss = random.getstate()
    np_name, np_keys, np_pos, np_has_gauss, np_gauss = np.random.get_state(legacy=True)
    state: dict[str, Any] = {
        "python": {"version": int(version), "state": torch.tensor(mt, dtype=torch.int64), "gauss": gauss},
        "numpy": {
            "name": str(np_name),
            "keys": torch.from_numpy(np.asarray(np_keys, dtype=np.int64).copy()),
            "pos": int(np_pos),
            "has_gauss": int(np_has_gauss),
            "gauss": float(np_gauss),
        },
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
    }
    return state


def restore_rng(state: dict[str, Any]) -> None:
    """Inverse of :func:`capture_rng`."""
    py = state["python"]
    random.setstate((py["version"], tuple(int(v) for v in py["state"].tolist()), py["gauss"]))
    npy = state["numpy"]
    keys = npy["keys"].numpy().astype(np.uint32)
    np.random.set_state((npy["name"], keys, npy["pos"], npy["has_gauss"], npy["gauss"]))
    torch.set_rng_state(state["torch"])
    cuda = state.get("cuda") or []
    if cuda and torch.cuda.is_available() and len(cuda) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(cuda)


def checkpoint_path(folder: str | os.PathLike, iteration: int) -> Path:
    return Path(folder) / f"iter_{iteration:08d}.pth"


def list_checkpoints(folder: str | os.PathLike) -> list[tuple[int, Path]]:
    """Complete training checkpoints in ``folder`` as ``(iteration, path)``, oldest first."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    found = []
    for p in folder.iterdir():
        m = _NAME.match(p.name)
        if m and p.is_file():
            found.append((int(m.group(1)), p))
    return sorted(found)


def find_resume_checkpoint(source: str | os.PathLike) -> Path:
    """A checkpoint file, or the newest checkpoint in a folder (a run's ``checkpoints/`` or its output folder).

    Raises:
        CheckpointError: nothing to resume from.
    """
    p = Path(source)
    if p.is_file():
        return p
    for folder in (p / "checkpoints", p):
        found = list_checkpoints(folder)
        if found:
            return found[-1][1]
    raise CheckpointError(f"{p}: no training checkpoint (iter_*.pth) to resume from")


_TEMP_NAME = re.compile(r"^\.iter_\d{8,}\..*\.tmp\.pth$")


def remove_stale_temporaries(folder: str | os.PathLike) -> list[Path]:
    """Delete partial checkpoints (``.iter_*.tmp.pth``) that a killed run left behind; returns the deleted paths.

    :func:`~fusion.utils.io.atomic_path` writes a hidden temporary file and renames it; a SIGKILL in between leaves
    the temporary file, which no later rename ever replaces. Call on the main process before training starts.
    """
    folder = Path(folder)
    if not folder.is_dir():
        return []
    doomed = [p for p in folder.iterdir() if _TEMP_NAME.match(p.name) and p.is_file()]
    for p in doomed:
        try:
            p.unlink()
        except FileNotFoundError:
            pass
        log.info("removed a partial checkpoint left by an interrupted run: %s", p)
    return doomed


def prune_checkpoints(folder: str | os.PathLike, keep_last: int) -> list[Path]:
    """Delete all but the newest ``keep_last`` checkpoints; returns the deleted paths."""
    found = list_checkpoints(folder)
    doomed = [p for _, p in found[: max(0, len(found) - keep_last)]]
    for p in doomed:
        try:
            p.unlink()
        except FileNotFoundError:
            pass
    return doomed


def save_training_checkpoint(state: dict[str, Any], folder: str | os.PathLike, iteration: int, keep_last: int) -> Path:
    """Write ``state`` atomically as ``folder/iter_<iteration>.pth`` and prune old ones."""
    target = checkpoint_path(folder, iteration)
    payload = {"format": CHECKPOINT_FORMAT, **state}
    with atomic_path(target) as tmp:
        torch.save(payload, tmp)
    prune_checkpoints(folder, keep_last)
    return target


def load_training_checkpoint(path: str | os.PathLike) -> dict[str, Any]:
    """Read a training checkpoint with ``weights_only=True``.

    Raises:
        CheckpointError: unreadable file, or not a training checkpoint (e.g. a bare model file).
    """
    path = Path(path)
    obj = load_torch_file(path)
    if not isinstance(obj, dict) or obj.get("format") != CHECKPOINT_FORMAT:
        raise CheckpointError(
            f"{path}: not a training checkpoint (no format {CHECKPOINT_FORMAT!r}); "
            "to start from model weights use model.checkpoint instead of --resume"
        )
    for key in ("model", "optimizer", "progress", "streams", "rng"):
        if key not in obj:
            raise CheckpointError(f"{path}: training checkpoint lacks {key!r}")
    if isinstance(obj["model"], dict):
        check_finite(obj["model"], str(path))
    return obj
