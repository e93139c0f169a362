"""Source pairs: what a pair is, how files are matched into pairs, and how a pair is loaded.

Source roles follow the official TC-MoA code (see :mod:`fusion.fusers.base`):

====== ============================ ==========================
task   source ``a``                 source ``b``
====== ============================ ==========================
vif    visible (colour)             infrared (usually gray)
mef    over-exposed (brighter)      under-exposed (darker)
mff    far focus                    near focus
====== ============================ ==========================

Loading gives two ``uint8`` ``(H, W, 3)`` RGB arrays: single-channel sources (infrared, MRI) are replicated to three
channels like the official ``PIL .convert('RGB')``, alpha is dropped, 16-bit files are scaled to 8 bits and the EXIF
orientation is applied (:func:`fusion.utils.io.read_image`). MFNet's 4-channel PNGs hold both sources in one file:
``a`` = the RGB channels, ``b`` = the thermal 4th channel replicated to three channels.

A pair of different sizes is an :class:`~fusion.errors.InputError` unless a resize policy is chosen:
``"b_to_a"`` resizes ``b`` to ``a``'s size, ``"a_to_b"`` the other way round.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import cv2
import numpy as np

from fusion.errors import DatasetError, InputError
from fusion.utils.io import IMAGE_EXTENSIONS, read_image
from fusion.utils.logging import get_logger

__all__ = [
    "Pair",
    "EXTRACTS",
    "RESIZE_POLICIES",
    "UNPAIRED_POLICIES",
    "list_images",
    "pair_files",
    "pair_folders",
    "strip_role_suffix",
    "role_of",
    "read_source",
    "resize_image",
    "load_pair",
]

EXTRACTS: tuple[str, ...] = ("rgbt",)
"""Ways of taking both sources from one file: ``rgbt`` = a 4-channel image, a = RGB, b = 4th (thermal) channel."""

RESIZE_POLICIES: tuple[str, ...] = ("b_to_a", "a_to_b")
UNPAIRED_POLICIES: tuple[str, ...] = ("error", "skip")

log = get_logger(__name__)

# At most this many unpaired file names are spelled out in an error message (the count is always given).
_MAX_LISTED = 10


@dataclass(frozen=True)
class Pair:
    """Two registered source images.

    Attributes:
        name: identifier, unique within one listing, in POSIX form; may carry a sub-folder that keeps pairs of
            different splits or subsets apart (``"00004N"``, ``"test/190001"``, ``"MRI_PET/11"``, ``"Arno"``).
        a: file of source a (visible / over-exposed / far focus).
        b: file of source b (infrared / under-exposed / near focus); the same file as ``a`` when ``extract`` is set.
        task: ``"vif"``, ``"mef"`` or ``"mff"``.
        extract: ``None`` for two files, ``"rgbt"`` for one 4-channel RGB + thermal file (MFNet).
    """

    name: str
    a: Path
    b: Path
    task: str = "vif"
    extract: str | None = None

    def __post_init__(self) -> None:
        if self.extract is not None and self.extract not in EXTRACTS:
            raise ValueError(f"Pair {self.name}: extract must be None or one of {EXTRACTS}, got {self.extract!r}")

    @property
    def output_name(self) -> str:
        """Relative output path: the file name of source a, under the pair's sub-folder if it has one."""
        parent = PurePosixPath(self.name).parent
        return self.a.name if str(parent) == "." else str(parent / self.a.name)

    @property
    def files(self) -> tuple[Path, ...]:
        """The distinct input files of this pair."""
        return (self.a,) if self.a == self.b else (self.a, self.b)


def _is_image(p: Path) -> bool:
    # Hidden files cover macOS "._x.png" resource forks and editors' temporaries, which carry image extensions.
    return p.is_file() and not p.name.startswith(".") and p.suffix.lower() in IMAGE_EXTENSIONS


