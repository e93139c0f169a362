"""YOLO weights that load without running code, and the one switch that routes every ultralytics load through them.

An ultralytics ``.pt`` is a full pickle of the model object, and ultralytics unpickles it in full by default, which
runs whatever the file says. This module defines a *safe detector file*: a torch file that
``weights_only=True`` reads with nothing allow-listed::

    {"format": "tcmoa-yolo/1", "yaml": <model yaml as plain dict>, "state_dict": {name: tensor},
     "names": {id: name}, "train_args": {"imgsz": ..., "task": "detect", ...}}

The model is rebuilt from the yaml after :func:`validate_model_yaml` (every module name must resolve to a torch
``nn.Module`` class, every argument must be a literal, the activation must be ``nn.Class(literals)``: ultralytics'
``parse_model`` calls ``eval`` on the activation and looks module names up in its globals).

:func:`install_safe_yolo_loading` replaces ``ultralytics.nn.tasks.torch_safe_load``, which every ultralytics load
goes through (``YOLO(path)``, ``pretrained=``, resume, the validator's ``AutoBackend``): safe detector files load;
ultralytics pickles are refused with a one-line :class:`~fusion.errors.CheckpointError` unless they lie under a
path the caller vouches for with :func:`trusted_paths` (the ``--trust-checkpoint`` flag, or the run folder that
:func:`~downstream.detection.yolo.train_detector` is writing right now).
"""

from __future__ import annotations

import ast
import contextlib
import math
import os
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch

from fusion.errors import CheckpointError
from fusion.utils.io import atomic_path, is_within
from fusion.utils.safe_load import check_finite, load_torch_file

__all__ = [
    "SAFE_FORMAT",
    "SAFE_SUFFIX",
    "convert_trusted_detector",
    "install_safe_yolo_loading",
    "trusted_paths",
    "is_trusted",
    "validate_model_yaml",
    "save_safe_detector",
    "build_safe_detector",
]

SAFE_FORMAT = "tcmoa-yolo/1"
SAFE_SUFFIX = ".safe.pt"  # ultralytics insists on ".pt"
_TRAIN_ARG_KEYS = ("imgsz", "task", "single_cls", "channels")
_TRUSTED: list[Path] = []
_LOCK = threading.Lock()
_ORIGINAL_LOADER: Any = None


# ------------------------------------------------------------------------------------------------ trust


@contextlib.contextmanager
def trusted_paths(*paths: str | os.PathLike) -> Iterator[None]:
    """Within the block, ultralytics pickles at or below ``paths`` load with full unpickling (they can run code)."""
    added = [Path(p).resolve() for p in paths]
    with _LOCK:
        _TRUSTED.extend(added)
    try:
        yield
    finally:
        with _LOCK:
            for p in added:
                _TRUSTED.remove(p)


def is_trusted(path: str | os.PathLike) -> bool:
    with _LOCK:
        return any(is_within(path, t) for t in _TRUSTED)


# ------------------------------------------------------------------------------------------------ yaml


def _is_literal(value: Any, depth: int = 0) -> bool:
    if depth > 8:
        return False
    if value is None or isinstance(value, bool | int | str):
        return True
    if isinstance(value, float):
        return math.isfinite(value) or math.isinf(value)
    if isinstance(value, list | tuple):
        return all(_is_literal(v, depth + 1) for v in value)
    if isinstance(value, dict):
        return all(isinstance(k, str | int) and _is_literal(v, depth + 1) for k, v in value.items())
    return False


def _resolve_module(name: str) -> Any:
    """The class ``parse_model`` would use for ``name``, or None when it is not a torch module class."""
    import ultralytics.nn.tasks as tasks

    if not isinstance(name, str) or not name.replace(".", "").replace("_", "").isalnum():
        return None
    if name.startswith("nn."):
        obj = getattr(torch.nn, name[3:], None)
    elif name.startswith("torchvision.ops."):
        import torchvision.ops

        obj = getattr(torchvision.ops, name[16:], None)
    else:
        obj = vars(tasks).get(name)
    return obj if isinstance(obj, type) and issubclass(obj, torch.nn.Module) else None


