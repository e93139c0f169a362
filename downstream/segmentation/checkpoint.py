"""Reading segmentation weights safely: mmengine checkpoints, plain state dicts and safetensors files.

One reader for every place that takes a segmenter's weights (``seg_eval.py --seg-checkpoint``, the evaluation of a
trained model, ``stream_fuse.py --segment``): :func:`fusion.utils.safe_load.load_torch_file` (never runs code from the
file), a mapping of tensors, no NaN or infinity, ``module.`` prefixes (DDP) stripped.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch

from fusion.errors import CheckpointError
from fusion.utils.safe_load import check_finite, load_torch_file

__all__ = ["read_segmenter_checkpoint", "read_segmenter_state"]


def read_segmenter_checkpoint(path: str | os.PathLike) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """``(state_dict, meta)`` of a segmenter checkpoint; ``meta`` is mmengine's ``meta`` (e.g. ``dataset_meta``).

    Raises:
        CheckpointError: unreadable, code-carrying, not a mapping of tensors, or holding NaN/infinity.
    """
    p = Path(path)
    meta: dict[str, Any] = {}
    if p.suffix == ".safetensors":
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        try:
            state: Any = load_file(str(p))
        except (SafetensorError, OSError, ValueError) as exc:
            raise CheckpointError(f"{p}: cannot read safetensors file ({exc})") from None
    else:
        obj = load_torch_file(p)
        state = obj.get("state_dict", obj) if isinstance(obj, dict) else None
        if isinstance(obj, dict) and isinstance(obj.get("meta"), dict):
            meta = obj["meta"]
    if not isinstance(state, dict) or not state or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise CheckpointError(f"{p}: not a segmentation checkpoint (expected a state dict of tensors)")
    state = {k[len("module."):] if k.startswith("module.") else k: v for k, v in state.items()}
    check_finite(state, str(p))
    return state, meta


def read_segmenter_state(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """The weights of :func:`read_segmenter_checkpoint` alone."""
    return read_segmenter_checkpoint(path)[0]
