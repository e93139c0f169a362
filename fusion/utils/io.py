"""Image reading and atomic writing.

Reading accepts 8- and 16-bit files, grayscale, RGB and RGBA, JPEG/PNG/TIFF/BMP, and applies the EXIF orientation.
Arrays are numpy ``uint8`` in RGB channel order (OpenCV's BGR never leaks out of this module).
Every failure is an :class:`~fusion.errors.InputError` that names the file.

Writing is atomic: data goes to a temporary file in the destination folder, which is then renamed over the target,
so an interrupted run never leaves a half-written image behind.
"""

from __future__ import annotations

import contextlib
import errno
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Literal

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from fusion.errors import InputError, OutputError

__all__ = [
    "IMAGE_EXTENSIONS",
    "MAX_IMAGE_PIXELS",
    "open_image_checked",
    "read_image",
    "to_uint8",
    "write_image",
    "atomic_path",
    "atomic_write_bytes",
    "atomic_write_text",
    "is_within",
]

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")

#: Largest image (in pixels) that is decoded; a 1 KB PNG can declare 20000x20000 pixels ("decompression bomb").
#: 100 megapixels by default, raised with the environment variable ``TCMOA_MAX_IMAGE_PIXELS``.
MAX_IMAGE_PIXELS = int(os.environ.get("TCMOA_MAX_IMAGE_PIXELS", 100_000_000))
# Pillow refuses twice its own limit at open(); follow ours when the user raised it above Pillow's.
if Image.MAX_IMAGE_PIXELS is not None and MAX_IMAGE_PIXELS > Image.MAX_IMAGE_PIXELS:
    Image.MAX_IMAGE_PIXELS = MAX_IMAGE_PIXELS

Mode = Literal["rgb", "gray", "unchanged"]


def _too_many_pixels(path: Path, size: str) -> InputError:
    return InputError(f"{path}: declares {size} pixels, over the limit of {MAX_IMAGE_PIXELS} (decompression bomb?); "
                      "raise it with TCMOA_MAX_IMAGE_PIXELS if the file is genuine")


def open_image_checked(path: str | os.PathLike) -> Image.Image:
    """``PIL.Image.open`` that refuses images over :data:`MAX_IMAGE_PIXELS` before decoding (use as a context
    manager; the pixels are decoded on ``load()``).

    Raises:
        InputError: over the limit, or not an image Pillow can open.
    """
    p = Path(path)
    try:
        im = Image.open(p)
    except Image.DecompressionBombError:
        raise _too_many_pixels(p, "more") from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise InputError(f"{p}: cannot decode image ({exc.__class__.__name__}: {exc})") from None
    w, h = im.size
    if w * h > MAX_IMAGE_PIXELS:
        im.close()
        raise _too_many_pixels(p, f"{w}x{h}")
    return im


def to_uint8(arr: np.ndarray, *, source: str | os.PathLike = "<array>") -> np.ndarray:
    """Convert an integer or float image to ``uint8``.

    16-bit images are scaled by ``255/65535`` with rounding; floats are taken to lie in [0, 1] and clipped.
    """
    if arr.dtype == np.uint8:
        return arr
    if arr.dtype == np.uint16:
        return np.round(arr.astype(np.float64) * (255.0 / 65535.0)).astype(np.uint8)
    if arr.dtype in (np.int32, np.int64, np.int16) or arr.dtype == np.bool_:
        if arr.dtype == np.bool_:
            return arr.astype(np.uint8) * 255
        top = 65535.0 if arr.max(initial=0) > 255 else 255.0
        return np.round(np.clip(arr, 0, top).astype(np.float64) * (255.0 / top)).astype(np.uint8)
    if np.issubdtype(arr.dtype, np.floating):
        return np.round(np.clip(arr, 0.0, 1.0) * 255.0).astype(np.uint8)
    raise InputError(f"{source}: unsupported pixel type {arr.dtype}")


def read_image(path: str | os.PathLike, mode: Mode = "rgb") -> np.ndarray:
    """Read an image file as ``uint8``.

    Args:
        path: image file.
        mode: ``"rgb"`` gives ``(H, W, 3)`` (grayscale replicated to three channels, alpha dropped);
            ``"gray"`` gives ``(H, W)`` (colour converted with ITU-R 601 weights);
            ``"unchanged"`` keeps the channels (``(H, W)``, ``(H, W, 3)`` or ``(H, W, 4)``).

    Raises:
        InputError: missing, empty, truncated or undecodable file, or an unsupported pixel format.
    """
    p = Path(path)
    if not p.is_file():
        raise InputError(f"{p}: no such file")
    if p.stat().st_size == 0:
        raise InputError(f"{p}: empty file")
    try:
        with open_image_checked(p) as im:
            im = ImageOps.exif_transpose(im)
            im.load()
            arr = _pil_to_array(im, p)
    except InputError:
        raise
    except ImportError:
        # Some packages (ultralytics) register lazy Pillow plugins whose module may be absent; Pillow reaches
        # them only after every installed decoder has refused the file.
        raise InputError(f"{p}: cannot decode image (unknown or unsupported format)") from None
    except Image.DecompressionBombError:  # a decoder may find the real size only while loading
        raise _too_many_pixels(p, "more") from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise InputError(f"{p}: cannot decode image ({exc.__class__.__name__}: {exc})") from None
    arr = to_uint8(arr, source=p)
    if mode == "unchanged":
        return arr
    if mode == "rgb":
        if arr.ndim == 2:
            return np.repeat(arr[:, :, None], 3, axis=2)
        return np.ascontiguousarray(arr[:, :, :3])
    if mode == "gray":
        if arr.ndim == 2:
            return arr
        rgb = arr[:, :, :3].astype(np.float64)
        gray = rgb @ np.array([0.299, 0.587, 0.114])
        return np.clip(np.round(gray), 0, 255).astype(np.uint8)
    raise ValueError(f"mode must be 'rgb', 'gray' or 'unchanged', got {mode!r}")