def _activation_ok(act: Any) -> bool:
    if act is None:
        return True
    try:
        call = ast.parse(str(act).strip(), mode="eval").body
    except SyntaxError:
        return False
    if not isinstance(call, ast.Call) or not isinstance(call.func, ast.Attribute):
        return False
    chain, node = [call.func.attr], call.func.value
    while isinstance(node, ast.Attribute):
        chain.append(node.attr)
        node = node.value
    if not isinstance(node, ast.Name):
        return False
    chain.append(node.id)
    if chain[1:] not in (["nn"], ["nn", "torch"]):
        return False
    klass = getattr(torch.nn, chain[0], None)
    if not (isinstance(klass, type) and issubclass(klass, torch.nn.Module)):
        return False
    try:
        for a in [*call.args, *(k.value for k in call.keywords)]:
            ast.literal_eval(a)
    except ValueError:
        return False
    return True


def validate_model_yaml(d: Any, name: str) -> dict[str, Any]:
    """Check a model yaml from an untrusted file before ultralytics builds it; returns it unchanged.

    Raises:
        CheckpointError: a layer names something other than a torch module class, an argument is not a literal,
            or the activation is not ``nn.Class(literal args)``.
    """
    if not isinstance(d, dict) or not _is_literal(d):
        raise CheckpointError(f"{name}: the model description is not plain data")
    layers = d.get("backbone"), d.get("head")
    if not all(isinstance(part, list) for part in layers):
        raise CheckpointError(f"{name}: the model description lacks 'backbone'/'head' layer lists")
    for i, layer in enumerate(layers[0] + layers[1]):
        if not (isinstance(layer, list | tuple) and len(layer) == 4):
            raise CheckpointError(f"{name}: layer {i} is not [from, number, module, args]")
        src, n, module, args = layer
        if not isinstance(n, int) or not (isinstance(src, int) or (isinstance(src, list | tuple)
                                                                     and all(isinstance(s, int) for s in src))):
            raise CheckpointError(f"{name}: layer {i} has a malformed 'from' or 'number'")
        if _resolve_module(module) is None:
            raise CheckpointError(f"{name}: layer {i} names {module!r}, which is not a torch module class")
        if not isinstance(args, list | tuple):  # strings in args only meet ast.literal_eval or a local name
            raise CheckpointError(f"{name}: layer {i} arguments are not a list")
    if not _activation_ok(d.get("activation")):
        raise CheckpointError(f"{name}: activation {d.get('activation')!r} is not nn.Class(literal arguments)")
    return d


# ------------------------------------------------------------------------------------------------ files


def save_safe_detector(model: Any, target: str | os.PathLike, *, train_args: dict[str, Any] | None = None) -> Path:
    """Write an ultralytics ``DetectionModel`` (or a ``YOLO`` wrapping one) as a safe detector file, atomically."""
    from ultralytics.engine.model import Model

    inner = model.model if isinstance(model, Model) else model
    names = inner.names if isinstance(inner.names, dict) else dict(enumerate(inner.names))
    args = dict(train_args or {})
    payload = {
        "format": SAFE_FORMAT,
        "yaml": _plain(inner.yaml),
        "state_dict": {k: v.detach().cpu().clone() for k, v in inner.float().state_dict().items()},
        "names": {int(k): str(v) for k, v in names.items()},
        "train_args": {k: _plain(v) for k, v in args.items() if k in _TRAIN_ARG_KEYS},
    }
    target = Path(target)
    with atomic_path(target) as tmp:
        torch.save(payload, tmp)
    return target


def _plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k) if not isinstance(k, int) else k: _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if value is None or isinstance(value, bool | int | float | str):
        return value
    return str(value)


