"""mmengine integration: :class:`FusionQualityMetric`, an ``mmengine.evaluator.BaseMetric`` registered in mmengine's
``METRICS`` registry, so that a config can say ``val_evaluator = dict(type="FusionQualityMetric", profile="tang")``.

Each data sample must provide ``fused``, ``ir`` and ``vis`` as ``uint8`` arrays ``(H, W)`` / ``(H, W, 3)`` (or
tensors ``(C, H, W)`` with values 0..255, converted here). Imported lazily: ``import fusion.metrics.mm``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from mmengine.evaluator import BaseMetric
from mmengine.registry import METRICS

from fusion.metrics.evaluate import FusionMetric, evaluate_batch

__all__ = ["FusionQualityMetric"]


def _as_uint8(x: Any) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        t = x.detach().cpu()
        if t.ndim == 3:
            t = t.permute(1, 2, 0)
        arr = t.numpy()
        if arr.dtype != np.uint8:
            arr = np.clip(np.rint(arr), 0, 255).astype(np.uint8)
        return np.ascontiguousarray(arr)
    return np.asarray(x)


@METRICS.register_module(force=True)
class FusionQualityMetric(BaseMetric):
    """Mean of the fusion metrics of one profile over an evaluation loop (keys ``fusion/<metric>``)."""

    default_prefix = "fusion"

    def __init__(
        self,
        profile: str = "tang",
        metrics: Sequence[str] | None = None,
        device: str = "cpu",
        collect_device: str = "cpu",
        prefix: str | None = None,
    ) -> None:
        super().__init__(collect_device=collect_device, prefix=prefix)
        self._acc = FusionMetric(profile=profile, metrics=metrics, device=device)

    def process(self, data_batch: Any, data_samples: Sequence[dict]) -> None:
        vals = evaluate_batch(
            [_as_uint8(s["fused"]) for s in data_samples],
            [_as_uint8(s["ir"]) for s in data_samples],
            [_as_uint8(s["vis"]) for s in data_samples],
            profile=self._acc.profile,
            metrics=self._acc.metric_names,
            device=self._acc.device,
        )
        self.results.extend(vals)

    def compute_metrics(self, results: list) -> dict[str, float]:
        return self._acc.compute_metrics(results)
