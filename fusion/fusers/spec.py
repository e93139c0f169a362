"""A fusion method as one parsed value: :class:`FuserSpec` (name, checkpoint, settings) with its cache key.

Everything that takes a method on the command line or in a config (``gff``, ``tcmoa_base:/ckpt.pth``) parses it here
once; nobody else splits on ``:``. The spec knows

* how to build the fuser (:meth:`FuserSpec.build`): settings go to the factory, and runtime options (``device``,
  ``compat``, ``amp_dtype`` ...) only when the factory declares them (its signature), so nothing is probed by catching
  ``TypeError``;
* what decides its pixels (:meth:`FuserSpec.cache_key`): name, checkpoint file identity (the shipped weights count
  when no checkpoint is given, so retrained weights are fused again), settings; never the device;
* a folder-safe name (:attr:`FuserSpec.slug`) for caches and run folders.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fusion.errors import ConfigError
from fusion.fusers.base import Fuser, accepted_options, create_fuser
from fusion.fusers.color import ColorFuser
from fusion.utils.fingerprint import digest, file_identity
from fusion.weights import SHIPPED_WEIGHTS

__all__ = ["FuserSpec", "build_fuser", "RUNTIME_OPTIONS"]

RUNTIME_OPTIONS: tuple[str, ...] = ("device",)
"""Options that choose where a fuser runs, not what it computes: left out of :meth:`FuserSpec.cache_key`."""


@dataclass(frozen=True)
class FuserSpec:
    """One fusion method: registry ``name``, optional ``checkpoint`` (the part after ``:``) and ``options``.

    Attributes:
        name: registered fuser name (``gff``, ``tcmoa_base``).
        checkpoint: the spec's argument, usually a weights file; ``None`` when the spec has none.
        options: keyword settings for the fuser's factory (e.g. ``{"levels": 5}``).
    """

    name: str
    checkpoint: str | None = None
    options: Mapping[str, Any] = field(default_factory=dict)

    @classmethod
    def parse(cls, spec: str | FuserSpec, options: Mapping[str, Any] | None = None) -> FuserSpec:
        """``"name"`` or ``"name:argument"`` (plus settings) -> :class:`FuserSpec`.

        Raises:
            ConfigError: an empty name or an empty argument after ``:``.
        """
        if isinstance(spec, FuserSpec):
            return spec if not options else cls(spec.name, spec.checkpoint, {**spec.options, **options})
        name, sep, arg = str(spec).partition(":")
        name, arg = name.strip(), arg.strip()
        if not name:
            raise ConfigError(f"fusion method {spec!r}: empty name (expected name or name:checkpoint)")
        if sep and not arg:
            raise ConfigError(f"fusion method {spec!r}: nothing after ':' (expected name:checkpoint)")
        return cls(name, arg if sep else None, dict(options or {}))

    def __str__(self) -> str:
        return f"{self.name}:{self.checkpoint}" if self.checkpoint is not None else self.name

    @property
    def weights_file(self) -> Path | None:
        """The weights this spec fuses with: its checkpoint, else the shipped weights of ``name`` if any."""
        if self.checkpoint is not None:
            return Path(self.checkpoint)
        return SHIPPED_WEIGHTS.get(self.name)

    @property
    def slug(self) -> str:
        """A folder-safe name: ``name`` alone, or with a short hash when a checkpoint or settings make it differ."""
        base = re.sub(r"[^A-Za-z0-9_.-]+", "_", self.name).strip("._") or "fuser"
        if self.checkpoint is None and not self.options and base == self.name:
            return base
        return f"{base}-{digest({'spec': str(self), 'options': self._option_record()}, 8)}"

    def _option_record(self) -> dict[str, str]:
        return {k: repr(v) for k, v in sorted(self.options.items()) if k not in RUNTIME_OPTIONS}

    def cache_key(self, **context: Any) -> str:
        """A short hash of everything that decides this method's pixels, plus ``context`` (task, data ...).

        The checkpoint (or shipped weights) enters by path, size and modification time: retrained weights get a
        new key. Runtime options (:data:`RUNTIME_OPTIONS`) do not enter.
        """
        weights = self.weights_file
        record = {"spec": str(self), "options": self._option_record(),
                  "weights": file_identity(weights), "context": context}
        return digest(record, 12)

    def record(self) -> dict[str, Any]:
        """A JSON-ready description (written next to cached images and results)."""
        weights = self.weights_file
        return {"spec": str(self), "options": self._option_record(),
                "weights": file_identity(weights)}

    def build(self, **runtime: Any) -> Fuser:
        """Build the fuser: ``options`` always, ``runtime`` options only where the factory declares them.

        Raises:
            ConfigError: unknown method, or an option the method does not take.
        """
        extra = accepted_options(self.name, {k: v for k, v in runtime.items() if k not in self.options})
        return create_fuser(str(self), **extra, **dict(self.options))


def build_fuser(
    spec: str | FuserSpec,
    *,
    device: Any = None,
    color: str = "rgb",
    chroma: str = "auto",
    compat: str = "default",
    **settings: Any,
) -> Fuser:
    """The fuser for ``spec``, with ``device`` and (``compat="official"``) ``compat``, wrapped for ``color``.

    ``device`` and ``compat`` reach the methods that declare them (TC-MoA does; the CPU baselines do not).

    Raises:
        ConfigError: unknown method, or settings the method does not take.
    """
    runtime: dict[str, Any] = {}
    if device is not None:
        runtime["device"] = str(device)
    if compat == "official":
        runtime["compat"] = "official"  # TC-MoA then also resizes and tiles like the official code
    fuser = FuserSpec.parse(spec, settings).build(**runtime)
    return ColorFuser(fuser, mode=color, chroma=chroma) if color != "rgb" else fuser