def list_images(folder: str | Path, key: Callable[[Path], str] | None = None) -> dict[str, Path]:
    """Images directly inside ``folder`` (not recursive), keyed by ``key(path)`` (default: the file stem).

    Raises:
        DatasetError: the folder is missing, or two files share a key (e.g. ``05.png`` and ``05.jpg``).
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise DatasetError(f"{folder}: no such folder")
    key = key or (lambda p: p.stem)
    out: dict[str, Path] = {}
    for p in sorted(folder.iterdir()):
        if not _is_image(p):
            continue
        k = key(p)
        if k in out:
            raise DatasetError(f"{p}: same name as {out[k].name} in {folder} (cannot tell which one to pair)")
        out[k] = p
    return out


_ROLE_SUFFIX = re.compile(r"[-_]([AaBb])$")


def strip_role_suffix(path: Path) -> str:
    """``lytro-01-A.jpg`` -> ``lytro-01``; ``Arno_b.png`` -> ``Arno`` (the key that pairs ``_A``/``_B`` files)."""
    return _ROLE_SUFFIX.sub("", path.stem)


def role_of(path: Path) -> str | None:
    """``"A"`` or ``"B"`` for a file named ``*_A.*``/``*-a.*`` etc., else ``None``."""
    m = _ROLE_SUFFIX.search(path.stem)
    return m.group(1).upper() if m else None


def _describe_unpaired(names: Iterable[str]) -> str:
    names = list(names)
    shown = ", ".join(names[:_MAX_LISTED])
    more = f" and {len(names) - _MAX_LISTED} more" if len(names) > _MAX_LISTED else ""
    return f"{len(names)} file(s) without a partner: {shown}{more}"


def pair_files(
    a_files: dict[str, Path],
    b_files: dict[str, Path],
    *,
    task: str,
    prefix: str = "",
    where: str = "",
    unpaired: str = "error",
) -> list[Pair]:
    """Match two ``{key: file}`` maps into pairs sorted by key: the project's one pairing rule.

    Args:
        a_files: source-a files by pairing key.
        b_files: source-b files by pairing key.
        task: task of every pair.
        prefix: sub-folder put in front of each pair's name (``"test"`` -> ``"test/<key>"``).
        where: the folder(s) named in errors.
        unpaired: ``"error"`` (datasets, batch fusion, detection: a lonely file means a broken download) or
            ``"skip"`` (metric evaluation of loose folders: lonely files are logged and left out).

    Raises:
        DatasetError: a file has no partner (``unpaired="error"``; all such files are listed, up to ten by name),
            or no pair was found.
    """
    if unpaired not in UNPAIRED_POLICIES:
        raise ValueError(f"unpaired={unpaired!r}: expected one of {', '.join(UNPAIRED_POLICIES)}")
    lonely = [str(a_files[k]) for k in sorted(a_files.keys() - b_files.keys())]
    lonely += [str(b_files[k]) for k in sorted(b_files.keys() - a_files.keys())]
    where = where or "pairs"
    if not a_files and not b_files:
        raise DatasetError(f"{where}: no images found")
    if lonely and unpaired == "error":
        raise DatasetError(f"{where}: {_describe_unpaired(lonely)}")
    common = sorted(a_files.keys() & b_files.keys())
    if not common:
        raise DatasetError(f"{where}: no file names in common")
    if lonely:
        log.warning("%s: %s; skipped", where, _describe_unpaired(lonely))
    pre = f"{prefix}/" if prefix else ""
    return [Pair(f"{pre}{k}", a_files[k], b_files[k], task) for k in common]


def pair_folders(
    a_dir: str | Path,
    b_dir: str | Path,
    *,
    task: str,
    prefix: str = "",
    key: Callable[[Path], str] | None = None,
    unpaired: str = "error",
) -> list[Pair]:
    """Pair the images of two folders by file name (the stem, so ``05.png`` pairs with ``05.bmp``).

    ``unpaired`` as in :func:`pair_files`.
    """
    a_dir, b_dir = Path(a_dir), Path(b_dir)
    return pair_files(list_images(a_dir, key), list_images(b_dir, key), task=task, prefix=prefix,
                      where=f"{a_dir} vs {b_dir}", unpaired=unpaired)


def read_source(path: str | Path) -> np.ndarray:
    """Read one source file as ``uint8`` ``(H, W, 3)`` RGB (gray replicated, alpha dropped, EXIF applied)."""
    return read_image(path, mode="rgb")


def _read_rgbt(path: Path) -> tuple[np.ndarray, np.ndarray]:
    arr = read_image(path, mode="unchanged")
    if arr.ndim != 3 or arr.shape[2] != 4:
        shape = arr.shape[2] if arr.ndim == 3 else 1
        raise InputError(f"{path}: expected a 4-channel RGB + thermal image, got {shape} channel(s)")
    rgb = np.ascontiguousarray(arr[:, :, :3])
    thermal = np.repeat(arr[:, :, 3:4], 3, axis=2)
    return rgb, thermal


def resize_image(img: np.ndarray, size_hw: tuple[int, int]) -> np.ndarray:
    """Resize a ``uint8`` ``(H, W, C)`` image to ``size_hw``: area averaging when shrinking, bicubic otherwise."""
    h, w = size_hw
    if img.shape[:2] == (h, w):
        return img
    shrink = h <= img.shape[0] and w <= img.shape[1]
    out = cv2.resize(img, (w, h), interpolation=cv2.INTER_AREA if shrink else cv2.INTER_CUBIC)
    if out.ndim == 2:  # cv2 drops a singleton channel axis
        out = out[:, :, None]
    return out


def load_pair(pair: Pair, resize: str | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Load a pair as two ``uint8`` ``(H, W, 3)`` RGB arrays of equal size.

    Args:
        pair: the pair.
        resize: ``None`` (sizes must match), ``"b_to_a"`` or ``"a_to_b"``.

    Raises:
        InputError: unreadable/truncated file, wrong channel count for ``rgbt``, or sizes that differ without a
            resize policy. The message names the file(s).
    """
    if resize is not None and resize not in RESIZE_POLICIES:
        raise InputError(f"resize={resize!r}: expected None or one of {', '.join(RESIZE_POLICIES)}")
    if pair.extract == "rgbt":
        return _read_rgbt(pair.a)
    a = read_source(pair.a)
    b = read_source(pair.b)
    if a.shape[:2] != b.shape[:2]:
        if resize == "b_to_a":
            b = resize_image(b, a.shape[:2])
        elif resize == "a_to_b":
            a = resize_image(a, b.shape[:2])
        else:
            (ha, wa), (hb, wb) = a.shape[:2], b.shape[:2]
            raise InputError(
                f"{pair.b}: size {wb}x{hb} differs from its partner {pair.a} ({wa}x{ha}); "
                f"choose a resize policy (b_to_a or a_to_b)"
            )
    return a, b
