"""Stable short fingerprints for cache folders and run folders (the same value on every machine and run)."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

__all__ = ["digest", "file_identity"]


def digest(obj: Any, n: int = 10) -> str:
    """The first ``n`` hex digits of the SHA-1 of ``obj`` as canonical JSON (keys sorted, ``str`` for the rest)."""
    return hashlib.sha1(json.dumps(obj, sort_keys=True, default=str).encode("utf-8")).hexdigest()[:n]


def file_identity(path: str | os.PathLike | None) -> dict[str, Any] | str | None:
    """What says a file changed without reading it: resolved path, size and modification time (seconds).

    A path that is not a file is returned as a string (it may name a registry entry or a folder); ``None`` stays.
    """
    if path is None or path == "":
        return None
    p = Path(path)
    if not p.is_file():
        return str(p)
    st = p.stat()
    return {"path": str(p.resolve()), "size": st.st_size, "mtime": int(st.st_mtime)}
