"""Where fused frames go: a video file or an image sequence, both written atomically.

The video is written to a temporary file beside the target and renamed onto it when the sink is closed, so the
target is either absent or a complete, playable file (also after Ctrl-C, since closing releases the writer first).
OpenCV's wheels have no H.264 encoder: ``.mp4``/``.mov``/``.m4v`` use ``mp4v``, ``.avi``/``.mkv`` use ``MJPG``.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path
from typing import Protocol, runtime_checkable

import cv2
import numpy as np

from fusion.errors import InputError
from fusion.utils.io import IMAGE_EXTENSIONS, atomic_path
from fusion.utils.logging import get_logger

__all__ = ["FrameSink", "VideoFileSink", "ImageSequenceSink", "open_sink", "VIDEO_FOURCC"]

log = get_logger(__name__)

VIDEO_FOURCC = {".mp4": "mp4v", ".m4v": "mp4v", ".mov": "mp4v", ".avi": "MJPG", ".mkv": "MJPG"}


@runtime_checkable
class FrameSink(Protocol):
    """Receives RGB ``(H, W, 3)`` uint8 frames in order; :meth:`close` finalises the output."""

    path: Path
    frames: int

    def write(self, frame: np.ndarray) -> None: ...

    def close(self) -> None: ...


class VideoFileSink:
    """Write frames into a video file (opened on the first frame, whose size fixes the video size).

    Args:
        path: target file; its extension picks the container and default codec (see :data:`VIDEO_FOURCC`).
        fps: frame rate stored in the file.
        fourcc: four-character codec code overriding the default (``mp4v``, ``MJPG``, ``XVID``).
    """

    def __init__(self, path: str | os.PathLike, fps: float, *, fourcc: str | None = None):
        self.path = Path(path)
        suffix = self.path.suffix.lower()
        if suffix not in VIDEO_FOURCC:
            raise InputError(f"{self.path}: unsupported video extension (use one of {', '.join(VIDEO_FOURCC)})")
        code = fourcc or VIDEO_FOURCC[suffix]
        if len(code) != 4:
            raise InputError(f"{self.path}: fourcc must have 4 characters, got {code!r}")
        if code.lower() in ("avc1", "h264", "x264"):
            raise InputError(f"{self.path}: H.264 ({code}) is not available in OpenCV's wheels; use mp4v or MJPG")
        if not fps or fps <= 0:
            raise InputError(f"{self.path}: frame rate must be positive, got {fps}")
        self.fourcc = code
        self.fps = float(fps)
        self.frames = 0
        self._writer: cv2.VideoWriter | None = None
        self._tmp: Path | None = None
        self._size: tuple[int, int] | None = None

    def _open(self, w: int, h: int) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{self.path.stem}.", suffix=f".tmp{self.path.suffix}", dir=self.path.parent)
        os.close(fd)
        self._tmp = Path(tmp)
        writer = cv2.VideoWriter(str(self._tmp), cv2.VideoWriter_fourcc(*self.fourcc), self.fps, (w, h))
        if not writer.isOpened():
            self._discard()
            raise InputError(f"{self.path}: OpenCV cannot open a {self.fourcc} video writer for it")
        self._writer = writer
        self._size = (w, h)

    def write(self, frame: np.ndarray) -> None:
        """Append one RGB frame (resized to the first frame's size if it differs)."""
        h, w = frame.shape[:2]
        if self._writer is None:
            self._open(w, h)
        assert self._writer is not None and self._size is not None
        if (w, h) != self._size:
            frame = cv2.resize(frame, self._size, interpolation=cv2.INTER_AREA)
        self._writer.write(cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
        self.frames += 1

    def close(self) -> None:
        """Release the writer and move the finished file onto the target (nothing is written for zero frames)."""
        if self._writer is not None:
            self._writer.release()
            self._writer = None
        if self._tmp is None:
            return
        if self.frames == 0:
            self._discard()
            log.warning("%s: no frame written, no file created", self.path)
            return
        # mkstemp creates 0600 files; a finished video gets the usual permissions.
        os.chmod(self._tmp, 0o666 & ~_umask())
        os.replace(self._tmp, self.path)
        self._tmp = None

    def _discard(self) -> None:
        if self._tmp is not None:
            with contextlib.suppress(FileNotFoundError):
                self._tmp.unlink()
            self._tmp = None


class ImageSequenceSink:
    """Write each frame as ``frame_000000.png`` (or another image extension) into a folder, atomically."""

    def __init__(self, folder: str | os.PathLike, *, ext: str = ".png", prefix: str = "frame_"):
        self.path = Path(folder)
        ext = ext if ext.startswith(".") else f".{ext}"
        if ext.lower() not in IMAGE_EXTENSIONS:
            known = ", ".join(IMAGE_EXTENSIONS)
            raise InputError(f"{self.path}: unsupported image extension {ext} (use one of {known})")
        self.ext = ext.lower()
        self.prefix = prefix
        self.frames = 0
        self.path.mkdir(parents=True, exist_ok=True)

    def write(self, frame: np.ndarray) -> None:
        target = self.path / f"{self.prefix}{self.frames:06d}{self.ext}"
        params = [cv2.IMWRITE_PNG_COMPRESSION, 1] if self.ext == ".png" else []
        if self.ext in (".jpg", ".jpeg"):
            params = [cv2.IMWRITE_JPEG_QUALITY, 95]
        with atomic_path(target) as tmp:
            if not cv2.imwrite(str(tmp), cv2.cvtColor(frame, cv2.COLOR_RGB2BGR), params):
                raise InputError(f"{target}: OpenCV could not write the image")
        self.frames += 1

    def close(self) -> None:
        return None


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def open_sink(out: str | os.PathLike, *, fps: float, fourcc: str | None = None, image_ext: str = ".png") -> FrameSink:
    """A video sink for a path with a video extension, else an image-sequence folder."""
    p = Path(out)
    if p.suffix.lower() in VIDEO_FOURCC:
        return VideoFileSink(p, fps, fourcc=fourcc)
    if p.suffix and not p.is_dir():
        raise InputError(
            f"{p}: unknown output type (use a video file {', '.join(VIDEO_FOURCC)} or a folder for an image sequence)"
        )
    return ImageSequenceSink(p, ext=image_ext)