def build_safe_detector(obj: dict[str, Any], name: str) -> dict[str, Any]:
    """An ultralytics checkpoint dict (``{"model": DetectionModel, "train_args": {...}}``) from a safe file's data."""
    from ultralytics.nn.tasks import DetectionModel

    for key in ("yaml", "state_dict", "names"):
        if key not in obj:
            raise CheckpointError(f"{name}: safe detector file lacks {key!r}")
    yaml = validate_model_yaml(obj["yaml"], name)
    state = obj["state_dict"]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise CheckpointError(f"{name}: 'state_dict' is not a mapping of tensors")
    check_finite(state, name)
    names = obj["names"]
    if not isinstance(names, dict) or not all(isinstance(k, int) and isinstance(v, str) for k, v in names.items()):
        raise CheckpointError(f"{name}: 'names' is not a {{id: name}} map")
    try:
        model = DetectionModel(cfg=dict(yaml), ch=int(yaml.get("channels", 3)), nc=len(names), verbose=False)
        model.load_state_dict(state, strict=True)
    except (RuntimeError, KeyError, ValueError, TypeError, IndexError, SyntaxError, AttributeError) as exc:
        msg = str(exc).splitlines()[0] if str(exc) else exc.__class__.__name__
        raise CheckpointError(f"{name}: weights do not fit the stored model ({msg[:200]})") from None
    model.names = dict(names)
    train_args = obj.get("train_args") if isinstance(obj.get("train_args"), dict) else {}
    train_args = {k: v for k, v in train_args.items() if k in _TRAIN_ARG_KEYS and _is_literal(v)}
    return {"model": model, "train_args": train_args}


# ------------------------------------------------------------------------------------------------ switch


def _refusal(path: Path) -> CheckpointError:
    return CheckpointError(
        f"{path}: an ultralytics .pt is a pickle that can run code when loaded; refused. If you made this file or "
        "trust its source, pass --trust-checkpoint (or convert it once with "
        "downstream.detection.safe_weights.convert_trusted_detector)"
    )


def _safe_torch_safe_load(weight: Any, safe_only: Any = None) -> tuple[dict[str, Any], str]:
    path = Path(str(weight))
    if not path.is_file():
        raise CheckpointError(f"{path}: weights file not found (no download is attempted)")
    if is_trusted(path):
        return _ORIGINAL_LOADER(weight, safe_only)
    try:
        obj = load_torch_file(path)
    except CheckpointError as exc:
        if "could run code" in str(exc):
            raise _refusal(path) from None
        raise
    if not isinstance(obj, dict) or obj.get("format") != SAFE_FORMAT:
        raise CheckpointError(f"{path}: not a detector file (expected a safe detector file, format {SAFE_FORMAT})")
    return build_safe_detector(obj, str(path)), str(path)


def install_safe_yolo_loading() -> None:
    """Make every ultralytics weight load go through :func:`_safe_torch_safe_load` (idempotent)."""
    global _ORIGINAL_LOADER
    import ultralytics.nn.tasks as tasks

    if getattr(tasks.torch_safe_load, "_tcmoa_safe", False):
        return
    _ORIGINAL_LOADER = tasks.torch_safe_load
    _safe_torch_safe_load._tcmoa_safe = True  # type: ignore[attr-defined]
    tasks.torch_safe_load = _safe_torch_safe_load


def convert_trusted_detector(source: str | os.PathLike, target: str | os.PathLike) -> Path:
    """Load an ultralytics ``.pt`` you trust (full unpickling) and write it as a safe detector file."""
    from downstream.detection.yolo import import_yolo

    src = Path(source)
    if Path(target).resolve() == src.resolve():
        raise CheckpointError(f"{src}: the safe copy must not overwrite the source")
    YOLO = import_yolo()
    with trusted_paths(src):
        model = YOLO(str(src), task="detect")
    args = (getattr(model, "ckpt", None) or {}).get("train_args", {})
    return save_safe_detector(model.model, target, train_args={k: args[k] for k in _TRAIN_ARG_KEYS if k in args})
