"""The two networks trained together: a TC-MoA fuser and a task network (an mmseg segmenter or an ultralytics YOLO
detector), in one module (one DDP wrapper).

:class:`E2EModel` ``forward(a, b, targets, fusion_grad=...)`` fuses ``a`` (visible) and ``b`` (infrared), scores the
fused image with the fusion loss and the task network's own training loss and returns both, so that one
``DistributedDataParallel`` wrapper covers the parameters of both parts.
"""

from __future__ import annotations

import fnmatch
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from downstream.e2e.bridge import segmentation_loss
from fusion.errors import CheckpointError, ConfigError
from fusion.losses import FusionLoss
from fusion.models import TCMoA, normalize
from fusion.utils.config import resolve_config
from fusion.utils.logging import get_logger

__all__ = ["build_fusion_model", "build_seg_model", "build_det_model", "E2EModel", "trainable_fusion_names",
           "FUSION_INITS"]

log = get_logger(__name__)

FUSION_INITS = ("checkpoint", "shipped", "codec", "random")
"""Where the fuser's starting weights came from (``E2EModel.fusion_init``)."""


def _shipped_weights(name: str) -> Path | None:
    from fusion.fusers.tcmoa import SHIPPED_WEIGHTS

    p = SHIPPED_WEIGHTS.get(name)
    return p if p is not None and p.is_file() else None


def build_fusion_model(name: str = "tcmoa_tiny", checkpoint: str | os.PathLike | dict | None = None,
                       init: str = "auto", overrides: dict[str, Any] | None = None, *,
                       freeze: Sequence[str] = (), skip_identity: bool = True) -> tuple[TCMoA, str]:
    """Build the TC-MoA fuser to finetune and say where its weights came from.

    Args:
        name: registered variant (``tcmoa_tiny``, ``tcmoa_base``, …).
        checkpoint: a TC-MoA checkpoint (file or ``{"model", "config"}`` dict).
        init: ``auto`` — the checkpoint, else the variant's shipped weights, else the codec initialisation
            (:func:`fusion.training.codec_init.codec_init`, a working two-scale fuser), else random;
            ``checkpoint`` / ``codec`` / ``random`` force one.
        overrides: TC-MoA config overrides.
        freeze: ``fnmatch`` patterns of TC-MoA parameter names to keep frozen as well (each must match one).
        skip_identity: short-cut frozen backbone blocks that are exact identities
            (:func:`fusion.models.shortcuts.skip_identity_blocks`; bit-identical, much faster for the codec init).

    Returns:
        ``(model, source)`` with ``source`` one of :data:`FUSION_INITS`; the model is in training mode with its MAE
        backbone frozen (only adapters, routers, fusion layers, alphas and modal shifts have ``requires_grad``).
    """
    model, source = _initial_fusion_model(name, checkpoint, init, dict(overrides or {}))
    for pattern in freeze:
        hits = [p for n, p in model.named_parameters() if fnmatch.fnmatchcase(n, pattern)]
        if not hits:
            raise ConfigError(f"model.freeze: {pattern!r} matches no parameter of {name}")
        for p in hits:
            p.requires_grad_(False)
    if skip_identity:
        from fusion.models.shortcuts import skip_identity_blocks

        skipped = skip_identity_blocks(model)
        if skipped:
            log.info("%s: %d frozen backbone blocks are exact identities: skipped", name, skipped)
    return model, source


def _initial_fusion_model(name: str, checkpoint: Any, init: str, overrides: dict[str, Any]) -> tuple[TCMoA, str]:
    from fusion.models import create_model

    if init not in ("auto", "checkpoint", "codec", "random"):
        raise ConfigError(f"model.init={init!r}: expected auto, checkpoint, codec or random")
    if isinstance(checkpoint, str):
        from fusion.fusers.tcmoa import SHIPPED_WEIGHTS

        # shipped weights by name (e.g. "tcmoa_tiny_v1"), wherever the package is installed
        checkpoint = SHIPPED_WEIGHTS.get(checkpoint, checkpoint)
    if checkpoint is not None and init in ("auto", "checkpoint"):
        return create_model(name, checkpoint=checkpoint, **overrides), "checkpoint"
    if init == "checkpoint":
        raise ConfigError("model.init='checkpoint' needs model.checkpoint")
    if init == "auto":
        shipped = _shipped_weights(name)
        if shipped is not None:
            return create_model(name, checkpoint=shipped, **overrides), "shipped"
    model = create_model(name, **overrides)
    if init == "random":
        return model, "random"
    from fusion.training.codec_init import codec_init

    try:
        codec_init(model)
    except ConfigError as exc:
        if init == "codec":
            raise
        log.warning("%s: no checkpoint, no shipped weights and no codec initialisation (%s); random init", name, exc)
        return model, "random"
    if init == "auto":
        log.warning("%s: no checkpoint and no shipped weights; starting from the codec initialisation", name)
    return model, "codec"


