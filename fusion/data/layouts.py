"""Readers for fusion datasets in the folder layouts they are downloaded in.

Every layout is registered in :data:`LAYOUTS` with its task, a detector and a lister. :func:`detect_layout` finds
the layout of a root folder (first match in registration order, specific layouts before generic ones);
:func:`list_pairs` lists its pairs, sorted by name. Folder names are matched case-insensitively, ``vis/`` is an
alias of ``vi/``, and an ``ir/`` + ``vi/`` (or ``vis/``) tree is accepted for any infrared-visible set.

=============== ==== ============================================================== ====================
layout          task folders (source a first)                                        splits
=============== ==== ============================================================== ====================
``mfnet``       vif  ``images/*.png`` (or ``rgbt/``): 4-channel RGB + thermal;      ``train.txt`` ...
                     a = RGB, b = thermal channel
``llvip``       vif  ``visible/<split>/``, ``infrared/<split>/`` (or no split)       train, test
``msrs_legacy`` vif  ``Visible/<split>/MSRS/``, ``Infrared/<split>/MSRS/``           train, test
``msrs``        vif  ``<split>/vi/``, ``<split>/ir/``                                train, test
``fmb``         vif  ``<split>/Visible/``, ``<split>/Infrared/`` (``Label/`` unused) train, test
``roadscene``   vif  ``crop_LR_visible/``, ``cropinfrared/``
``vifb``        vif  ``input/VI/``, ``input/IR/``
``harvard``     vif  ``MRI_CT/{CT,MRI}``, ``MRI_PET/{PET,MRI}``,                     MRI_CT, MRI_PET,
                     ``MRI_SPECT/{SPECT,MRI}``: a = CT/PET/SPECT, b = MRI            MRI_SPECT
``mefb``        mef  ``input/<scene>/<scene>_B.*`` (over-exposed),
                     ``input/<scene>/<scene>_A.*`` (under-exposed)
``mfifb``       mff  ``input/<scene>/<scene>_B.*`` (far), ``..._A.*`` (near)
``lytro``       mff  ``BB/*-B.*``, ``AA/*-A.*``, or both in one folder
``sice``        mef  ``oe/``, ``ue/``
``realmff``     mff  ``imageB/NNN_B.*``, ``imageA/NNN_A.*``
``mfi_whu``     mff  ``source_2/``, ``source_1/``
``ir_vi``       vif  ``vi/`` (or ``vis/``), ``ir/`` -- TNO, M3FD and any set
=============== ==== ============================================================== ====================

``mefb`` and ``mfifb`` share one folder layout; the root's or the scenes' names decide (``mef``/``exposure`` vs
``mff``/``mfif``/``focus``/``lytro``), else the task the user gives, else it is an error asking for ``--layout``.
Pairs of sets with several splits (or Harvard subsets) listed together are named ``<split>/<id>`` so their outputs
do not collide; a single split gives plain ``<id>`` names.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from PIL import Image

from fusion.data.pairs import Pair, _describe_unpaired, _is_image, list_images, pair_files, role_of, strip_role_suffix
from fusion.errors import ConfigError, DatasetError
from fusion.tasks import TASKS

__all__ = [
    "Layout",
    "LAYOUTS",
    "LAYOUT_ALIASES",
    "register_layout",
    "resolve_layout_name",
    "detect_layout",
    "list_pairs",
    "list_folder_pairs",
]

Lister = Callable[[Path, str | None], list[Pair]]
Detector = Callable[[Path], bool]


@dataclass(frozen=True)
class Layout:
    """A registered dataset layout.

    Attributes:
        name: registry key.
        task: task of its pairs.
        detect: ``detect(root) -> bool``.
        list: ``list(root, split) -> list[Pair]``.
        splits: split (or subset) names it knows.
        description: one line for ``--help`` and errors.
    """

    name: str
    task: str
    detect: Detector
    list: Lister
    splits: tuple[str, ...] = ()
    description: str = ""


LAYOUTS: dict[str, Layout] = {}
"""Registered layouts in detection order."""

LAYOUT_ALIASES: dict[str, str] = {"tno": "ir_vi", "m3fd": "ir_vi", "medical": "harvard", "msrs_old": "msrs_legacy"}


def register_layout(
    name: str, *, task: str, detect: Detector, splits: tuple[str, ...] = (), description: str = ""
) -> Callable[[Lister], Lister]:
    """Decorator registering a lister function as layout ``name`` (detection order = registration order)."""

    def deco(lister: Lister) -> Lister:
        if name in LAYOUTS:
            raise ConfigError(f"layout {name!r} registered twice")
        LAYOUTS[name] = Layout(name, task, detect, lister, splits, description)
        return lister

    return deco


# --------------------------------------------------------------------------------------------------------------
# helpers


def _child(root: Path, *names: str) -> Path | None:
    """The first existing sub-folder of ``root`` among ``names`` (case-insensitive), or ``None``."""
    if not root.is_dir():
        return None
    by_lower: dict[str, Path] = {}
    for p in sorted(root.iterdir()):
        if p.is_dir():
            by_lower.setdefault(p.name.lower(), p)
    for n in names:
        if (root / n).is_dir():  # an exact match wins over a case-folded one
            return root / n
        if n.lower() in by_lower:
            return by_lower[n.lower()]
    return None


def _need(root: Path, *names: str) -> Path:
    found = _child(root, *names)
    if found is None:
        raise DatasetError(f"{root}: missing folder {' or '.join(n + '/' for n in names)}")
    return found


_VI = ("vi", "vis", "visible")
_SPLITS = ("train", "val", "test")


def _by_splits(
    root: Path, split: str | None, available: list[str], make: Callable[[str, str], list[Pair]]
) -> list[Pair]:
    """Call ``make(split, prefix)`` for the chosen split, or for every available split (prefixed when several)."""
    if split is not None:
        if split not in available:
            raise DatasetError(f"{root}: no split {split!r} (found: {', '.join(available) or 'none'})")
        return make(split, "")
    if not available:
        raise DatasetError(f"{root}: no split folders ({', '.join(_SPLITS)}) found")
    several = len(available) > 1
    pairs: list[Pair] = []
    for s in available:
        pairs += make(s, s if several else "")
    return pairs


def _folders_pairs(a_dir: Path, b_dir: Path, task: str, prefix: str = "", key=None) -> list[Pair]:
    return pair_files(
        list_images(a_dir, key), list_images(b_dir, key), task=task, prefix=prefix, where=f"{a_dir} vs {b_dir}"
    )


def _first_png_channels(folder: Path) -> int:
    for p in sorted(folder.iterdir()):
        if _is_image(p) and p.suffix.lower() == ".png":
            try:
                with Image.open(p) as im:
                    return len(im.getbands())
            except OSError:
                return 0
    return 0


# --------------------------------------------------------------------------------------------------------------
# MFNet: one 4-channel PNG per frame


def _mfnet_images(root: Path) -> Path | None:
    rgbt = _child(root, "rgbt")
    if rgbt is not None:
        return rgbt
    images = _child(root, "images")
    has_meta = _child(root, "labels") is not None or any((root / f"{s}.txt").is_file() for s in _SPLITS)
    if images is not None and has_meta and _first_png_channels(images) == 4:
        return images
    return None


@register_layout(
    "mfnet",
    task="vif",
    detect=lambda r: _mfnet_images(r) is not None,
    splits=("train", "val", "test"),
    description="MFNet: images/*.png (RGB + thermal in 4 channels), labels/, train.txt/val.txt/test.txt",
)
def _list_mfnet(root: Path, split: str | None) -> list[Pair]:
    images = _mfnet_images(root) or _need(root, "images", "rgbt")
    files = list_images(images)
    if split is not None:
        txt = root / f"{split}.txt"
        if not txt.is_file():
            raise DatasetError(f"{txt}: split list not found")
        ids = [line.strip() for line in txt.read_text().splitlines() if line.strip()]
        ids = [Path(i).stem if Path(i).suffix.lower() == ".png" else i for i in ids]
        missing = [i for i in ids if i not in files]
        if missing:
            raise DatasetError(
                f"{txt}: {len(missing)} listed image(s) missing from {images}: {', '.join(missing[:10])}"
            )
        files = {i: files[i] for i in ids}
    if not files:
        raise DatasetError(f"{images}: no images found")
    return [Pair(k, files[k], files[k], "vif", extract="rgbt") for k in sorted(files)]


# --------------------------------------------------------------------------------------------------------------
# infrared-visible sets


def _msrs_legacy_splits(root: Path) -> list[str]:
    ir, vi = _child(root, "Infrared"), _child(root, "Visible")
    if ir is None or vi is None:
        return []
    return [s for s in _SPLITS if _child(ir / s, "MSRS") and _child(vi / s, "MSRS")]


@register_layout(
    "msrs_legacy",
    task="vif",
    detect=lambda r: bool(_msrs_legacy_splits(r)),
    splits=("train", "test"),
    description="MSRS (older release): Infrared/<split>/MSRS/, Visible/<split>/MSRS/",
)
def _list_msrs_legacy(root: Path, split: str | None) -> list[Pair]:
    ir, vi = _need(root, "Infrared"), _need(root, "Visible")
    return _by_splits(
        root,
        split,
        _msrs_legacy_splits(root),
        lambda s, pre: _folders_pairs(_need(vi / s, "MSRS"), _need(ir / s, "MSRS"), "vif", pre),
    )


def _llvip_splits(root: Path) -> list[str]:
    ir, vi = _child(root, "infrared"), _child(root, "visible")
    return [s for s in _SPLITS if _child(ir, s) and _child(vi, s)] if ir and vi else []


@register_layout(
    "llvip",
    task="vif",
    detect=lambda r: _child(r, "infrared") is not None and _child(r, "visible") is not None,
    splits=("train", "test"),
    description="LLVIP: visible/<split>/, infrared/<split>/ (same file names)",
)
def _list_llvip(root: Path, split: str | None) -> list[Pair]:
    ir, vi = _need(root, "infrared"), _need(root, "visible")
    splits = _llvip_splits(root)
    if not splits and split is None:  # a flat visible/ + infrared/ tree
        return _folders_pairs(vi, ir, "vif")
    return _by_splits(root, split, splits, lambda s, pre: _folders_pairs(_need(vi, s), _need(ir, s), "vif", pre))


def _split_with(root: Path, a_names: tuple[str, ...], b_names: tuple[str, ...]) -> list[str]:
    return [s for s in _SPLITS if _child(root, s) and _child(root / s, *a_names) and _child(root / s, *b_names)]


@register_layout(
    "msrs",
    task="vif",
    detect=lambda r: bool(_split_with(r, _VI[:2], ("ir",))),
    splits=("train", "test"),
    description="MSRS: <split>/vi/, <split>/ir/",
)
def _list_msrs(root: Path, split: str | None) -> list[Pair]:
    return _by_splits(
        root,
        split,
        _split_with(root, _VI[:2], ("ir",)),
        lambda s, pre: _folders_pairs(_need(root / s, *_VI[:2]), _need(root / s, "ir"), "vif", pre),
    )


@register_layout(
    "fmb",
    task="vif",
    detect=lambda r: bool(_split_with(r, ("Visible",), ("Infrared",))),
    splits=("train", "test"),
    description="FMB: <split>/Visible/, <split>/Infrared/ (Label/ is for segmentation)",
)
def _list_fmb(root: Path, split: str | None) -> list[Pair]:
    return _by_splits(
        root,
        split,
        _split_with(root, ("Visible",), ("Infrared",)),
        lambda s, pre: _folders_pairs(_need(root / s, "Visible"), _need(root / s, "Infrared"), "vif", pre),
    )


@register_layout(
    "roadscene",
    task="vif",
    detect=lambda r: _child(r, "cropinfrared") is not None and _child(r, "crop_LR_visible") is not None,
    description="RoadScene: crop_LR_visible/, cropinfrared/",
)
def _list_roadscene(root: Path, split: str | None) -> list[Pair]:
    return _folders_pairs(_need(root, "crop_LR_visible"), _need(root, "cropinfrared"), "vif")


def _vifb_input(root: Path) -> Path | None:
    inp = _child(root, "input")
    return inp if inp is not None and _child(inp, "VI") and _child(inp, "IR") else None


@register_layout(
    "vifb",
    task="vif",
    detect=lambda r: _vifb_input(r) is not None,
    description="VIFB: input/VI/, input/IR/",
)
def _list_vifb(root: Path, split: str | None) -> list[Pair]:
    inp = _need(root, "input")
    return _folders_pairs(_need(inp, "VI"), _need(inp, "IR"), "vif")


# --------------------------------------------------------------------------------------------------------------
# Harvard medical: MRI + CT / PET / SPECT


_MEDICAL_OTHER = ("CT", "PET", "SPECT")


def _harvard_subsets(root: Path) -> dict[str, Path]:
    out = {}
    for other in _MEDICAL_OTHER:
        sub = _child(root, f"MRI_{other}")
        if sub is not None and _child(sub, "MRI") and _child(sub, other):
            out[f"MRI_{other}"] = sub
    return out


def _harvard_single(root: Path) -> str | None:
    if _child(root, "MRI") is None:
        return None
    return next((o for o in _MEDICAL_OTHER if _child(root, o) is not None), None)


@register_layout(
    "harvard",
    task="vif",
    detect=lambda r: bool(_harvard_subsets(r)) or _harvard_single(r) is not None,
    splits=("MRI_CT", "MRI_PET", "MRI_SPECT"),
    description="Harvard medical: MRI_CT/{CT,MRI}, MRI_PET/{PET,MRI}, MRI_SPECT/{SPECT,MRI}; a = CT/PET/SPECT, b = MRI",
)
def _list_harvard(root: Path, split: str | None) -> list[Pair]:
    subsets = _harvard_subsets(root)
    if not subsets:
        other = _harvard_single(root)
        if other is None:
            raise DatasetError(f"{root}: missing MRI_CT/, MRI_PET/ or MRI_SPECT/ (or MRI/ + CT|PET|SPECT/)")
        return _folders_pairs(_need(root, other), _need(root, "MRI"), "vif")

    def make(s: str, pre: str) -> list[Pair]:
        other = s.split("_", 1)[1]
        return _folders_pairs(_need(subsets[s], other), _need(subsets[s], "MRI"), "vif", pre)

    return _by_splits(root, split, list(subsets), make)


# --------------------------------------------------------------------------------------------------------------
# MEFB / MFIFB: input/<scene>/<scene>_{A,B}.*


_MFF_HINTS = ("mff", "mfif", "focus", "lytro")
_MEF_HINTS = ("mef", "exposure", "sice", "hdr")


def _scene_root(root: Path) -> Path | None:
    inp = _child(root, "input")
    if inp is None and root.name.lower() == "input":
        inp = root
    if inp is None:
        return None
    scenes = [d for d in inp.iterdir() if d.is_dir()]
    if scenes and any(role_of(p) for d in scenes[:5] for p in d.iterdir() if _is_image(p)):
        return inp
    return None


def _scene_kind(root: Path) -> str | None:
    """``"mef"``, ``"mff"`` or ``None`` (ambiguous) for an ``input/<scene>/`` tree, from folder names."""
    inp = _scene_root(root)
    if inp is None:
        return None
    text = " ".join([root.name, root.parent.name, *(d.name for d in inp.iterdir() if d.is_dir())]).lower()
    mff = any(h in text for h in _MFF_HINTS)
    mef = any(h in text for h in _MEF_HINTS)
    return "mff" if mff and not mef else "mef" if mef and not mff else None


def _list_scenes(root: Path, task: str) -> list[Pair]:
    inp = _scene_root(root)
    if inp is None:
        raise DatasetError(f"{root}: missing input/<scene>/ folders with *_A and *_B images")
    pairs: list[Pair] = []
    problems: list[str] = []
    for scene in sorted(d for d in inp.iterdir() if d.is_dir()):
        imgs = [p for p in sorted(scene.iterdir()) if _is_image(p)]
        a_files = [p for p in imgs if role_of(p) == "B"]  # official: _B = source a (over-exposed / far focus)
        b_files = [p for p in imgs if role_of(p) == "A"]
        if len(a_files) == 1 and len(b_files) == 1:
            pairs.append(Pair(scene.name, a_files[0], b_files[0], task))
        else:
            problems.append(f"{scene} ({len(b_files)} *_A, {len(a_files)} *_B image(s))")
    if problems:
        raise DatasetError(f"{inp}: scenes need exactly one *_A and one *_B image: {_describe_unpaired(problems)}")
    if not pairs:
        raise DatasetError(f"{inp}: no scene folders found")
    return pairs


@register_layout(
    "mefb",
    task="mef",
    detect=lambda r: _scene_kind(r) == "mef",
    description="MEFB: input/<scene>/<scene>_A.* (under-exposed, b), <scene>_B.* (over-exposed, a)",
)
def _list_mefb(root: Path, split: str | None) -> list[Pair]:
    return _list_scenes(root, "mef")


@register_layout(
    "mfifb",
    task="mff",
    detect=lambda r: _scene_kind(r) == "mff",
    description="MFIFB: input/<scene>/<scene>_A.* (near focus, b), <scene>_B.* (far focus, a)",
)
def _list_mfifb(root: Path, split: str | None) -> list[Pair]:
    return _list_scenes(root, "mff")


# --------------------------------------------------------------------------------------------------------------
# multi-focus / multi-exposure folder pairs


def _lytro_flat(root: Path) -> bool:
    roles = {role_of(p) for p in root.iterdir() if _is_image(p)} if root.is_dir() else set()
    return {"A", "B"} <= roles


@register_layout(
    "lytro",
    task="mff",
    detect=lambda r: (_child(r, "AA") is not None and _child(r, "BB") is not None) or _lytro_flat(r),
    description="Lytro: BB/*-B.* (far focus, a), AA/*-A.* (near focus, b), or both in one folder",
)
def _list_lytro(root: Path, split: str | None) -> list[Pair]:
    aa, bb = _child(root, "AA"), _child(root, "BB")
    if aa is not None and bb is not None:
        return _folders_pairs(bb, aa, "mff", key=strip_role_suffix)
    files = [p for p in sorted(root.iterdir()) if _is_image(p)]
    a_files = {strip_role_suffix(p): p for p in files if role_of(p) == "B"}
    b_files = {strip_role_suffix(p): p for p in files if role_of(p) == "A"}
    stray = [str(p) for p in files if role_of(p) is None]
    if stray:
        raise DatasetError(f"{root}: {_describe_unpaired(stray)} (names must end in -A or -B)")
    return pair_files(a_files, b_files, task="mff", where=str(root))


@register_layout(
    "sice",
    task="mef",
    detect=lambda r: _child(r, "oe") is not None and _child(r, "ue") is not None,
    description="SICE (official spelling SCIE): oe/ (over-exposed, a), ue/ (under-exposed, b)",
)
def _list_sice(root: Path, split: str | None) -> list[Pair]:
    return _folders_pairs(_need(root, "oe"), _need(root, "ue"), "mef")


@register_layout(
    "realmff",
    task="mff",
    detect=lambda r: _child(r, "imageA") is not None and _child(r, "imageB") is not None,
    description="Real-MFF: imageB/NNN_B.* (far focus, a), imageA/NNN_A.* (near focus, b)",
)
def _list_realmff(root: Path, split: str | None) -> list[Pair]:
    return _folders_pairs(_need(root, "imageB"), _need(root, "imageA"), "mff", key=strip_role_suffix)


@register_layout(
    "mfi_whu",
    task="mff",
    detect=lambda r: _child(r, "source_1") is not None and _child(r, "source_2") is not None,
    description="MFI-WHU: source_2/ (far focus, a), source_1/ (near focus, b)",
)
def _list_mfi_whu(root: Path, split: str | None) -> list[Pair]:
    return _folders_pairs(_need(root, "source_2"), _need(root, "source_1"), "mff")


@register_layout(
    "ir_vi",
    task="vif",
    detect=lambda r: _child(r, "ir") is not None and _child(r, *_VI[:2]) is not None,
    description="TNO / M3FD / any infrared-visible set: vi/ (or vis/), ir/",
)
def _list_ir_vi(root: Path, split: str | None) -> list[Pair]:
    return _folders_pairs(_need(root, *_VI[:2]), _need(root, "ir"), "vif")


# --------------------------------------------------------------------------------------------------------------
# public entry points


def resolve_layout_name(name: str) -> str:
    """Canonical layout name for ``name`` or an alias (``tno`` -> ``ir_vi``)."""
    key = name.strip().lower()
    key = LAYOUT_ALIASES.get(key, key)
    if key not in LAYOUTS:
        known = sorted([*LAYOUTS, *LAYOUT_ALIASES])
        raise ConfigError(f"unknown layout {name!r} (known: {', '.join(known)})")
    return key


def _check_root(root: str | Path) -> Path:
    root = Path(root)
    if not root.exists():
        raise DatasetError(f"{root}: no such folder")
    if not root.is_dir():
        raise DatasetError(f"{root}: not a folder (give a dataset root, or --a/--b for a single pair)")
    return root


def detect_layout(root: str | Path, task: str | None = None) -> str:
    """Name of the layout of the dataset at ``root``.

    Args:
        root: dataset root folder.
        task: optional hint that settles the MEFB/MFIFB ambiguity (``"mef"`` or ``"mff"``).

    Raises:
        DatasetError: no layout matches, or the MEFB/MFIFB layout cannot be told apart.
    """
    root = _check_root(root)
    if _scene_root(root) is not None and _vifb_input(root) is None and _scene_kind(root) is None:
        if task in ("mef", "mff"):
            return "mefb" if task == "mef" else "mfifb"
        raise DatasetError(
            f"{root}: input/<scene>/ pairs are used by MEFB (multi-exposure) and MFIFB (multi-focus); "
            "pass --layout mefb or mfifb (or --task mef or mff)"
        )
    for layout in LAYOUTS.values():
        if layout.detect(root):
            return layout.name
    raise DatasetError(
        f"{root}: unknown dataset layout (known: {', '.join(LAYOUTS)}); pass --layout NAME, or --a/--b folders"
    )


def list_pairs(
    root: str | Path, layout: str | None = None, split: str | None = None, task: str | None = None
) -> list[Pair]:
    """List the pairs of the dataset at ``root``, sorted by name.

    Args:
        root: dataset root folder.
        layout: layout name (see :data:`LAYOUTS`); detected when ``None``.
        split: one split / subset (``"train"``, ``"test"``, ``"MRI_PET"`` ...); all when ``None``.
        task: overrides the layout's task for every pair.

    Raises:
        DatasetError: unknown layout, missing folders, unpaired files (listed), or no pairs.
    """
    root = _check_root(root)
    if task is not None and task not in TASKS:
        raise ConfigError(f"task {task!r}: expected one of {', '.join(TASKS)}")
    name = resolve_layout_name(layout) if layout else detect_layout(root, task)
    if split is not None and not LAYOUTS[name].splits:
        raise DatasetError(f"{root}: layout {name} has no splits (got split {split!r})")
    pairs = sorted(LAYOUTS[name].list(root, split), key=lambda p: p.name)
    if not pairs:
        raise DatasetError(f"{root}: no image pairs found (layout {name})")
    if task is not None:
        pairs = [dataclasses.replace(p, task=task) for p in pairs]
    return pairs


def list_folder_pairs(a: str | Path, b: str | Path, task: str = "vif") -> list[Pair]:
    """Pairs from two folders of same-named images (``a`` = source a), or from two files (one pair).

    Raises:
        DatasetError: missing folder, unpaired files (listed), or no images.
        ConfigError: ``task`` unknown, or one of ``a``/``b`` is a file and the other a folder.
    """
    if task not in TASKS:
        raise ConfigError(f"task {task!r}: expected one of {', '.join(TASKS)}")
    a, b = Path(a), Path(b)
    for p in (a, b):
        if not p.exists():
            raise DatasetError(f"{p}: no such file or folder")
    if a.is_file() and b.is_file():
        return [Pair(a.stem, a, b, task)]
    if a.is_dir() and b.is_dir():
        return _folders_pairs(a, b, task)
    raise ConfigError(f"--a {a} and --b {b}: give two files or two folders")
