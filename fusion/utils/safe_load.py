"""Loading torch files that may come from anyone, without ever running code from them.

Every ``.pth``/``.pt`` this project reads goes through :func:`load_torch_file`: torch's ``weights_only`` unpickler
with **no callable allow-listed**. Pickles may still name a few non-tensor things that common checkpoints hold:

* numpy arrays, scalars and dtypes (``numpy._core.multiarray._reconstruct`` / ``scalar``, ``numpy.dtype``), e.g. in
  mmengine's ``message_hub`` and ``meta``;
* mmengine's ``HistoryBuffer`` (in ``message_hub``), which pickles its statistics methods as
  ``getattr(HistoryBuffer, 'mean')`` (``builtins.getattr``).

Those names are bound to inert *record* classes that only store their arguments, so the unpickler can call them
without anything happening (torch's own ``_rebuild_from_type_v2`` calls whatever it is given: with a real
``getattr`` allow-listed that reaches ``eval``). The real ``HistoryBuffer`` is never built by the unpickler either:
its ``__setstate__`` would copy the file's statistics methods into the class-wide registry. After unpickling,
:func:`_convert` turns the records into real numpy objects from their raw bytes (plain numeric dtypes only) and
history buffers from their arrays, dropping the pickled statistics methods (the class has its own); any other record,
a ``getattr`` anywhere else included, refuses the file. ``torch.serialization.add_safe_globals``
is never called: the records are allowed only inside :func:`load_torch_file`, so no other load is widened.

:func:`check_finite` rejects state dicts holding NaN or infinity (one such tensor turns a fuser's output black).
"""

from __future__ import annotations

import io
import os
import re
from collections import OrderedDict
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch

from fusion.errors import CheckpointError

__all__ = ["load_torch_file", "check_finite", "describe_load_error"]

# ------------------------------------------------------------------------------------------ inert records


class _Record:
    """Stores the arguments it was built with and the state it was given; does nothing else."""

    __slots__ = ("args", "state")

    def __new__(cls, *args: Any) -> _Record:
        self = super().__new__(cls)
        self.args = args
        self.state = None
        return self

    def __init__(self, *args: Any) -> None:  # arguments are kept by __new__ (NEWOBJ calls only __new__)
        pass

    def __setstate__(self, state: Any) -> None:
        self.state = state


class _ArrayType(_Record):
    """Stands for ``numpy.ndarray`` (the sub-type argument of ``_reconstruct``)."""

    __slots__ = ()


class _ArrayRecord(_Record):
    """``numpy._core.multiarray._reconstruct(subtype, shape, dtype)`` + BUILD state."""

    __slots__ = ()


class _ScalarRecord(_Record):
    """``numpy._core.multiarray.scalar(dtype, raw_bytes)``."""

    __slots__ = ()


class _DtypeRecord(_Record):
    """``numpy.dtype(code, align, copy)`` + BUILD state ``(version, byteorder, ...)``."""

    __slots__ = ()


class _AttrRecord(_Record):
    """``getattr(owner, name)``: never evaluated."""

    __slots__ = ()


class _HistoryRecord(_Record):
    """mmengine's ``HistoryBuffer`` (NEWOBJ + BUILD state ``{max_length, _log_history, _count_history, ...}``)."""

    __slots__ = ()


_NUMPY_NAMES = {
    "numpy.ndarray": _ArrayType,
    "numpy.dtype": _DtypeRecord,
    "numpy._core.multiarray._reconstruct": _ArrayRecord,
    "numpy.core.multiarray._reconstruct": _ArrayRecord,
    "numpy._core.multiarray.scalar": _ScalarRecord,
    "numpy.core.multiarray.scalar": _ScalarRecord,
    "builtins.getattr": _AttrRecord,
    "mmengine.logging.history_buffer.HistoryBuffer": _HistoryRecord,
}
# Plain numeric dtype codes only: an object dtype ('O') would make raw bytes into pointers.
_DTYPE_CODE = re.compile(r"^[?bBhHiIlLqQefdgFDG]$|^(b1|[iu][1248]|f[248]|c(8|16))$")