def build_seg_model(config_path: str | os.PathLike, checkpoint: str | os.PathLike | None = None,
                    cfg_options: dict[str, Any] | None = None, *, crop_size: tuple[int, int] | None = None,
                    device: str | torch.device = "cpu") -> tuple[nn.Module, Any]:
    """Build the mmseg segmenter from its config (and weights), in training mode.

    ``crop_size`` sets the data preprocessor's padding size to the training crop (the configs pad to their own
    crop size). Returns ``(segmenter, mmengine Config)``.
    """
    import downstream.segmentation  # noqa: F401  prepares mmseg, registers the datasets
    from downstream.segmentation.engine import build_segmenter, load_config

    options = dict(cfg_options or {})
    cfg = load_config(resolve_config(config_path), options)
    if crop_size is not None and cfg.model.get("data_preprocessor") is not None:
        cfg.model.data_preprocessor["size"] = tuple(int(c) for c in crop_size)
    seg = build_segmenter(cfg, checkpoint, device=device)
    return seg.train(), cfg


def build_det_model(model: str, checkpoint: str | os.PathLike | None = None, *, num_classes: int,
                    hyp: dict[str, Any] | None = None) -> nn.Module:
    """Build the YOLO ``DetectionModel`` to train: from a model yaml (random weights, ``num_classes`` outputs) or a
    local ``.pt``, then ``checkpoint`` (a safe detector file, :mod:`downstream.detection.safe_weights`) on top;
    training mode, loss gains from ultralytics' defaults updated with ``hyp``."""
    from downstream.e2e.detection import build_yolo

    net = build_yolo(model, nc=num_classes, hyp=hyp)
    if checkpoint is not None:
        from downstream.detection.yolo import load_detector

        loaded = load_detector(checkpoint).model
        try:
            net.load_state_dict(loaded.state_dict(), strict=True)
        except RuntimeError as exc:
            raise CheckpointError(f"{checkpoint}: does not fit {model} ({str(exc).splitlines()[0]})") from None
    nc = int(getattr(net, "nc", num_classes) or num_classes)
    if nc != num_classes:
        raise ConfigError(f"detector {model}: {nc} classes, the data has {num_classes}")
    return net


def trainable_fusion_names(model: TCMoA) -> list[str]:
    """Names of the fuser's trainable parameters (never a backbone key)."""
    from fusion.models import is_backbone_key

    names = [n for n, p in model.named_parameters() if p.requires_grad]
    bad = [n for n in names if is_backbone_key(n)]
    if bad:
        raise CheckpointError(f"backbone parameters are trainable: {', '.join(bad[:4])}")
    return names


