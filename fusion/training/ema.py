"""Exponential moving average of the trainable weights.

The official training builds an EMA that never changes anything (docs/tcmoa.md §6 Q5: it rebinds entries of a fresh
state-dict copy). This one really averages: after every optimiser step, ``shadow = d * shadow + (1 - d) * param``
with ``d = min(decay, (1 + n) / (10 + n))`` (n = updates so far), so that early averages are not dominated by the
initial weights.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

__all__ = ["ModelEMA"]


class ModelEMA:
    """Float32 shadow copies of a model's trainable parameters.

    Args:
        model: the (unwrapped) model.
        decay: the asymptotic decay ``d``.
    """

    def __init__(self, model: nn.Module, decay: float = 0.999) -> None:
        if not 0.0 <= decay < 1.0:
            raise ValueError(f"EMA decay must lie in [0, 1), got {decay}")
        self.decay = float(decay)
        self.updates = 0
        self.shadow: dict[str, torch.Tensor] = {
            name: p.detach().float().clone() for name, p in model.named_parameters() if p.requires_grad
        }

    def current_decay(self) -> float:
        return min(self.decay, (1.0 + self.updates) / (10.0 + self.updates))

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        """Fold the model's current trainable weights into the average."""
        d = self.current_decay()
        params = dict(model.named_parameters())
        for name, s in self.shadow.items():
            s.mul_(d).add_(params[name].detach().float(), alpha=1.0 - d)
        self.updates += 1

    def averaged_state_dict(self, model: nn.Module) -> dict[str, torch.Tensor]:
        """The model's state dict with the trainable entries replaced by their averages (model dtypes kept)."""
        state = {k: v.detach().clone() for k, v in model.state_dict().items()}
        for name, s in self.shadow.items():
            state[name] = s.to(state[name].dtype)
        return state

    def state_dict(self) -> dict[str, Any]:
        return {"decay": self.decay, "updates": self.updates, "shadow": dict(self.shadow)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        missing = set(self.shadow) - set(state["shadow"])
        if missing:
            raise KeyError(f"EMA state lacks {len(missing)} parameter(s), e.g. {sorted(missing)[0]}")
        self.decay = float(state["decay"])
        self.updates = int(state["updates"])
        for name in self.shadow:
            self.shadow[name] = state["shadow"][name].detach().float().clone()
