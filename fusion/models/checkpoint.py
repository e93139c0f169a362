"""Reading, checking and writing TC-MoA checkpoints, and loading the MAE initialisation of the frozen backbone.

Accepted files: ``.pth``/``.pt`` (``torch.load(..., weights_only=True)``, never full unpickling) holding
``{'model': state_dict}`` (the official layout) or a bare state dict, and ``.safetensors``. Keys are cleaned in this
order: ``module.`` prefixes stripped, the old (pre-release) names mapped (:func:`rename_legacy_keys`), modal shifts
normalised to one ``(2·num_tasks, C')`` tensor per adapter.

Loading is strict: missing or unexpected keys and shape mismatches raise :class:`~fusion.errors.CheckpointError`
naming them. Exceptions: the constant buffers (relative-position index, MoE ``mean``/``std``) are compared with
their expected values instead of being loaded (missing ones are fine), and missing modal shifts become zeros
(official checkpoints never contain them, docs/tcmoa.md §6 Q1).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from fusion.errors import CheckpointError
from fusion.models.tcmoa import TCMoA, is_backbone_key, is_constant_buffer_key
from fusion.utils.io import atomic_path
from fusion.utils.logging import get_logger
from fusion.utils.safe_load import check_finite, load_torch_file

__all__ = [
    "read_checkpoint",
    "read_state_dict",
    "clean_state_dict",
    "rename_legacy_keys",
    "load_checkpoint",
    "save_checkpoint",
    "load_pretrained_backbone",
    "download_mae_weights",
    "LoadReport",
]

log = get_logger(__name__)

StateDict = dict[str, torch.Tensor]
_MODAL_SHIFT_RE = re.compile(r"^((?:decoder_)?blocks_MoA\.\d+)\.modal_shifts(?:\.(\d+))?$")
_MAE_EXTRA_KEYS = ("mask_token",)


class LoadReport(dict):
    """What :func:`load_checkpoint` did: ``loaded``, ``zero_filled`` (modal shifts), ``checked`` (constant buffers)
    and, when not strict, ``missing`` / ``unexpected`` key lists."""


def _short(keys: list[str], limit: int = 12) -> str:
    shown = ", ".join(keys[:limit])
    return shown + (f", … ({len(keys)} in all)" if len(keys) > limit else "")


# ---------------------------------------------------------------------------------------------- reading
def read_checkpoint(source: str | os.PathLike | Mapping[str, Any]) -> tuple[StateDict, dict[str, Any] | None]:
    """Read a checkpoint file (or take an in-memory dict) → ``(raw state dict, stored config or None)``.

    ``{'model': sd}`` and bare state dicts are accepted; ``.safetensors`` files may carry the config as JSON in
    their metadata (``tcmoa_config``), ``.pth`` files as ``{'model': sd, 'config': {...}}``.
    """
    config = None
    if isinstance(source, Mapping):
        obj: Any = source
        name = "<state dict>"
    else:
        path = Path(source)
        name = str(path)
        if not path.is_file():
            raise CheckpointError(f"{path}: checkpoint not found")
        if path.suffix == ".safetensors":
            return _read_safetensors(path)
        obj = load_torch_file(path)
    if not isinstance(obj, Mapping):
        raise CheckpointError(f"{name}: expected a dict, got {type(obj).__name__}")
    if "model" in obj and isinstance(obj["model"], Mapping):
        if isinstance(obj.get("config"), Mapping):
            config = dict(obj["config"])
        obj = obj["model"]
    elif "state_dict" in obj and isinstance(obj["state_dict"], Mapping):
        obj = obj["state_dict"]
    bad = [k for k, v in obj.items() if not isinstance(v, torch.Tensor)]
    if bad:
        raise CheckpointError(f"{name}: not a state dict, non-tensor entries: {_short([str(k) for k in bad])}")
    check_finite(obj, name)
    return dict(obj), config


def _read_safetensors(path: Path) -> tuple[StateDict, dict[str, Any] | None]:
    from safetensors import SafetensorError, safe_open

    try:
        sd: StateDict = {}
        with safe_open(str(path), framework="pt", device="cpu") as f:
            meta = f.metadata() or {}
            for key in f.keys():
                sd[key] = f.get_tensor(key)
    except (SafetensorError, OSError, ValueError) as exc:
        raise CheckpointError(f"{path}: cannot read safetensors file ({exc})") from None
    # Tensors that are entirely zero may be stored as their shape and dtype only (``save_checkpoint(omit_zeros=True)``).
    if "zero_tensors" in meta:
        try:
            zeros = json.loads(meta["zero_tensors"])
            for key, (shape, dtype) in zeros.items():
                sd[key] = torch.zeros(shape, dtype=getattr(torch, dtype))
        except (json.JSONDecodeError, TypeError, ValueError, AttributeError):
            raise CheckpointError(f"{path}: metadata 'zero_tensors' is not a {{key: [shape, dtype]}} map") from None
    check_finite(sd, str(path))
    config = None
    if "tcmoa_config" in meta:
        try:
            config = json.loads(meta["tcmoa_config"])
        except json.JSONDecodeError:
            raise CheckpointError(f"{path}: metadata 'tcmoa_config' is not valid JSON") from None
    return sd, config


def rename_legacy_keys(sd: Mapping[str, torch.Tensor]) -> StateDict:
    """Map pre-release key names (``main_predict_oldckp.py``) onto the current ones.

    ``blocks_SSF_rgb`` → ``blocks_MoA`` (so ``decoder_blocks_SSF_rgb`` → ``decoder_blocks_MoA``) and inside those
    keys ``mlp`` → ``MoA``, ``SE_en_linear`` → ``dimReduction``, ``SSF_beta`` → ``modal_shifts``;
    ``en_projAdapter`` → ``FusionLayer``, ``de_projAdapter`` → ``de_FusionLayer``.
    """
    out: StateDict = {}
    for key, value in sd.items():
        new = key
        if "blocks_SSF_rgb" in new:
            new = new.replace("blocks_SSF_rgb", "blocks_MoA")
            new = new.replace("mlp", "MoA").replace("SE_en_linear", "dimReduction").replace("SSF_beta", "modal_shifts")
        new = new.replace("de_projAdapter", "de_FusionLayer").replace("en_projAdapter", "FusionLayer")
        if new in out:
            raise CheckpointError(f"checkpoint: keys {key!r} and another both map to {new!r}")
        out[new] = value
    return out


def clean_state_dict(sd: Mapping[str, torch.Tensor]) -> StateDict:
    """Strip ``module.`` prefixes, apply :func:`rename_legacy_keys` and gather modal shifts stored per row
    (``...modal_shifts.{j}``, as a legacy ``ParameterList`` would be) into one ``(2·T, C')`` tensor."""
    stripped: StateDict = {}
    for key, value in sd.items():
        new = key
        while new.startswith("module."):
            new = new[len("module."):]
        stripped[new] = value
    renamed = rename_legacy_keys(stripped)
    rows: dict[str, dict[int, torch.Tensor]] = {}
    out: StateDict = {}
    for key, value in renamed.items():
        m = _MODAL_SHIFT_RE.match(key)
        if m and m.group(2) is not None:
            rows.setdefault(m.group(1) + ".modal_shifts", {})[int(m.group(2))] = value
        else:
            out[key] = value
    for key, parts in rows.items():
        if key in out:
            raise CheckpointError(f"checkpoint: {key} given both whole and per row")
        n = max(parts) + 1
        if sorted(parts) != list(range(n)):
            raise CheckpointError(f"checkpoint: {key} rows {sorted(parts)} are not 0..{n - 1}")
        out[key] = torch.stack([parts[j].reshape(-1) for j in range(n)])
    return out


def read_state_dict(source: str | os.PathLike | Mapping[str, Any]) -> StateDict:
    """:func:`read_checkpoint` + :func:`clean_state_dict`: the state dict in current names."""
    sd, _ = read_checkpoint(source)
    return clean_state_dict(sd)


# ---------------------------------------------------------------------------------------------- loading
def _fit_modal_shift(key: str, value: torch.Tensor, target: torch.Tensor) -> torch.Tensor | None:
    rows, dim = target.shape
    if value.shape == target.shape:
        return value
    if value.numel() == rows * dim:
        return value.reshape(rows, dim)
    if value.numel() == dim:  # a single shared shift vector
        log.warning("%s: one modal shift vector of %d values, used for every task and source", key, dim)
        return value.reshape(1, dim).expand(rows, dim)
    return None


def _fit_task_rows(key: str, value: torch.Tensor, target: torch.Tensor, allow_new_tasks: bool) -> torch.Tensor | None:
    """A checkpoint with fewer tasks than the model: copy its rows, keep the model's own rows for new tasks."""
    if not allow_new_tasks or value.dim() != target.dim() or value.shape[1:] != target.shape[1:]:
        return None
    if not key.endswith(("MoA.w_gate", "MoA.w_noise", "modal_shifts")) or value.shape[0] >= target.shape[0]:
        return None
    out = target.detach().clone().to(value.dtype)
    out[: value.shape[0]] = value
    return out


def load_checkpoint(model: TCMoA, source: str | os.PathLike | Mapping[str, Any], *, strict: bool = True,
                    allow_new_tasks: bool = False, label: str | None = None) -> LoadReport:
    """Load a TC-MoA checkpoint into ``model`` (in place).

    Args:
        model: the target :class:`TCMoA`.
        source: file path (``.pth``/``.pt``/``.safetensors``) or an in-memory (state) dict.
        strict: raise on missing / unexpected keys (False: log them and load the rest).
        allow_new_tasks: the model has more tasks than the checkpoint (``num_tasks`` override): load the
            checkpoint's router rows and modal shifts into the first rows and keep the new rows' initialisation.
        label: name used in error messages (default: the file name).

    Raises:
        CheckpointError: unreadable file, missing / unexpected keys (listed), shape mismatches, or constant buffers
            with unexpected values.
    """
    name = label or (str(source) if not isinstance(source, Mapping) else "<state dict>")
    sd = read_state_dict(source)
    expected = model.state_dict()
    report = LoadReport(loaded=[], zero_filled=[], checked=[], missing=[], unexpected=[])

    unexpected = sorted(k for k in sd if k not in expected)
    missing = sorted(k for k in expected if k not in sd and not is_constant_buffer_key(k)
                     and not k.endswith("modal_shifts"))
    if strict and (missing or unexpected):
        parts = []
        if missing:
            parts.append(f"missing keys: {_short(missing)}")
        if unexpected:
            parts.append(f"unexpected keys: {_short(unexpected)}")
        raise CheckpointError(f"{name}: does not match {model.config.name}; " + "; ".join(parts))
    if missing:
        log.warning("%s: missing keys (kept at initialisation): %s", name, _short(missing))
    if unexpected:
        log.warning("%s: unexpected keys (ignored): %s", name, _short(unexpected))
    report["missing"], report["unexpected"] = missing, unexpected

    to_load: StateDict = {}
    mismatched = []
    for key, target in expected.items():
        if key not in sd:
            continue
        value = sd[key]
        if is_constant_buffer_key(key):
            if value.shape != target.shape or not torch.equal(value.to(target.dtype).cpu(), target.cpu()):
                raise CheckpointError(f"{name}: constant buffer {key} differs from its expected value "
                                      f"(shape {tuple(value.shape)}, expected {tuple(target.shape)})")
            report["checked"].append(key)
            continue
        if key.endswith("modal_shifts"):
            fitted = _fit_task_rows(key, value, target, allow_new_tasks)
            fitted = fitted if fitted is not None else _fit_modal_shift(key, value, target)
            if fitted is None:
                mismatched.append(f"{key} {tuple(value.shape)} vs {tuple(target.shape)}")
                continue
            value = fitted
        elif value.shape != target.shape:
            fitted = _fit_task_rows(key, value, target, allow_new_tasks)
            if fitted is None:
                mismatched.append(f"{key} {tuple(value.shape)} vs {tuple(target.shape)}")
                continue
            value = fitted
        to_load[key] = value
    if mismatched:
        raise CheckpointError(f"{name}: shape mismatch for {model.config.name} (checkpoint vs model): "
                              f"{_short(mismatched, 6)}")

    params = dict(model.named_parameters())
    buffers = dict(model.named_buffers())
    with torch.no_grad():
        for key, value in to_load.items():
            dst = params.get(key)
            if dst is None:
                dst = buffers[key]
            dst.copy_(value.to(device=dst.device, dtype=dst.dtype))
            report["loaded"].append(key)
        for key in expected:
            if key.endswith("modal_shifts") and key not in to_load:
                target = params[key]
                target.zero_()
                report["zero_filled"].append(key)
    if report["zero_filled"]:
        log.info("%s: no modal shifts in the checkpoint; %d adapters use zeros", name, len(report["zero_filled"]))
    return report


def save_checkpoint(
    model: TCMoA, path: str | os.PathLike, *, trainable_only: bool = False, omit_zeros: bool = False
) -> Path:
    """Write ``model`` atomically as ``{'model': state_dict, 'config': {...}}`` (``.pth``/``.pt``) or as
    ``.safetensors`` (config as JSON metadata ``tcmoa_config``).

    ``omit_zeros=True`` (safetensors only) stores all-zero tensors as their shape and dtype in the metadata
    ``zero_tensors``; :func:`read_checkpoint` restores them, so the loaded state dict is unchanged. It keeps files of
    models with many inert weights (the shipped ``tcmoa_tiny``) small.

    ``trainable_only=True`` omits the frozen MAE weights (load such a file with ``strict=False`` over a model
    initialised with ``pretrained_backbone=``). The official layout is the default (every key, loadable by the
    official code with ``strict=False``).
    """
    path = Path(path)
    if omit_zeros and path.suffix != ".safetensors":
        raise ValueError(f"save_checkpoint: omit_zeros needs a .safetensors path, got {path}")
    sd = model.state_dict()
    if trainable_only:
        sd = {k: v for k, v in sd.items() if not is_backbone_key(k)}
    sd = {k: v.detach().cpu().contiguous() for k, v in sd.items()}
    config = model.config.to_dict()
    with atomic_path(path) as tmp:
        if path.suffix == ".safetensors":
            from safetensors.torch import save_file

            meta = {"format": "pt", "tcmoa_config": json.dumps(config)}
            if omit_zeros:
                zeros = {k: v for k, v in sd.items() if v.numel() and not torch.any(v)}
                meta["zero_tensors"] = json.dumps(
                    {k: [list(v.shape), str(v.dtype).removeprefix("torch.")] for k, v in zeros.items()}
                )
                sd = {k: v for k, v in sd.items() if k not in zeros}
            save_file(sd, str(tmp), metadata=meta)
        else:
            torch.save({"model": sd, "config": config}, tmp)
    return path


# ---------------------------------------------------------------------------------------------- MAE initialisation
def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def download_mae_weights(url: str, *, cache_dir: str | os.PathLike | None = None, sha256: str | None = None,
                         progress: bool = False) -> StateDict:
    """Fetch (once, into ``cache_dir``; default ``$TORCH_HOME/hub/checkpoints``) and read an MAE checkpoint.

    Downloads with ``torch.hub.download_url_to_file`` (atomic) and reads with
    :func:`~fusion.utils.safe_load.load_torch_file` (never full unpickling); with ``sha256`` (full digest or a prefix
    of at least 8 hex digits) the file is verified *before* it is read. ``file://`` URLs work too.
    """
    from urllib.parse import urlparse

    file_name = os.path.basename(urlparse(url).path) or "mae.pth"
    cached = Path(cache_dir if cache_dir is not None else Path(torch.hub.get_dir()) / "checkpoints") / file_name
    if not cached.is_file():
        try:
            cached.parent.mkdir(parents=True, exist_ok=True)
            torch.hub.download_url_to_file(url, str(cached), progress=progress)
        except Exception as exc:
            raise CheckpointError(f"{url}: cannot download MAE weights ({exc.__class__.__name__}: {exc})") from None
    if sha256:
        digest = _sha256(cached)
        want = sha256.lower()
        if len(want) < 8 or not digest.startswith(want):
            raise CheckpointError(f"{cached}: SHA-256 {digest[:16]}… does not match the expected {want[:16]}… "
                                  f"(delete the file to download again)")
    return load_torch_file(cached)


def load_pretrained_backbone(model: TCMoA, source: str | os.PathLike | Mapping[str, Any] | bool, *,
                             cache_dir: str | os.PathLike | None = None) -> list[str]:
    """Initialise the frozen MAE encoder + pixel decoder from an MAE "visualize" checkpoint.

    Args:
        model: the target model; its TC-MoA parts are left untouched.
        source: a file, a URL (``https://…``, ``file://…``), an in-memory dict, or ``True`` for the variant's
            public URL (``config.mae_url``: ``mae_visualize_vit_base.pth`` / ``mae_visualize_vit_large_ganloss.pth``).
        cache_dir: download cache for URLs.

    Returns:
        The loaded keys. Every backbone key must be present with the right shape (else :class:`CheckpointError`);
        MAE's ``mask_token`` is ignored, other extra keys are logged and ignored.
    """
    cfg = model.config
    if source is True:
        if not cfg.mae_url:
            raise CheckpointError(f"{cfg.name}: no public MAE weights exist for this variant; "
                                  f"pass pretrained_backbone=<file> or train from scratch")
        source = cfg.mae_url
    if isinstance(source, str) and re.match(r"^(https?|file)://", source):
        raw: Any = download_mae_weights(source, cache_dir=cache_dir, sha256=cfg.mae_sha256)
        name = source
    else:
        raw = source
        name = str(source) if not isinstance(source, Mapping) else "<MAE state dict>"
    sd = read_state_dict(raw)
    expected = {k: v for k, v in model.state_dict().items() if is_backbone_key(k)}
    missing = sorted(k for k in expected if k not in sd)
    if missing:
        raise CheckpointError(f"{name}: not an MAE checkpoint for {cfg.name}; missing keys: {_short(missing)}")
    bad = [f"{k} {tuple(sd[k].shape)} vs {tuple(v.shape)}" for k, v in expected.items() if sd[k].shape != v.shape]
    if bad:
        raise CheckpointError(f"{name}: MAE checkpoint does not fit {cfg.name}: {_short(bad, 6)}")
    extra = sorted(k for k in sd if k not in expected and k not in _MAE_EXTRA_KEYS)
    if extra:
        log.warning("%s: ignoring non-backbone keys: %s", name, _short(extra))
    params = dict(model.named_parameters())
    with torch.no_grad():
        for key in expected:
            params[key].copy_(sd[key].to(device=params[key].device, dtype=params[key].dtype))
    return sorted(expected)
