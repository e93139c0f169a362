"""The finetuned pair in one file: TC-MoA fusion weights + segmenter weights, tensors only.

``.safetensors`` (default) holds the keys ``fusion.<TC-MoA key>`` and ``segmenter.<mmseg key>``; its metadata holds
``tcmoa_config`` (the TC-MoA config as JSON, as :func:`fusion.models.save_checkpoint` writes it), ``segmenter_config``
(the mmseg config text, so the segmenter can be rebuilt without the original file) and ``e2e`` (JSON: model name,
task, classes, schedule, what the run measured). A detection run stores its YOLO detector as ``detector.<key>``
(``part="detector"``) and its model name and classes (JSON) as ``detector_config``. ``.pth`` / ``.pt`` files hold
the same as a dict of tensors and strings (``{"fusion": sd, "segmenter": sd, "tcmoa_config": {...},
"segmenter_config": str, "e2e": {...}}``) and are
read with ``torch.load(..., weights_only=True)``.

:func:`export_parts` writes the two parts separately: ``fusion.safetensors`` (a plain TC-MoA checkpoint, usable as
``tcmoa_tiny:fusion.safetensors``) and ``segmenter.pth`` (``{"state_dict": ...}``, usable as ``--seg-checkpoint``
with the segmenter config written next to it).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from fusion.errors import CheckpointError
from fusion.utils.io import atomic_path, atomic_write_text
from fusion.utils.safe_load import check_finite, load_torch_file

__all__ = ["E2ECheckpoint", "save_e2e_checkpoint", "load_e2e_checkpoint", "export_parts", "E2E_FORMAT"]

E2E_FORMAT = "tcmoa-e2e/1"
_FUSION = "fusion."
PARTS: tuple[str, ...] = ("segmenter", "detector")


@dataclass
class E2ECheckpoint:
    """What :func:`load_e2e_checkpoint` returns."""

    fusion: dict[str, torch.Tensor]
    segmenter: dict[str, torch.Tensor]
    tcmoa_config: dict[str, Any]
    segmenter_config: str = ""
    meta: dict[str, Any] = field(default_factory=dict)
    part: str = "segmenter"  # what ``segmenter`` / ``segmenter_config`` hold: "segmenter" or "detector"

    @property
    def model_name(self) -> str:
        return str(self.meta.get("model") or self.tcmoa_config.get("name") or "tcmoa_tiny")

    def fusion_checkpoint(self) -> dict[str, Any]:
        """``{"model": state dict, "config": {...}}``: what :func:`fusion.create_model` takes as ``checkpoint``."""
        return {"model": dict(self.fusion), "config": dict(self.tcmoa_config)}


def _cpu(sd: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {k: v.detach().cpu().contiguous() for k, v in sd.items()}


def save_e2e_checkpoint(path: str | os.PathLike, fusion_state: dict[str, torch.Tensor],
                        segmenter_state: dict[str, torch.Tensor], tcmoa_config: dict[str, Any], *,
                        segmenter_config: str = "", meta: dict[str, Any] | None = None,
                        part: str = "segmenter") -> Path:
    """Write both parts atomically (``.safetensors``, or ``.pth``/``.pt`` with tensors and plain values only);
    ``part`` names the task network (``segmenter`` or ``detector``)."""
    if part not in PARTS:
        raise ValueError(f"part must be one of {', '.join(PARTS)}, got {part!r}")
    path = Path(path)
    meta = {"format": E2E_FORMAT, **(meta or {})}
    fusion_sd, seg_sd = _cpu(fusion_state), _cpu(segmenter_state)
    with atomic_path(path) as tmp:
        if path.suffix == ".safetensors":
            from safetensors.torch import save_file

            tensors = {_FUSION + k: v for k, v in fusion_sd.items()}
            tensors.update({f"{part}.{k}": v for k, v in seg_sd.items()})
            # BN's num_batches_tracked shares no storage with anything, but safetensors refuses shared tensors
            tensors = {k: v.clone() if v.dim() == 0 else v for k, v in tensors.items()}
            save_file(tensors, str(tmp), metadata={
                "format": "pt", "tcmoa_config": json.dumps(tcmoa_config), f"{part}_config": segmenter_config,
                "e2e": json.dumps(meta, default=str)})
        else:
            torch.save({"fusion": fusion_sd, part: seg_sd, "tcmoa_config": dict(tcmoa_config),
                        f"{part}_config": segmenter_config, "e2e": json.loads(json.dumps(meta, default=str))},
                       tmp)
    return path


def load_e2e_checkpoint(path: str | os.PathLike) -> E2ECheckpoint:
    """Read a file written by :func:`save_e2e_checkpoint` (safetensors, or ``torch.load(weights_only=True)``).

    Raises:
        CheckpointError: missing or unreadable file, or not an end-to-end checkpoint.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: end-to-end checkpoint not found")
    if path.suffix == ".safetensors":
        from safetensors import SafetensorError, safe_open

        try:
            with safe_open(str(path), framework="pt", device="cpu") as f:
                meta = f.metadata() or {}
                tensors = {k: f.get_tensor(k) for k in f.keys()}
        except (SafetensorError, OSError, ValueError) as exc:
            raise CheckpointError(f"{path}: cannot read safetensors file ({exc})") from None
        if "e2e" not in meta or "tcmoa_config" not in meta:
            raise CheckpointError(f"{path}: not an end-to-end checkpoint (no 'e2e' / 'tcmoa_config' metadata); "
                                  "a plain TC-MoA file is used as tcmoa_tiny:<file>")
        try:
            info = json.loads(meta["e2e"])
            tcmoa_config = json.loads(meta["tcmoa_config"])
        except json.JSONDecodeError:
            raise CheckpointError(f"{path}: metadata is not valid JSON") from None
        fusion = {k[len(_FUSION):]: v for k, v in tensors.items() if k.startswith(_FUSION)}
        part = "detector" if any(k.startswith("detector.") for k in tensors) else "segmenter"
        seg = {k[len(part) + 1:]: v for k, v in tensors.items() if k.startswith(part + ".")}
        seg_cfg = meta.get(f"{part}_config", "")
    else:
        obj = load_torch_file(path)
        part = "detector" if isinstance(obj, dict) and "detector" in obj else "segmenter"
        if not isinstance(obj, dict) or not {"fusion", part, "tcmoa_config"} <= set(obj):
            raise CheckpointError(f"{path}: not an end-to-end checkpoint (expected keys fusion, segmenter or "
                                  "detector, tcmoa_config)")
        fusion, seg, tcmoa_config = obj["fusion"], obj[part], obj["tcmoa_config"]
        info, seg_cfg = dict(obj.get("e2e") or {}), str(obj.get(f"{part}_config") or "")
    if info.get("format") != E2E_FORMAT:
        raise CheckpointError(f"{path}: unknown end-to-end format {info.get('format')!r} (expected {E2E_FORMAT})")
    if not fusion:
        raise CheckpointError(f"{path}: holds no fusion weights")
    check_finite(fusion, str(path))
    check_finite(seg, str(path))
    return E2ECheckpoint(fusion=fusion, segmenter=seg, tcmoa_config=tcmoa_config, segmenter_config=seg_cfg,
                         meta=info, part=part)


