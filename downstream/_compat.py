"""Runtime fixes for the pinned perception stack, in one place.

Call :func:`prepare_mmseg` before importing ``mmseg.models`` and :func:`setup_ultralytics_offline` before importing
``ultralytics``. Both are idempotent.

Why each fix exists (measured, see the README's dependency notes):

* **mmcv-lite shim.** Full mmcv 2.1.0 does not build against torch 2.14 (its headers need C++20) and takes over half
  an hour from source, so we use ``mmcv-lite`` (no compiled ops). mmseg imports ``mmcv.ops`` at module level in a few
  places; ``mmcv/ops/__init__.py`` then loads the missing ``mmcv._ext`` and fails. The shim registers an empty
  ``mmcv.ops`` package exposing the pure-torch ``point_sample`` and raising a clear error for compiled ops.
  SegFormer, DeepLabV3+, FCN, BiSeNetV2 and most other models need no compiled op.
* **mmengine checkpoints never run code.** mmengine reads every checkpoint (``load_checkpoint``, ``Runner.resume``,
  ``load_from``) through its ``CheckpointLoader`` schemes. :func:`install_safe_mmengine_loading` re-registers the
  local and HTTP schemes with :func:`fusion.utils.safe_load.load_torch_file` (``weights_only``, numpy/HistoryBuffer
  values converted from inert records, no callable allow-listed) and makes every other scheme (pavi, s3, model zoos)
  refuse. ``torch.serialization.add_safe_globals`` is never called, so no other load is widened.
* **mmseg class-weighted cross-entropy.** mmseg 1.2.2's ``cross_entropy`` computes its averaging factor by indexing
  the class weights with every label, the ignore label (255) included, which raises ``IndexError`` as soon as a
  batch holds an ignored pixel (padding, void labels). The patch computes that factor over the valid pixels only,
  as ``torch.nn.functional.cross_entropy`` does; batches without ignored pixels get exactly the old value.
* **ultralytics offline.** ``YOLO_OFFLINE=1``, a project-local ``YOLO_CONFIG_DIR`` (never the user's global settings)
  and a local font so that nothing is downloaded.
"""

from __future__ import annotations

import importlib
import os
import shutil
import sys
import types
from pathlib import Path

from fusion.errors import CheckpointError
from fusion.utils.logging import get_logger

__all__ = [
    "install_mmcv_lite_shim",
    "install_safe_mmengine_loading",
    "patch_mmseg_weighted_cross_entropy",
    "prepare_mmseg",
    "setup_ultralytics_offline",
    "ultralytics_config_dir",
    "check_local_weights",
]

log = get_logger(__name__)
_ROOT = Path(__file__).resolve().parents[1]


def install_mmcv_lite_shim() -> bool:
    """Make ``import mmcv.ops`` work with mmcv-lite. Returns True when the shim was installed now.

    Does nothing when the full mmcv (with ``mmcv._ext``) is installed or when the shim is already in place.
    """
    if "mmcv.ops" in sys.modules:
        return False
    import mmcv

    try:
        importlib.import_module("mmcv._ext")
        return False  # full mmcv: the real ops work
    except ImportError:
        pass
    ops = types.ModuleType("mmcv.ops")
    ops.__path__ = [os.path.join(os.path.dirname(mmcv.__file__), "ops")]
    ops.__doc__ = "mmcv.ops stand-in for mmcv-lite (pure-torch ops only); installed by downstream._compat"
    sys.modules["mmcv.ops"] = ops
    mmcv.ops = ops
    from mmcv.ops.point_sample import point_sample

    ops.point_sample = point_sample

    def _needs_full_mmcv(*_args, **_kwargs):
        raise RuntimeError("this operation needs the full mmcv build with compiled ops (mmcv-lite is installed)")

    ops.sigmoid_focal_loss = _needs_full_mmcv

    def __getattr__(name: str):
        if name.startswith("__"):
            raise AttributeError(name)
        raise ModuleNotFoundError(f"mmcv.ops.{name} needs the full mmcv build with compiled ops")

    ops.__getattr__ = __getattr__
    log.debug("installed the mmcv-lite shim for mmcv.ops")
    return True


def _safe_local_loader(filename: str, map_location=None):
    from fusion.utils.safe_load import load_torch_file

    obj = load_torch_file(filename)
    if map_location is not None and map_location != "cpu":
        import torch

        def move(x):
            if isinstance(x, torch.Tensor):
                return x.to(map_location)
            if isinstance(x, dict):
                return type(x)((k, move(v)) for k, v in x.items())
            return x

        obj = move(obj)
    return obj


