"""What a compared segmenter sees: the ``--inputs`` entries of ``pipelines/seg_eval.py``.

Each entry is one of

* ``vis`` / ``ir``: a single modality;
* a fuser spec, ``name`` or ``name:argument`` (``average``, ``gff``, ``tcmoa_tiny``, ``tcmoa_base:/ckpt.pth``): the
  pairs are fused with :func:`fusion.fusers.create_fuser` and cached on disk;
* ``folder:<path>``: fused images made elsewhere, ``<path>/<split>/<name>.<ext>`` or ``<path>/<name>.<ext>``;

optionally prefixed by a row label, ``label=<entry>`` (e.g. ``ours=tcmoa_base:/ckpt.pth``). Labels name the table
rows and the output folders, so they are limited to letters, digits, ``.``, ``_`` and ``-``.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from fusion.errors import ConfigError
from fusion.fusers.spec import FuserSpec

__all__ = ["InputSpec", "parse_input", "parse_inputs"]

_LABEL = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("._-") or "x"


@dataclass(frozen=True)
class InputSpec:
    """One compared input: ``kind`` is ``vis``, ``ir``, ``fuser`` or ``folder``; ``source`` the fuser spec or path."""

    label: str
    kind: str
    source: str | None = None

    @property
    def modality(self) -> str:
        """The dataset ``modality`` this input needs."""
        return self.kind if self.kind in ("vis", "ir") else "fused"

    def describe(self) -> str:
        return self.kind if self.source is None else f"{self.kind} {self.source}"


def parse_input(text: str) -> InputSpec:
    """Parse one ``--inputs`` entry (see the module docs)."""
    entry = str(text).strip()
    if not entry:
        raise ConfigError("empty entry in --inputs")
    label = None
    head, sep, rest = entry.partition("=")
    if sep and _LABEL.match(head) and ":" not in head:
        label, entry = head, rest.strip()
        if not entry:
            raise ConfigError(f"--inputs entry {text!r}: nothing after '{head}='")
    if entry in ("vis", "ir"):
        return InputSpec(label or entry, entry)
    if entry.startswith("folder:"):
        path = entry[len("folder:"):]
        if not path:
            raise ConfigError(f"--inputs entry {text!r}: folder: needs a path")
        return InputSpec(label or f"folder-{_slug(Path(path).name)}", "folder", path)
    try:
        spec = FuserSpec.parse(entry)
    except ConfigError as exc:
        raise ConfigError(f"--inputs entry {text!r}: {exc}") from None
    arg = spec.checkpoint
    auto = _slug(spec.name) if arg is None else f"{_slug(spec.name)}-{_slug(Path(arg).stem or arg)}"
    return InputSpec(label or auto, "fuser", entry)


def parse_inputs(items: Iterable[str]) -> list[InputSpec]:
    """Parse entries (each may also be a comma-separated list); labels must be unique."""
    specs: list[InputSpec] = []
    for item in items:
        for part in str(item).split(","):
            if part.strip():
                specs.append(parse_input(part))
    if not specs:
        raise ConfigError("--inputs: no input given")
    seen: dict[str, InputSpec] = {}
    for s in specs:
        if s.label in seen:
            raise ConfigError(f"--inputs: label {s.label!r} used twice ({seen[s.label].describe()} and "
                              f"{s.describe()}); name them with label=entry")
        seen[s.label] = s
    return specs