def export_parts(source: str | os.PathLike | E2ECheckpoint, out_dir: str | os.PathLike) -> dict[str, Path]:
    """Split an end-to-end checkpoint into ``fusion.safetensors``, ``segmenter.pth`` and ``segmenter_config.py``.

    Returns the written paths by part name (``fusion``, ``segmenter``, ``segmenter_config``; the last two only when
    the checkpoint holds a segmenter: a detection run's detector is used through the end-to-end file itself).
    """
    from safetensors.torch import save_file

    ck = source if isinstance(source, E2ECheckpoint) else load_e2e_checkpoint(source)
    out = Path(out_dir)
    written: dict[str, Path] = {}
    target = out / "fusion.safetensors"
    with atomic_path(target) as tmp:
        save_file(_cpu(ck.fusion), str(tmp), metadata={"format": "pt", "tcmoa_config": json.dumps(ck.tcmoa_config)})
    written["fusion"] = target
    if ck.segmenter and ck.part == "segmenter":
        target = out / "segmenter.pth"
        with atomic_path(target) as tmp:
            torch.save({"state_dict": _cpu(ck.segmenter), "meta": {"e2e": json.dumps(ck.meta, default=str)}}, tmp)
        written["segmenter"] = target
        if ck.segmenter_config:
            written["segmenter_config"] = atomic_write_text(out / "segmenter_config.py", ck.segmenter_config)
    return written