class E2EModel(nn.Module):
    """TC-MoA fuser + task network with the joint loss.

    Args:
        fuser: the :class:`TCMoA` model (backbone frozen).
        task_net: an mmseg segmentor (``downstream="segmentation"``) or a YOLO ``DetectionModel`` (``"detection"``).
        downstream: which of the two ``task_net`` is; decides its loss.
        task: fusion task of the pairs (``vif``).
        fusion_loss: the fusion objective (:class:`fusion.losses.FusionLoss`).
        fusion_epoch: epoch passed to the fusion loss (selects its warm-up or main weights).
        router_noise: keep TC-MoA's training-time noisy gating on (official); False routes as at inference.
    """

    def __init__(self, fuser: TCMoA, task_net: nn.Module, *, downstream: str = "segmentation", task: str = "vif",
                 fusion_loss: FusionLoss | None = None, fusion_epoch: int = 0, router_noise: bool = True) -> None:
        super().__init__()
        if downstream not in ("segmentation", "detection"):
            raise ConfigError(f"downstream={downstream!r}: expected segmentation or detection")
        self.fuser = fuser
        self.task_net = task_net
        self.downstream = downstream
        self.task = task
        self.fusion_loss = fusion_loss or FusionLoss("current", warmup_epochs=0)
        self.fusion_epoch = int(fusion_epoch)
        self.router_noise = router_noise

    @property
    def segmenter(self) -> nn.Module:
        """The task network (named for the segmentation case, which came first)."""
        return self.task_net

    def set_modes(self, *, fuser_train: bool, seg_train: bool) -> None:
        """Training/eval mode of each part (eval: deterministic routing, fixed BN statistics)."""
        self.train(True)
        self.fuser.train(fuser_train)
        if fuser_train and not self.router_noise:
            from fusion.models.layers import MMoE

            for m in self.fuser.modules():
                if isinstance(m, MMoE):
                    m.eval()
        self.task_net.train(seg_train)

    def fuse(self, a: Tensor, b: Tensor, *, with_aux: bool = False) -> Tensor | tuple[Tensor, dict[str, Any]]:
        """Fused RGB ``(B, 3, H, W)`` in [0, 1] of sources in [0, 1] (``H``, ``W`` multiples of 112)."""
        return self.fuser(normalize(a), normalize(b), task=self.task, return_aux=with_aux)

    def forward(self, a: Tensor, b: Tensor, labels: Tensor, *, fusion_grad: bool = True, fused: Tensor | None = None,
                lambda_fusion: float = 1.0, lambda_seg: float = 1.0, n_boxes: Tensor | None = None) -> dict[str, Any]:
        """Losses of one batch.

        Args:
            a, b: visible and infrared ``(B, 3, H, W)`` in [0, 1].
            labels: segmentation: ``(B, H, W)`` class ids; detection: ``(B, MAX_BOXES, 5)`` padded boxes
                ``class, x1, y1, x2, y2`` with ``n_boxes`` ``(B,)`` valid rows each.
            fusion_grad: fuse with gradients and compute the fusion loss; False fuses under ``no_grad``
                (or uses ``fused``) and leaves the fusion loss out.
            fused: precomputed fused images (only with ``fusion_grad=False``; e.g. cached frozen-fusion outputs).
            lambda_fusion, lambda_seg: weights of the two losses (``lambda_seg`` weighs the task network's loss).

        Returns:
            ``loss`` (0-dim total), ``seg_loss`` (the task network's loss), ``fusion_loss`` (0 when not computed),
            ``fused`` (detached), ``logs`` (floats of every term).
        """
        logs: dict[str, float] = {}
        fusion_total = a.new_zeros(())
        if fusion_grad:
            out, aux = self.fuse(a, b, with_aux=True)
            terms = self.fusion_loss(self.task, out, a, b, aux, self.fusion_epoch)
            fusion_total = terms["loss"]
            logs.update({f"fusion.{k}": float(v.detach()) for k, v in terms.items() if k != "loss"})
        elif fused is not None:
            out = fused
        else:
            with torch.no_grad():
                out = self.fuse(a, b)
        if self.downstream == "detection":
            from downstream.e2e.data import unpad_boxes
            from downstream.e2e.detection import detection_loss

            if n_boxes is None:
                raise ValueError("detection: n_boxes (valid rows per image of the padded boxes) is required")
            seg_total, task_logs = detection_loss(self.task_net, out, unpad_boxes(labels, n_boxes))
            seg_total = seg_total / out.shape[0]  # ultralytics sums over the batch; a per-image loss weighs like L_seg
            logs.update({f"det.{k}": v for k, v in task_logs.items()})
        else:
            seg_total, seg_logs = segmentation_loss(self.task_net, out, labels)
            logs.update({f"seg.{k}": v for k, v in seg_logs.items()})
        total = lambda_seg * seg_total
        if fusion_grad:
            total = total + lambda_fusion * fusion_total
        return {"loss": total, "seg_loss": seg_total.detach(), "fusion_loss": fusion_total.detach(),
                "fused": out.detach(), "logs": logs}