def _history_buffer() -> type | None:
    try:
        from mmengine.logging.history_buffer import HistoryBuffer
    except ImportError:
        return None
    return HistoryBuffer


def _allowed_globals() -> list[Any]:
    return [(cls, name) for name, cls in _NUMPY_NAMES.items()]


# ------------------------------------------------------------------------------------------ conversion


def _dtype(rec: Any, name: str) -> np.dtype:
    if not isinstance(rec, _DtypeRecord) or not rec.args or not isinstance(rec.args[0], str):
        raise CheckpointError(f"{name}: holds a numpy value of an unreadable dtype")
    code = rec.args[0]
    state = rec.state if isinstance(rec.state, tuple) else ()
    order = state[1] if len(state) > 1 and state[1] in ("<", ">", "|", "=") else "="
    fields = state[3] if len(state) > 3 else None
    if fields is not None or not _DTYPE_CODE.match(code):
        raise CheckpointError(f"{name}: holds a numpy value of dtype {code!r}; only plain numeric dtypes are loaded")
    return np.dtype(code).newbyteorder(order) if order in "<>" else np.dtype(code)


def _raw(data: Any, name: str) -> bytes:
    if isinstance(data, bytes | bytearray):
        return bytes(data)
    if isinstance(data, str):  # protocol 2 stores bytes through _codecs.encode(str, 'latin1')
        return data.encode("latin1")
    raise CheckpointError(f"{name}: holds a numpy value without raw data (object arrays are not loaded)")


def _array(rec: _ArrayRecord, name: str) -> np.ndarray:
    state = rec.state
    if not isinstance(state, tuple) or len(state) != 5:
        raise CheckpointError(f"{name}: holds a malformed numpy array")
    _version, shape, dtype_rec, fortran, data = state
    dt = _dtype(dtype_rec, name)
    shape = tuple(int(s) for s in shape)
    raw = _raw(data, name)
    count = int(np.prod(shape, dtype=np.int64))
    if count * dt.itemsize != len(raw):
        raise CheckpointError(f"{name}: numpy array data does not match its shape {shape}")
    arr = np.frombuffer(raw, dtype=dt, count=count).copy()
    return arr.reshape(shape, order="F" if fortran else "C")


def _scalar(rec: _ScalarRecord, name: str) -> np.generic:
    if len(rec.args) != 2:
        raise CheckpointError(f"{name}: holds a malformed numpy scalar")
    dt = _dtype(rec.args[0], name)
    raw = _raw(rec.args[1], name)
    if len(raw) != dt.itemsize:
        raise CheckpointError(f"{name}: numpy scalar data does not match its dtype")
    return np.frombuffer(raw, dtype=dt, count=1)[0]


def _history(rec: _HistoryRecord, name: str, depth: int) -> Any:
    hb = _history_buffer()
    state = rec.state if isinstance(rec.state, dict) else None
    if hb is None or state is None:
        raise CheckpointError(f"{name}: holds an mmengine HistoryBuffer that cannot be read here")
    log_h = _convert(state.get("_log_history"), name, depth + 1)
    count_h = _convert(state.get("_count_history"), name, depth + 1)
    max_length = state.get("max_length")
    if not (isinstance(log_h, np.ndarray) and isinstance(count_h, np.ndarray) and isinstance(max_length, int)):
        raise CheckpointError(f"{name}: malformed mmengine HistoryBuffer")
    buf = hb.__new__(hb)
    vars(buf).update(max_length=max_length, _log_history=log_h, _count_history=count_h)
    return buf


