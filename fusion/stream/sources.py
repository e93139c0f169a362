"""Frame sources: video files, image-sequence folders, cameras, network streams, and in-memory iterators.

Every source yields ``uint8`` RGB ``(H, W, 3)`` frames (grayscale is replicated to three channels) and says whether
it is *live* (a camera or network stream that produces frames at its own pace, where stale frames are worthless) or a
*file* (every frame must be processed, in order).

A source reports a frame it could not decode as :data:`CORRUPT` instead of raising, so that index pairing of two
files stays aligned; ``None`` means the stream has ended.
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

import cv2
import numpy as np

from fusion.errors import InputError
from fusion.utils.io import IMAGE_EXTENSIONS, read_image
from fusion.utils.logging import get_logger

__all__ = [
    "CORRUPT",
    "FrameSource",
    "VideoCaptureSource",
    "ImageFolderSource",
    "IteratorSource",
    "open_source",
    "is_live_spec",
    "source_folder",
]

log = get_logger(__name__)

CORRUPT = object()
"""Returned by :meth:`FrameSource.read` for a frame that exists but could not be decoded."""

_URL_RE = re.compile(r"^(rtsp|rtsps|rtmp|http|https|udp|tcp|srt)://", re.IGNORECASE)
_VIDEO_EXTENSIONS = (".mp4", ".avi", ".mkv", ".mov", ".m4v", ".webm", ".mpg", ".mpeg", ".wmv", ".flv", ".ts")
# A decoder that fails this many times in a row inside a file is taken to have reached its real end.
_MAX_CONSECUTIVE_FAILURES = 5


class FrameSource:
    """A stream of frames; subclasses implement :meth:`read`.

    Attributes:
        name: short label used in logs, errors and stats (e.g. ``"ir"``).
        spec: what the user passed (path, URL, camera index).
        live: True for cameras/network streams (newest-pair policy), False for files (every frame).
        fps: nominal frame rate, or ``None`` when unknown.
        frame_count: number of frames when known in advance (files), else ``None``.
    """

    name: str = "source"
    spec: str = ""
    live: bool = False
    fps: float | None = None
    frame_count: int | None = None

    def read(self) -> np.ndarray | object | None:
        """Return the next RGB ``(H, W, 3)`` uint8 frame, :data:`CORRUPT`, or ``None`` at the end."""
        raise NotImplementedError

    def close(self) -> None:
        """Release the underlying device or file."""

    def describe(self) -> dict:
        return {"spec": self.spec, "live": self.live, "fps": self.fps, "frame_count": self.frame_count}


def _to_rgb(frame: np.ndarray) -> np.ndarray:
    if frame.dtype != np.uint8:
        scale = 255.0 / 65535.0 if frame.dtype == np.uint16 else 1.0
        frame = cv2.convertScaleAbs(frame, alpha=scale)
    if frame.ndim == 2:
        return cv2.cvtColor(frame, cv2.COLOR_GRAY2RGB)
    if frame.shape[2] == 4:
        return cv2.cvtColor(frame, cv2.COLOR_BGRA2RGB)
    if frame.shape[2] == 1:
        return cv2.cvtColor(frame, cv2.COLOR_GRAY2RGB)
    return cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)


class VideoCaptureSource(FrameSource):
    """Anything OpenCV's ``VideoCapture`` opens: a video file, a camera index, an RTSP/HTTP URL.

    Args:
        spec: file path, camera index (int or digit string) or URL.
        name: label for logs and stats.
        live: override the automatic choice (cameras and URLs are live, files are not).
        realtime: pace a file at its nominal frame rate, as if it were a camera (implies ``live``); useful to
            try the live policy with recorded clips.
    """

    def __init__(self, spec: str | int, name: str = "source", *, live: bool | None = None, realtime: bool = False):
        self.name = name
        self.spec = str(spec)
        is_camera = isinstance(spec, int) or str(spec).strip().isdigit()
        is_url = bool(_URL_RE.match(str(spec)))
        if not (is_camera or is_url):
            p = Path(spec)
            if not p.is_file():
                raise InputError(f"{name} source {spec}: no such file")
            if p.stat().st_size == 0:
                raise InputError(f"{name} source {spec}: empty file")
        target: str | int = int(str(spec).strip()) if is_camera else str(spec)
        self._cap = cv2.VideoCapture(target)
        if not self._cap.isOpened():
            self._cap.release()
            raise InputError(f"{name} source {spec}: OpenCV cannot open it")
        self._device = is_camera or is_url
        self.realtime = bool(realtime) and not self._device
        self.live = bool(live) if live is not None else (is_camera or is_url or self.realtime)
        fps = float(self._cap.get(cv2.CAP_PROP_FPS) or 0.0)
        self.fps = fps if 0.0 < fps < 1000.0 else None
        count = int(self._cap.get(cv2.CAP_PROP_FRAME_COUNT) or 0)
        self.frame_count = count if (count > 0 and not (is_camera or is_url)) else None
        self._index = 0
        self._failures = 0
        self._t0: float | None = None

    def read(self) -> np.ndarray | object | None:
        if self.realtime and self.fps:
            # Pace like a camera: frame i is not available before t0 + i / fps.
            now = time.monotonic()
            if self._t0 is None:
                self._t0 = now
            due = self._t0 + self._index / self.fps
            if due > now:
                time.sleep(due - now)
        try:
            ok, frame = self._cap.read()
        except cv2.error as exc:  # a broken packet can surface as an exception with some backends
            log.warning("%s: decoder error at frame %d (%s)", self.name, self._index, exc)
            ok, frame = False, None
        if ok and frame is not None and frame.size:
            self._failures = 0
            self._index += 1
            return _to_rgb(frame)
        # A failed read is the end of a stream, unless a file says it has more frames (a corrupt frame) or a
        # camera/network stream recovers after a short hiccup.
        self._failures += 1
        if self._device and self._failures <= _MAX_CONSECUTIVE_FAILURES:
            time.sleep(0.05 * self._failures)
            return CORRUPT
        if self.frame_count is not None and self._index < self.frame_count - 1:
            if self._failures <= _MAX_CONSECUTIVE_FAILURES:
                self._index += 1
                return CORRUPT
        return None

    def close(self) -> None:
        self._cap.release()


def _natural_key(path: Path) -> list:
    return [int(t) if t.isdigit() else t.lower() for t in re.split(r"(\d+)", path.name)]


class ImageFolderSource(FrameSource):
    """Image files of one folder in natural name order (``2.png`` before ``10.png``); never live.

    Args:
        folder: directory holding the frames.
        fps: nominal frame rate written into the output video (image folders carry none).
    """

    def __init__(self, folder: str | os.PathLike, name: str = "source", *, fps: float = 25.0):
        self.name = name
        self.spec = str(folder)
        p = Path(folder)
        if not p.is_dir():
            raise InputError(f"{name} source {folder}: no such folder")
        self._files = sorted(
            (f for f in p.iterdir() if f.is_file() and f.suffix.lower() in IMAGE_EXTENSIONS), key=_natural_key
        )
        if not self._files:
            raise InputError(f"{name} source {folder}: no image files ({', '.join(IMAGE_EXTENSIONS)})")
        self.live = False
        self.fps = float(fps)
        self.frame_count = len(self._files)
        self._index = 0

    def read(self) -> np.ndarray | object | None:
        if self._index >= len(self._files):
            return None
        path = self._files[self._index]
        self._index += 1
        try:
            return read_image(path, mode="rgb")
        except InputError as exc:
            log.warning("%s: skipping corrupt frame (%s)", self.name, exc)
            return CORRUPT


class IteratorSource(FrameSource):
    """Wrap an iterable of RGB frames (or :data:`CORRUPT` markers) as a source; used by tests and benchmarks.

    Args:
        frames: iterable of ``uint8`` ``(H, W, 3)`` arrays, or a zero-argument callable returning the next frame
            (``None`` to end).
        live: treat as a live source (newest-pair policy).
        fps: when given, frames are paced at this rate (a slow synthetic camera).
        frame_count: known length, if any.
    """

    def __init__(
        self,
        frames: Iterable[np.ndarray | object] | Callable[[], np.ndarray | object | None],
        name: str = "source",
        *,
        live: bool = False,
        fps: float | None = None,
        frame_count: int | None = None,
    ):
        self.name = name
        self.spec = f"<{name}>"
        self.live = live
        self.fps = fps
        if frame_count is None and hasattr(frames, "__len__"):
            frame_count = len(frames)  # type: ignore[arg-type]
        self.frame_count = frame_count
        self._next: Callable[[], np.ndarray | object | None]
        if callable(frames):
            self._next = frames  # type: ignore[assignment]
        else:
            it: Iterator = iter(frames)
            self._next = lambda: next(it, None)
        self._t_next: float | None = None

    def read(self) -> np.ndarray | object | None:
        if self.fps:
            now = time.monotonic()
            if self._t_next is not None and self._t_next > now:
                time.sleep(self._t_next - now)
            self._t_next = max(now, self._t_next or now) + 1.0 / self.fps
        return self._next()


def is_live_spec(spec: str | int) -> bool:
    """True for a camera index or a network URL."""
    return isinstance(spec, int) or str(spec).strip().isdigit() or bool(_URL_RE.match(str(spec)))


def source_folder(spec: str) -> Path | None:
    """The folder a file-based source reads from (the folder itself for image sequences), else ``None``."""
    if is_live_spec(spec):
        return None
    p = Path(spec)
    if p.is_dir():
        return p
    return p.parent if p.exists() else None


def open_source(
    spec: str | int | FrameSource,
    name: str = "source",
    *,
    realtime: bool = False,
    fps: float | None = None,
) -> FrameSource:
    """Open a source from what a user typed.

    Args:
        spec: a video file, an image folder, a camera index (``0``), an RTSP/HTTP URL, or a :class:`FrameSource`.
        name: label for logs, errors and stats.
        realtime: pace video files at their frame rate and treat them as live.
        fps: frame rate of an image folder (default 25).

    Raises:
        InputError: missing file or folder, empty folder, or a source OpenCV cannot open; the message names it.
    """
    if isinstance(spec, FrameSource):
        return spec
    text = str(spec)
    if not text.strip():
        raise InputError(f"{name} source: empty")
    if not is_live_spec(text):
        p = Path(text)
        if p.is_dir():
            return ImageFolderSource(p, name, fps=fps or 25.0)
        if not p.exists():
            raise InputError(f"{name} source {text}: no such file or folder")
        if p.suffix.lower() in IMAGE_EXTENSIONS:
            raise InputError(f"{name} source {text}: a single image is not a stream (pass its folder)")
        if p.suffix.lower() not in _VIDEO_EXTENSIONS:
            log.debug("%s: unusual video extension %s, trying OpenCV anyway", name, p.suffix)
    return VideoCaptureSource(text, name, realtime=realtime)
