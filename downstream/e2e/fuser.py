"""``tcmoa_e2e``: the fusion part of an end-to-end finetuned checkpoint behind the :class:`~fusion.fusers.Fuser`
interface, so that every comparison (``seg_eval.py``, ``det_eval.py``, ``fuse.py``) takes it as one more input row.

Spec: ``tcmoa_e2e:/path/e2e_final.safetensors`` (or the ``.pth`` form); the TC-MoA variant and its architecture come
from the checkpoint. Settings are those of :class:`~fusion.fusers.tcmoa.TCMoAFuser`
(:data:`~fusion.fusers.tcmoa.FUSER_SETTINGS`). Inference is exactly the TC-MoA fuser's (same tiling and padding).
"""

from __future__ import annotations

import os
from typing import Any

from downstream.e2e.checkpoint import load_e2e_checkpoint
from fusion.errors import CheckpointError
from fusion.fusers.base import register_fuser
from fusion.fusers.tcmoa import FUSER_SETTINGS, TCMoAFuser
from fusion.models import create_model

__all__ = ["TCMoAE2EFuser", "create_tcmoa_e2e"]


class TCMoAE2EFuser(TCMoAFuser):
    """A :class:`TCMoAFuser` whose weights are the fusion part of an end-to-end checkpoint.

    Args:
        checkpoint: the file written by the end-to-end finetuning (``e2e_final.safetensors``).
        **settings: :class:`TCMoAFuser` settings (:data:`~fusion.fusers.tcmoa.FUSER_SETTINGS`) and TC-MoA config
            overrides.
    """

    def __init__(self, checkpoint: str | os.PathLike, **settings: Any) -> None:
        if not checkpoint:
            raise CheckpointError("tcmoa_e2e: no checkpoint given; use 'tcmoa_e2e:/path/e2e_final.safetensors' "
                                  "(written by pipelines/finetune_e2e.py)")
        ck = load_e2e_checkpoint(checkpoint)
        fuser_settings = {k: v for k, v in settings.items() if k in FUSER_SETTINGS}
        overrides = {k: v for k, v in settings.items() if k not in FUSER_SETTINGS}
        model = create_model(ck.model_name, checkpoint=ck.fusion_checkpoint(), **overrides)
        super().__init__(ck.model_name, str(checkpoint), model=model, **fuser_settings)
        self.overrides = overrides
        self.name = "tcmoa_e2e"
        self.meta = dict(ck.meta)

    def settings(self) -> dict[str, Any]:
        out = super().settings()
        out["e2e_schedule"] = self.meta.get("schedule")
        out["e2e_iterations"] = self.meta.get("iterations")
        out["e2e_downstream"] = self.meta.get("downstream", "segmentation")
        return out


@register_fuser("tcmoa_e2e")
def create_tcmoa_e2e(checkpoint: str | os.PathLike | None = None, **settings: Any) -> TCMoAE2EFuser:
    """``tcmoa_e2e:/path/e2e_final.safetensors`` — a TC-MoA fuser finetuned through a segmentation or detection
    loss (only its fusion part is used)."""
    return TCMoAE2EFuser(checkpoint or "", **settings)