def _pil_to_array(im: Image.Image, path: Path) -> np.ndarray:
    m = im.mode
    if m in ("1", "L", "P", "LA", "PA"):
        if m in ("P", "PA"):
            im = im.convert("RGBA" if "transparency" in im.info or m == "PA" else "RGB")
            return np.asarray(im)
        if m == "LA":
            return np.asarray(im)[:, :, 0]
        return np.asarray(im.convert("L"))
    if m in ("I;16", "I;16B", "I;16L", "I;16N"):
        return np.asarray(im, dtype=np.uint16) if m != "I;16B" else np.asarray(im).astype(np.uint16)
    if m == "I":
        # 32-bit integer mode comes from 16-bit files (TIFF, some PNGs): scale by the bit depth, not the data.
        return np.clip(np.asarray(im), 0, 65535).astype(np.uint16)
    if m == "F":
        arr = np.asarray(im, dtype=np.float32)
        return arr / 255.0 if arr.max(initial=0.0) > 1.0 else arr
    if m in ("RGB", "RGBA"):
        return np.asarray(im)
    if m in ("CMYK", "YCbCr", "LAB", "HSV", "RGBX"):
        return np.asarray(im.convert("RGB"))
    raise InputError(f"{path}: unsupported image mode {m}")


def is_within(child: str | os.PathLike, parent: str | os.PathLike) -> bool:
    """True when ``child`` is ``parent`` or lies below it (after resolving links)."""
    c = Path(child).resolve()
    p = Path(parent).resolve()
    return c == p or p in c.parents


_DISK_ERRORS = (errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM, errno.EFBIG)


@contextlib.contextmanager
def atomic_path(target: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path next to ``target``; on success it is renamed onto ``target``.

    The temporary file keeps ``target``'s suffix so that libraries choosing a format by extension still work.
    On an exception the temporary file is removed and ``target`` is left untouched.
    """
    target = Path(target)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{target.stem}.", suffix=f".tmp{target.suffix}", dir=target.parent)
    except OSError as exc:
        raise OutputError(f"{target}: cannot write ({exc.strerror or exc})") from None
    os.close(fd)
    tmp_path = Path(tmp)
    # mkstemp creates 0600 files; give the result the permissions a plain open() would (umask applied).
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp_path, 0o666 & ~umask)
    try:
        yield tmp_path
        os.replace(tmp_path, target)
    except BaseException as exc:
        with contextlib.suppress(FileNotFoundError):
            tmp_path.unlink()
        if isinstance(exc, OSError) and exc.errno in _DISK_ERRORS:
            raise OutputError(f"{target}: cannot write ({exc.strerror})") from None
        raise


def atomic_write_bytes(target: str | os.PathLike, data: bytes) -> Path:
    """Write ``data`` to ``target`` atomically and return the path."""
    with atomic_path(target) as tmp:
        tmp.write_bytes(data)
    return Path(target)


def atomic_write_text(target: str | os.PathLike, text: str) -> Path:
    """Write ``text`` (UTF-8) to ``target`` atomically and return the path."""
    return atomic_write_bytes(target, text.encode("utf-8"))


def write_image(target: str | os.PathLike, image: np.ndarray, *, quality: int = 95) -> Path:
    """Write an RGB ``(H, W, 3)``, RGBA ``(H, W, 4)`` or gray ``(H, W)`` image atomically.

    Float images are taken to lie in [0, 1]. The format follows the extension of ``target``.
    """
    target = Path(target)
    if target.suffix.lower() not in IMAGE_EXTENSIONS:
        raise InputError(f"{target}: unsupported output extension (use one of {', '.join(IMAGE_EXTENSIONS)})")
    arr = to_uint8(np.asarray(image), source=target)
    if arr.ndim == 3 and arr.shape[2] == 1:
        arr = arr[:, :, 0]
    if arr.ndim not in (2, 3) or (arr.ndim == 3 and arr.shape[2] not in (3, 4)):
        raise InputError(f"{target}: expected an image of shape (H, W), (H, W, 3) or (H, W, 4), got {arr.shape}")
    im = Image.fromarray(arr)
    kwargs = {}
    fmt = {".jpg": "JPEG", ".jpeg": "JPEG", ".png": "PNG", ".bmp": "BMP", ".tif": "TIFF", ".tiff": "TIFF"}[
        target.suffix.lower()
    ]
    if fmt == "JPEG":
        if im.mode == "RGBA":
            im = im.convert("RGB")
        kwargs["quality"] = quality
    with atomic_path(target) as tmp:
        im.save(tmp, format=fmt, **kwargs)
    return target
