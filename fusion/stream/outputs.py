"""Checks on where a streaming run writes, made before anything is opened: never into an input folder, never over an
input, a ``.json`` stats file, a codec only for a video output."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from fusion.errors import InputError
from fusion.stream.sinks import VIDEO_FOURCC
from fusion.stream.sources import FrameSource, source_folder
from fusion.utils.io import is_within

__all__ = ["check_output_location", "check_run_outputs"]


def check_output_location(out: str | os.PathLike, sources: Sequence[str | FrameSource]) -> None:
    """Refuse an output that is a source or lies inside a source's folder (never write into input folders)."""
    o = Path(out)
    for s in sources:
        spec = s.spec if isinstance(s, FrameSource) else str(s)
        folder = source_folder(spec)
        if folder is None:
            continue
        if Path(spec).exists() and o.resolve() == Path(spec).resolve():
            raise InputError(f"{o}: output would overwrite the input {spec}")
        if is_within(o, folder):
            raise InputError(f"{o}: output lies inside the input folder {folder}; choose another location")


def check_run_outputs(
    sources: Sequence[str | FrameSource],
    *,
    out: str | os.PathLike | None = None,
    stats_file: str | os.PathLike | None = None,
    fourcc: str | None = None,
) -> None:
    """The checks of a whole run: the stats file (location, ``.json``) and a ``fourcc`` that needs a video ``out``.

    The frame output's own location is checked when the pipeline is built (:func:`check_output_location`).
    """
    if stats_file is not None:
        check_output_location(stats_file, sources)
        if Path(stats_file).suffix.lower() != ".json":
            raise InputError(f"--stats {stats_file}: expected a .json file")
    if out is not None and fourcc and Path(out).suffix.lower() not in VIDEO_FOURCC:
        raise InputError(f"--fourcc needs a video --out, got {out}")