def _safe_http_loader(filename: str, map_location=None, model_dir=None, progress=False):
    import torch

    from fusion.utils.safe_load import load_torch_file

    cache = Path(model_dir or Path(torch.hub.get_dir()) / "checkpoints")
    cache.mkdir(parents=True, exist_ok=True)
    target = cache / (Path(filename.split("?")[0]).name or "checkpoint.pth")
    if not target.is_file():
        try:
            torch.hub.download_url_to_file(filename, str(target), progress=progress)
        except Exception as exc:
            raise CheckpointError(f"{filename}: cannot download ({exc.__class__.__name__}: {exc})") from None
    return load_torch_file(target)


def _refusing_loader(filename: str, *args, **kwargs):
    raise CheckpointError(f"{filename}: this checkpoint scheme is not supported (it would load without "
                          "weights_only); download the file and give its local path")


def install_safe_mmengine_loading() -> None:
    """Route every mmengine checkpoint read through the project's safe loader (idempotent)."""
    from mmengine.runner.checkpoint import CheckpointLoader

    if getattr(CheckpointLoader, "_tcmoa_safe", False):
        return
    for prefix in list(CheckpointLoader._schemes):
        if prefix not in ("", "http://", "https://"):
            CheckpointLoader.register_scheme(prefixes=prefix, loader=_refusing_loader, force=True)
    CheckpointLoader.register_scheme(prefixes="", loader=_safe_local_loader, force=True)
    CheckpointLoader.register_scheme(prefixes=("http://", "https://"), loader=_safe_http_loader, force=True)
    CheckpointLoader._tcmoa_safe = True


def patch_mmseg_weighted_cross_entropy() -> None:
    """Make mmseg's class-weighted cross-entropy accept ignored pixels (see the module docstring)."""
    from mmseg.models.losses import cross_entropy_loss as ce

    if getattr(ce.cross_entropy, "_ignore_safe", False):
        return
    original = ce.cross_entropy

    def cross_entropy(pred, label, weight=None, class_weight=None, reduction="mean", avg_factor=None,
                      ignore_index=-100, avg_non_ignore=False):
        if class_weight is not None and avg_factor is None and reduction == "mean":
            avg_factor = class_weight[label[label != ignore_index]].sum()
        return original(pred, label, weight=weight, class_weight=class_weight, reduction=reduction,
                        avg_factor=avg_factor, ignore_index=ignore_index, avg_non_ignore=avg_non_ignore)

    cross_entropy._ignore_safe = True
    ce.cross_entropy = cross_entropy


_MMSEG_READY = False


def prepare_mmseg() -> None:
    """Everything mmsegmentation needs here: the shim, safe checkpoint types, and registered modules."""
    global _MMSEG_READY
    if _MMSEG_READY:
        return
    install_mmcv_lite_shim()
    install_safe_mmengine_loading()
    patch_mmseg_weighted_cross_entropy()
    from mmseg.utils import register_all_modules

    register_all_modules(init_default_scope=True)
    _MMSEG_READY = True


def ultralytics_config_dir() -> Path:
    """Our own ultralytics settings folder (overridable with ``YOLO_CONFIG_DIR``): ``.cache/ultralytics`` in a
    source checkout, else ``$XDG_CACHE_HOME/tcmoa-fusion/ultralytics`` (an installed package never writes into
    site-packages)."""
    if os.environ.get("YOLO_CONFIG_DIR"):
        return Path(os.environ["YOLO_CONFIG_DIR"])
    if (_ROOT / "pyproject.toml").is_file():
        return _ROOT / ".cache" / "ultralytics"
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return cache / "tcmoa-fusion" / "ultralytics"


def setup_ultralytics_offline() -> Path:
    """Configure ultralytics to run without network access; call before ``import ultralytics``.

    Sets ``YOLO_OFFLINE=1``, points ``YOLO_CONFIG_DIR`` at a project-local folder and places a font there
    (matplotlib's DejaVuSans, under the names ultralytics looks for) so its plotting never downloads Arial.
    Returns the config folder.
    """
    os.environ["YOLO_OFFLINE"] = "1"
    cfg = ultralytics_config_dir()
    os.environ["YOLO_CONFIG_DIR"] = str(cfg)
    fonts = cfg / "Ultralytics"
    fonts.mkdir(parents=True, exist_ok=True)
    import matplotlib

    src = Path(matplotlib.get_data_path()) / "fonts" / "ttf" / "DejaVuSans.ttf"
    for name in ("Arial.ttf", "Arial.Unicode.ttf"):
        dst = fonts / name
        if not dst.exists():
            shutil.copyfile(src, dst)
    if "ultralytics" in sys.modules:
        log.debug("ultralytics was imported before setup_ultralytics_offline(); settings may be global")
    return cfg


def check_local_weights(path: str | os.PathLike) -> Path:
    """Refuse a ``.pt`` name that is not a local file (ultralytics would try to download it and hang)."""
    p = Path(path)
    if p.suffix in (".yaml", ".yml"):
        return p
    if not p.is_file():
        raise CheckpointError(f"{p}: weights file not found (no download is attempted; give a local .pt or a .yaml)")
    return p
