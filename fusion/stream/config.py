"""Settings of a streaming run: :class:`StreamConfig`, its checks, and how ``key=value`` options become one.

The command line (``stream_fuse.py batch=4 tolerance_s=0.03``) and :func:`fusion.stream.run_stream` (``batch=4``) both
go through :meth:`StreamConfig.from_options`: unknown keys and values of the wrong type are a
:class:`~fusion.errors.ConfigError` naming the option, never a ``TypeError``.
"""

from __future__ import annotations

import dataclasses
import numbers
import os
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from fusion.errors import ConfigError
from fusion.tasks import TASKS
from fusion.utils.cli import comma_list

__all__ = ["StreamConfig"]


@dataclass
class StreamConfig:
    """Settings of a :class:`~fusion.stream.StreamPipeline` run.

    Attributes:
        task: fusion task passed to the fuser (``vif``: a = visible, b = infrared).
        batch: pairs fused per call (file sources only; live sources always fuse the newest single pair).
        pairing: ``auto`` (index for files, timestamp when a source is live), ``index`` or ``timestamp``.
        tolerance_s: largest arrival-time difference of a timestamp pair.
        stall_timeout_s: a source silent this long while we wait for it is treated as ended.
        queue_size: reader read-ahead for file sources (frames; at least twice the batch); small, since every
            buffered frame adds one fusion time to the latency.
        live_buffer: ring buffer of live sources (frames); older frames are dropped.
        max_frames: stop after this many fused frames (``None``: until a source ends).
        register: ``None``/``"none"`` (resize only), ``"auto"`` (estimate once) or a homography file.
        register_frames: pairs used by ``"auto"`` registration.
        fps: frame rate written into the output video (default: the visible source's, else 25); also the frame rate
            of image-folder sources.
        temporal: compute temporal-consistency measures of the fused stream, in a low-priority thread of its own;
            transitions are skipped (and counted) rather than slowing the stream when that thread falls behind.
        temporal_max_side: frame size (longer side) for the temporal measures; small, since optical flow is costly.
        temporal_budget: the largest share of the wall time the temporal measures may take (0.05: a twentieth); beyond
            it transitions are skipped and counted, so that on a small machine they do not slow the fuser.
        progress: tqdm bar for file sources.
        handle_sigint: turn the first Ctrl-C into a clean stop (only when run from the main thread).
        serve_linger_s: keep the MJPEG server up this long after the end (``-1``: until Ctrl-C).
        labels: panel labels of the served side-by-side view.
        realtime: pace video files at their frame rate and treat them as live sources (to try the live policy).
        fourcc: codec of output videos (default by extension: ``mp4v`` for .mp4, ``MJPG`` for .avi).
    """

    task: str = "vif"
    batch: int = 1
    pairing: Literal["auto", "index", "timestamp"] = "auto"
    tolerance_s: float = 0.05
    stall_timeout_s: float = 10.0
    queue_size: int = 4
    live_buffer: int = 4
    max_frames: int | None = None
    register: str | None = None
    register_frames: int = 3
    fps: float | None = None
    temporal: bool = True
    temporal_max_side: int = 160
    temporal_budget: float = 0.05
    progress: bool = True
    handle_sigint: bool = True
    serve_linger_s: float = 0.0
    labels: tuple[str, str, str] = ("infrared", "visible", "fused")
    realtime: bool = False
    fourcc: str | None = None

    @classmethod
    def from_options(cls, options: Mapping[str, Any], *, base: StreamConfig | None = None) -> StreamConfig:
        """``base`` (default settings when ``None``) with ``options`` applied, type-checked and validated.

        Values may come from the command line: a comma-separated string is a list (``labels=ir,vis,fused``), ``none``
        was already read as ``None``, numbers as numbers.

        Raises:
            ConfigError: an unknown option, a value of the wrong type, or a value :meth:`validate` refuses.
        """
        hints = typing.get_type_hints(cls)
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(options) - known)
        if unknown:
            raise ConfigError(f"unknown stream option(s) {', '.join(unknown)} (known: {', '.join(sorted(known))})")
        values = {key: _coerce(key, value, hints[key]) for key, value in options.items()}
        cfg = dataclasses.replace(base, **values) if base is not None else cls(**values)
        cfg.validate()
        return cfg

    def validate(self) -> None:
        """Raise :class:`ConfigError` for a setting out of range."""
        if self.task not in TASKS:
            raise ConfigError(f"task={self.task!r}: expected one of {', '.join(TASKS)}")
        if self.batch < 1:
            raise ConfigError(f"batch={self.batch}: must be >= 1")
        if self.pairing not in ("auto", "index", "timestamp"):
            raise ConfigError(f"pairing={self.pairing!r}: expected auto, index or timestamp")
        if self.tolerance_s < 0:
            raise ConfigError(f"tolerance_s={self.tolerance_s}: must be >= 0")
        if self.stall_timeout_s <= 0:
            raise ConfigError(f"stall_timeout_s={self.stall_timeout_s}: must be > 0")
        if self.queue_size < 1 or self.live_buffer < 1:
            raise ConfigError("queue_size and live_buffer must be >= 1")
        if self.max_frames is not None and self.max_frames < 1:
            raise ConfigError(f"max_frames={self.max_frames}: must be >= 1")
        if self.register_frames < 1:
            raise ConfigError(f"register_frames={self.register_frames}: must be >= 1")
        if self.fps is not None and self.fps <= 0:
            raise ConfigError(f"fps={self.fps}: must be > 0")
        if not 0 < self.temporal_budget <= 1:
            raise ConfigError(f"temporal_budget={self.temporal_budget}: must lie in (0, 1]")


def _coerce(key: str, value: Any, hint: Any) -> Any:
    """``value`` as the field type ``hint``: int, float, bool, str, Literal, tuple, or one of those or None."""
    args = typing.get_args(hint)
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        hint = next(a for a in args if a is not type(None))
        args = typing.get_args(hint)
    origin = typing.get_origin(hint)
    if origin is Literal:
        hint = type(args[0])
    elif origin is tuple:
        items = comma_list(value) if isinstance(value, str) else value
        if not isinstance(items, (list, tuple)) or (len(args) != len(items) and args[-1] is not Ellipsis):
            raise ConfigError(f"{key}={value!r}: expected {len(args)} comma-separated values")
        return tuple(str(v) for v in items)
    if hint is bool and isinstance(value, bool):
        return value
    if not isinstance(value, bool):  # True is an Integral, but never a frame count
        if hint is int and isinstance(value, numbers.Integral):
            return int(value)
        if hint is float and isinstance(value, numbers.Real):
            return float(value)
        if hint is str and isinstance(value, (str, numbers.Real, os.PathLike)):
            return os.fspath(value) if isinstance(value, os.PathLike) else str(value)
    raise ConfigError(f"{key}={value!r}: expected {getattr(hint, '__name__', hint)}")
