"""End-to-end finetuning: train TC-MoA's adapters through a segmentation (or detection) loss.

Fusion tuned for looks is not fusion tuned for perception. Here the fused image of TC-MoA (in training mode,
differentiable) feeds an mmsegmentation segmenter below its data pipeline (:mod:`~downstream.e2e.bridge`), and the
adapters, routers and fusion layers of TC-MoA (never its frozen MAE backbone) train together with the segmenter on
``λ_fusion · L_fusion + λ_seg · L_seg`` (:mod:`~downstream.e2e.trainer`; joint, alternating or frozen schedules,
see :mod:`~downstream.e2e.config`). :mod:`~downstream.e2e.detection` gives the same bridge to ultralytics' YOLO loss.

* ``pipelines/finetune_e2e.py``: the command line (training, and the frozen-vs-e2e comparison);
* ``tcmoa_e2e:<checkpoint>`` (:mod:`~downstream.e2e.fuser`): the finetuned fuser as a fusion method;
* :mod:`~downstream.e2e.checkpoint`: the finetuned pair in one safetensors file, and its parts.

Submodules import mmseg / ultralytics only when used; importing this package is light.
"""

from __future__ import annotations

import importlib
from typing import Any

__all__ = [
    "E2ETrainer",
    "finetune",
    "load_config",
    "default_config",
    "run_comparison",
    "evaluate_pair",
    "save_e2e_checkpoint",
    "load_e2e_checkpoint",
    "export_parts",
    "segmentation_loss",
    "segmentation_logits",
    "segmenter_inputs",
    "detection_loss",
]

_WHERE = {
    "E2ETrainer": "trainer",
    "finetune": "trainer",
    "load_config": "config",
    "default_config": "config",
    "run_comparison": "evaluate",
    "evaluate_pair": "evaluate",
    "save_e2e_checkpoint": "checkpoint",
    "load_e2e_checkpoint": "checkpoint",
    "export_parts": "checkpoint",
    "segmentation_loss": "bridge",
    "segmentation_logits": "bridge",
    "segmenter_inputs": "bridge",
    "detection_loss": "detection",
}


def __getattr__(name: str) -> Any:
    if name in _WHERE:
        return getattr(importlib.import_module(f"downstream.e2e.{_WHERE[name]}"), name)
    raise AttributeError(f"module 'downstream.e2e' has no attribute {name!r}")
