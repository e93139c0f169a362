"""Hostile files for the security tests: checkpoints that run a command when unpickled carelessly.

Each payload creates ``marker`` (a file) when its code runs; the tests assert the marker never appears.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch


class _GetAttr:
    """Pickles as ``getattr(obj, name)``."""

    def __init__(self, obj, name):
        self.obj, self.name = obj, name

    def __reduce__(self):
        return (getattr, (self.obj, self.name))


class _Call:
    """Pickles as torch's allow-listed ``_rebuild_from_type_v2(func, new_type, args, {})``, which calls ``func``."""

    def __init__(self, func, new_type, args):
        self.func, self.new_type, self.args = func, new_type, args

    def __reduce__(self):
        return (torch._tensor._rebuild_from_type_v2, (self.func, self.new_type, self.args, {}))


class _System:
    """The plain pickle payload: ``os.system(command)``."""

    def __init__(self, command):
        self.command = command

    def __reduce__(self):
        return (os.system, (self.command,))


def getattr_chain_payload(marker: str | os.PathLike):
    """Reaches ``eval`` with only ``builtins.getattr`` and torch's default allow-list (the hole of issue 14)."""
    glob = _GetAttr(torch._utils._rebuild_tensor_v2, "__globals__")  # a module's globals dict
    dict_t = _GetAttr(glob, "__class__")
    builtins_d = _Call(_GetAttr(glob, "get"), dict_t, ("__builtins__",))
    builtin_fn_t = _GetAttr(_GetAttr(glob, "get"), "__class__")
    eval_fn = _Call(_GetAttr(builtins_d, "get"), builtin_fn_t, ("eval",))
    code = f"__import__('pathlib').Path({str(marker)!r}).touch()"
    return _Call(eval_fn, _GetAttr(None, "__class__"), (code,))


def system_payload(marker: str | os.PathLike):
    return _System(f"touch '{marker}'")


def write_hostile_checkpoint(path: str | os.PathLike, marker: str | os.PathLike, kind: str = "getattr",
                             wrap: str = "state_dict") -> Path:
    """Write a torch file whose unpickling would create ``marker``; ``wrap`` places the payload where loaders look."""
    payload = getattr_chain_payload(marker) if kind == "getattr" else system_payload(marker)
    body = {"weight": torch.zeros(1), "evil": payload}
    obj = {
        "state_dict": {"state_dict": body, "meta": {}},
        "model": {"model": body},
        "bare": body,
    }[wrap]
    path = Path(path)
    torch.save(obj, path)
    return path
