""":func:`run_stream`: one streaming run from plain arguments, the single entry of ``pipelines/stream_fuse.py``.

Everything a run needs besides the :class:`StreamPipeline` itself happens here, once: the options become a checked
:class:`StreamConfig`, the outputs are checked, the fuser is built (:func:`build_stream_fuser`), the perception
overlay and the MJPEG server are created, and the stats are written. The script only parses its command line into
these arguments, so the script and a Python caller get the same run for the same arguments.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from typing import Any

from fusion.fusers.base import Fuser
from fusion.fusers.spec import FuserSpec
from fusion.stream.config import StreamConfig
from fusion.stream.fuser import build_stream_fuser
from fusion.stream.outputs import check_run_outputs
from fusion.stream.perceive import Perceiver, create_perceiver
from fusion.stream.pipeline import StreamPipeline
from fusion.stream.server import MjpegServer
from fusion.stream.sources import FrameSource
from fusion.utils.device import resolve_device
from fusion.utils.io import atomic_write_text

__all__ = ["run_stream"]


def run_stream(
    vis: str | FrameSource,
    ir: str | FrameSource,
    method: str | FuserSpec | Fuser = "average",
    *,
    out: str | os.PathLike | None = None,
    stats_file: str | os.PathLike | None = None,
    device: str = "auto",
    precision: str = "fp32",
    fuser_settings: Mapping[str, Any] | None = None,
    serve: int | None = None,
    perceiver: Perceiver | Mapping[str, Any] | None = None,
    config: StreamConfig | None = None,
    **options: Any,
) -> dict[str, Any]:
    """Build the fuser, run the pipeline, write and return the stats.

    Args:
        vis, ir: the visible and infrared sources (files, folders, camera indices, URLs, or :class:`FrameSource`).
        method: fuser spec (``gff``, ``tcmoa_base:ckpt.pth``), :class:`FuserSpec` or a ready :class:`Fuser`.
        out: output video file or image folder.
        stats_file: write the stats here as JSON (checked before the run starts).
        device, precision: where and at which precision the fuser (and a perception overlay) runs.
        fuser_settings: the fuser's own settings (``{"levels": 5}``).
        serve: port of an MJPEG view on 127.0.0.1.
        perceiver: a :class:`Perceiver`, or the keyword arguments of :func:`create_perceiver` (``segment``,
            ``seg_checkpoint``, ``detect``, ``conf``, ``imgsz``, ``trust``), built for ``device`` and ``precision``.
        config: base settings; ``options`` (any :class:`StreamConfig` field, e.g. ``batch=4``) are applied on top.

    Raises:
        ConfigError: unknown options, fuser or settings; InputError: unusable sources or outputs.
    """
    cfg = StreamConfig.from_options(options, base=config)
    check_run_outputs([vis, ir], out=out, stats_file=stats_file, fourcc=cfg.fourcc)
    fuser = build_stream_fuser(method, device=device, precision=precision, settings=fuser_settings)
    if isinstance(perceiver, Mapping):
        perceiver = create_perceiver(**perceiver, device=str(resolve_device(device)), precision=precision)
    server = MjpegServer(serve) if serve is not None else None
    pipe = StreamPipeline(
        vis, ir, fuser, config=cfg, outputs=[out] if out is not None else [], server=server, perceiver=perceiver,
        fps_hint=cfg.fps,
    )
    stats = pipe.run()
    if stats_file is not None:
        atomic_write_text(stats_file, json.dumps(stats, indent=2))
    return stats