def _convert(obj: Any, name: str, depth: int = 0) -> Any:
    if depth > 200:
        raise CheckpointError(f"{name}: nested too deeply")
    if isinstance(obj, torch.Tensor | str | bytes | int | float | bool | complex | type(None)):
        return obj
    if isinstance(obj, _ArrayRecord):
        return _array(obj, name)
    if isinstance(obj, _ScalarRecord):
        return _scalar(obj, name)
    if isinstance(obj, _DtypeRecord):
        return _dtype(obj, name)
    if isinstance(obj, _HistoryRecord):
        return _history(obj, name, depth)
    if isinstance(obj, _AttrRecord):
        raise CheckpointError(f"{name}: refers to a function or attribute (not data); refusing to load it")
    if isinstance(obj, _Record):
        raise CheckpointError(f"{name}: holds a numpy object that is not data")
    if isinstance(obj, OrderedDict):
        out = OrderedDict((k, _convert(v, name, depth + 1)) for k, v in obj.items())
        out.__dict__.update(obj.__dict__)  # state dicts keep _metadata here
        return out
    if isinstance(obj, dict):
        return {k: _convert(v, name, depth + 1) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_convert(v, name, depth + 1) for v in obj]
    if isinstance(obj, tuple):
        return tuple(_convert(v, name, depth + 1) for v in obj)
    if isinstance(obj, set):
        return {_convert(v, name, depth + 1) for v in obj}
    return obj  # tensors' dtypes, torch.Size and the like: plain values from torch's own allow-list


# ------------------------------------------------------------------------------------------ loading


def describe_load_error(exc: BaseException) -> str:
    """One line for a failed safe load, without torch's advice to switch safety off."""
    text = str(exc).strip()
    if "Record" in text:  # an inert stand-in was used as a function: a code-running payload
        return "it holds Python objects that could run code when loaded; only tensors and plain data are read"
    if "Unsupported global" in text or "unsupported GLOBAL" in text or "Unsupported operand" in text:
        m = re.search(r"GLOBAL ([\w.]+)", text)
        what = f" ({m.group(1)})" if m else ""
        return f"it holds Python objects{what} that could run code when loaded; only tensors and plain data are read"
    if "weights_only" in text or "WeightsUnpickler" in text:
        lines = [ln for ln in text.splitlines() if ln.strip() and "weights_only" not in ln and "re-running" not in ln]
        detail = lines[-1].strip() if lines else exc.__class__.__name__
        return f"it holds Python objects that could run code when loaded ({detail[:160]}); only tensors are read"
    first = text.splitlines()[0] if text else exc.__class__.__name__
    if ("zip archive" in first or "PytorchStreamReader" in first or "invalid load key" in first
            or isinstance(exc, EOFError)):
        return "not a readable torch file (truncated, corrupt or another format)"
    return f"{exc.__class__.__name__}: {first[:200]}"


def load_torch_file(source: str | os.PathLike | bytes, *, name: str | None = None) -> Any:
    """Read a torch file with ``weights_only=True`` and numpy/mmengine values converted (see the module docstring).

    Args:
        source: a path, or the file's bytes.
        name: what error messages call the file (default: the path).

    Raises:
        CheckpointError: missing, unreadable, or holding anything but tensors and plain data (never runs its code).
    """
    label = name or (str(source) if not isinstance(source, bytes) else "<bytes>")
    if not isinstance(source, bytes):
        path = Path(source)
        if not path.is_file():
            raise CheckpointError(f"{path}: checkpoint not found")
        if path.stat().st_size == 0:
            raise CheckpointError(f"{path}: empty file")
    fileobj: Any = io.BytesIO(source) if isinstance(source, bytes) else str(source)
    try:
        with torch.serialization.safe_globals(_allowed_globals()):
            obj = torch.load(fileobj, map_location="cpu", weights_only=True)
    except CheckpointError:
        raise
    except Exception as exc:  # pickle, zip and weights_only errors all mean "refused" to the user
        raise CheckpointError(f"{label}: cannot read checkpoint: {describe_load_error(exc)}") from None
    return _convert(obj, label)


def check_finite(state: Mapping[str, Any], name: str) -> None:
    """Raise :class:`CheckpointError` naming the first tensors of ``state`` that hold NaN or infinity."""
    bad = [k for k, v in state.items()
           if isinstance(v, torch.Tensor) and v.is_floating_point() and not bool(torch.isfinite(v).all())]
    if bad:
        shown = ", ".join(bad[:5]) + (f", … ({len(bad)} in all)" if len(bad) > 5 else "")
        raise CheckpointError(f"{name}: non-finite weights (NaN or infinity) in {shown}")
