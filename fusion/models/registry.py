"""Name → variant registry and the one model factory :func:`create_model`."""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

import torch

from fusion.errors import CheckpointError, ConfigError
from fusion.models.checkpoint import load_checkpoint, load_pretrained_backbone, read_checkpoint
from fusion.models.config import (
    TCMoABaseConfig,
    TCMoAConfig,
    TCMoALargeConfig,
    TCMoASmallConfig,
    TCMoATinyConfig,
)
from fusion.models.tcmoa import TCMoA
from fusion.utils.logging import get_logger

__all__ = ["register_model", "list_models", "get_config", "create_model"]

log = get_logger(__name__)

_CONFIGS: dict[str, type[TCMoAConfig]] = {}
# config fields a stored checkpoint config does not impose: identity, initialisation and run-time choices
_RUNTIME_FIELDS = frozenset({"name", "alpha_init", "modal_shift_std", "modal_shift_seed", "moe_dispatch",
                             "fused_attn", "mae_url", "mae_sha256"})


def register_model(name: str, config_cls: type[TCMoAConfig]) -> None:
    """Register a variant under ``name`` (its config class's defaults define it)."""
    if name in _CONFIGS and _CONFIGS[name] is not config_cls:
        raise ConfigError(f"model {name!r} registered twice")
    _CONFIGS[name] = config_cls


for _name, _cls in (("tcmoa_base", TCMoABaseConfig), ("tcmoa_large", TCMoALargeConfig),
                    ("tcmoa_small", TCMoASmallConfig), ("tcmoa_tiny", TCMoATinyConfig)):
    register_model(_name, _cls)


def list_models() -> list[str]:
    """Registered variant names."""
    return sorted(_CONFIGS)


def get_config(name: str, **overrides: Any) -> TCMoAConfig:
    """The config of variant ``name`` with ``overrides`` applied (unknown names/fields: :class:`ConfigError`)."""
    if name not in _CONFIGS:
        raise ConfigError(f"unknown model {name!r} (known: {', '.join(list_models())})")
    cfg = _CONFIGS[name]()
    return cfg.replace(**overrides) if overrides else cfg


def create_model(name: str, checkpoint: str | os.PathLike | Mapping[str, Any] | None = None,
                 pretrained_backbone: str | os.PathLike | Mapping[str, Any] | bool | None = None, *,
                 strict: bool = True, allow_new_tasks: bool = False, device: str | torch.device | None = None,
                 cache_dir: str | os.PathLike | None = None, **overrides: Any) -> TCMoA:
    """Build a TC-MoA variant, optionally initialise its frozen backbone from MAE and load a checkpoint.

    Args:
        name: ``tcmoa_base``, ``tcmoa_large``, ``tcmoa_small`` or ``tcmoa_tiny``.
        checkpoint: a TC-MoA checkpoint (``.pth``/``.safetensors`` file or state dict), loaded strictly
            (see :func:`~fusion.models.checkpoint.load_checkpoint`). A config stored in the file by
            :func:`~fusion.models.checkpoint.save_checkpoint` is applied first; explicit ``overrides`` win.
        pretrained_backbone: MAE weights for the frozen parts (file, URL, dict, or ``True`` for the public URL);
            applied before ``checkpoint``.
        strict: strictness of the checkpoint loading.
        allow_new_tasks: let a checkpoint with fewer tasks fill the first router rows (``num_tasks`` override).
        device: where to put the model (default: CPU). ``"meta"`` builds without memory (no loading possible).
        cache_dir: download cache for URL backbones.
        **overrides: :class:`~fusion.models.config.TCMoAConfig` fields (e.g. ``num_tasks=4``, ``depth=4``).

    Returns:
        The model in training mode (call ``.eval()`` for inference: routing depends on it).
    """
    stored: dict[str, Any] | None = None
    state: Mapping[str, Any] | None = None
    if checkpoint is not None:
        state, stored = read_checkpoint(checkpoint)
    if stored:
        saved_as = stored.get("name")
        if saved_as is not None and saved_as != name:
            raise CheckpointError(f"{checkpoint}: saved from {saved_as}, cannot be loaded as {name}")
        arch = {k: v for k, v in stored.items() if k not in _RUNTIME_FIELDS}
        if arch.get("task_names") is not None:
            arch["task_names"] = tuple(arch["task_names"])
        log.info("%s: using the architecture stored in the checkpoint", name)
        cfg = get_config(name, **arch)
        if overrides:
            cfg = cfg.replace(**overrides)
    else:
        cfg = get_config(name, **overrides)
    dev = torch.device(device) if device is not None else None
    if dev is not None and dev.type == "meta":
        if checkpoint is not None or pretrained_backbone:
            raise ConfigError("create_model: cannot load weights into a model on the meta device")
        with torch.device("meta"):
            return TCMoA(cfg)
    model = TCMoA(cfg)
    if pretrained_backbone is not None and pretrained_backbone is not False:
        load_pretrained_backbone(model, pretrained_backbone, cache_dir=cache_dir)
    if state is not None:
        label = str(checkpoint) if not isinstance(checkpoint, Mapping) else None
        load_checkpoint(model, state, strict=strict, allow_new_tasks=allow_new_tasks, label=label)
    if dev is not None:
        model = model.to(dev)
    return model
