"""Device choice shared by every script: ``cpu``, ``cuda``, ``cuda:N`` or ``auto``."""

from __future__ import annotations

import torch

from fusion.errors import ConfigError

__all__ = ["resolve_device"]


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """Turn a user's device string into a :class:`torch.device`.

    ``auto`` picks CUDA when available, else CPU. Asking for CUDA on a machine without it is a
    :class:`~fusion.errors.ConfigError` rather than a late crash deep inside a model.
    """
    if isinstance(device, torch.device):
        return device
    name = str(device).strip().lower()
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cpu":
        return torch.device("cpu")
    if name.startswith("cuda") or name.isdigit():
        if not torch.cuda.is_available():
            raise ConfigError(f"device={device!r}: CUDA is not available on this machine (use cpu or auto)")
        return torch.device(f"cuda:{name}" if name.isdigit() else name)
    raise ConfigError(f"device={device!r}: expected one of cpu, cuda, cuda:N, auto")
