"""Ultralytics YOLO behind a small, offline-safe surface: train, load, predict.

Everything here runs with ``downstream._compat.setup_ultralytics_offline()`` applied first (no network, a
project-local settings folder, a local font). Two more network paths are closed here:

* a ``.pt`` name that is not a local file would be downloaded (a 30 s hang offline): refused up front;
* ``amp=True`` on CUDA makes ultralytics' AMP check load ``yolo26n.pt`` (a download): ``amp`` is forced off unless
  that file is already in ultralytics' weights folder.

Weights never run code: :func:`import_yolo` installs :mod:`downstream.detection.safe_weights`, so every load reads
*safe detector files* (``weights_only``) and refuses ultralytics pickles unless trusted. :func:`train_detector`
trusts only the run folder it is writing, and returns a safe copy of the trained weights (``weights/last.safe.pt``).
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from downstream._compat import check_local_weights, setup_ultralytics_offline
from downstream.detection.metrics import Detections
from downstream.detection.safe_weights import (
    SAFE_SUFFIX,
    install_safe_yolo_loading,
    save_safe_detector,
    trusted_paths,
)
from fusion.errors import CheckpointError, ConfigError, InputError
from fusion.utils.logging import get_logger

__all__ = [
    "import_yolo",
    "ultralytics_device",
    "check_model_spec",
    "train_detector",
    "load_detector",
    "detector_info",
    "class_mapping",
    "predict_images",
]

log = get_logger(__name__)

_CLASS_ALIASES = {"people": "person", "pedestrian": "person", "bike": "bicycle", "motorbike": "motorcycle"}


def import_yolo():
    """Apply the offline setup, then import and return ``ultralytics.YOLO``."""
    setup_ultralytics_offline()
    from ultralytics import YOLO

    install_safe_yolo_loading()
    return YOLO


def ultralytics_device(device: str | None) -> str:
    """Map ``cpu``/``auto``/``cuda``/``cuda:N``/``N``/``N,M`` to ultralytics' device string (``cpu``, ``0``, ``0,1``).

    Raises:
        ConfigError: CUDA asked for but absent, or a GPU index beyond the installed count.
    """
    import torch

    name = str(device or "auto").strip().lower().replace(" ", "")
    if name == "cpu":
        return "cpu"
    n = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if name == "auto":
        return "0" if n else "cpu"
    if name == "cuda":
        name = "0"
    name = name.replace("cuda:", "")
    ids = name.split(",")
    if not all(i.isdigit() for i in ids):
        raise ConfigError(f"device={device!r}: expected cpu, auto, cuda, cuda:N, N or a list like 0,1")
    if n == 0:
        raise ConfigError(f"device={device!r}: CUDA is not available on this machine (use cpu or auto)")
    bad = [i for i in ids if int(i) >= n]
    if bad:
        raise ConfigError(f"device={device!r}: GPU {bad[0]} does not exist ({n} visible)")
    return ",".join(ids)


def _ultralytics_root() -> Path:
    import importlib.util

    spec = importlib.util.find_spec("ultralytics")
    return Path(next(iter(spec.submodule_search_locations)))


def check_model_spec(model: str | os.PathLike) -> str:
    """Validate a model name before ultralytics sees it: a model YAML it ships (or a local one), or a local ``.pt``.

    Raises:
        CheckpointError: a ``.pt`` that is not a local file (no download is attempted).
        ConfigError: a YAML found neither locally nor among ultralytics' model configs.
    """
    text = str(model)
    p = Path(text)
    if p.suffix == ".pt":
        return str(check_local_weights(p))
    if p.suffix not in (".yaml", ".yml"):
        raise ConfigError(f"model={text!r}: expected a model .yaml (e.g. yolov8n.yaml, yolo11s.yaml) or a local .pt")
    if p.is_file():
        return str(p)
    unified = re.sub(r"(\d+)([nslmx])(.+)?$", r"\1\3", p.name)
    cfg = _ultralytics_root() / "cfg" / "models"
    if not any(cfg.rglob(p.name)) and not any(cfg.rglob(unified)):
        raise ConfigError(f"model={text!r}: no such model YAML (locally or in ultralytics' cfg/models)")
    return text


def _amp_allowed(device: str) -> bool:
    if device == "cpu":
        return False
    setup_ultralytics_offline()
    from ultralytics.utils import WEIGHTS_DIR

    return (Path(WEIGHTS_DIR) / "yolo26n.pt").is_file()


def train_detector(
    data_yaml: str | os.PathLike,
    schedule: dict[str, Any],
    *,
    run_dir: str | os.PathLike,
    device: str = "cpu",
) -> Path:
    """Train a detector with ultralytics and return the final weights as a safe file (``weights/last.safe.pt``).

    Args:
        data_yaml: dataset YAML (see :func:`downstream.detection.yolo_data.write_yolo_dataset`).
        schedule: train arguments plus ``model`` (see :mod:`downstream.detection.schedule`).
        run_dir: the run folder (ultralytics ``project/name``); reused with ``exist_ok``.
        device: ultralytics device string; several GPUs (``0,1``) start ultralytics' own DDP training.

    The last epoch's weights are returned rather than ``best.pt``: validation runs on the test split, and choosing
    a checkpoint on it would leak the test set into the comparison. ``pretrained=`` must be a safe detector file.
    The ultralytics pickles the trainer writes into ``run_dir`` are trusted while it runs (it reloads them) and
    converted once at the end; nothing else is.
    """
    YOLO = import_yolo()
    args = dict(schedule)
    model = check_model_spec(args.pop("model"))
    for key in ("pretrained", "distill_model"):  # a weights name here would be downloaded too
        if isinstance(args.get(key), str) and args[key].lower() not in ("true", "false", ""):
            args[key] = str(check_local_weights(args[key]))
    dev = ultralytics_device(device)
    if args.get("amp", False) and not _amp_allowed(dev):
        if dev != "cpu":
            log.warning(
                "amp=True needs ultralytics' AMP-check weights yolo26n.pt locally (else a download); "
                "training with amp=False"
            )
        args["amp"] = False
    args.setdefault("amp", False)
    run_dir = Path(run_dir)
    args.update(
        data=str(data_yaml), project=str(run_dir.parent.resolve()), name=run_dir.name, exist_ok=True, device=dev
    )
    det = YOLO(model, task="detect")
    weights = run_dir / "weights"
    with trusted_paths(weights):
        det.train(**args)
        last = weights / "last.pt"
        if not last.is_file():
            raise CheckpointError(f"{last}: training finished without writing weights")
        trained = YOLO(str(last), task="detect")
    kept = {k: v for k, v in ((getattr(trained, "ckpt", None) or {}).get("train_args") or {}).items()
            if k in ("imgsz", "task", "single_cls")}
    return save_safe_detector(trained, weights / f"last{SAFE_SUFFIX}", train_args=kept)


def load_detector(weights: str | os.PathLike, *, trust: bool = False):
    """Load a local detector: a safe detector file, or (``trust=True`` only) an ultralytics pickle.

    A missing file is a :class:`CheckpointError`, never a download; an ultralytics pickle without ``trust`` is
    refused before any of it is unpickled.
    """
    p = check_local_weights(weights)
    if p.suffix != ".pt":
        raise CheckpointError(f"{p}: expected trained detector weights (.pt)")
    YOLO = import_yolo()
    try:
        with trusted_paths(*([p] if trust else [])):
            model = YOLO(str(p), task="detect")
    except CheckpointError:
        raise
    except Exception as exc:  # ultralytics raises many types for a bad file
        raise CheckpointError(f"{p}: cannot load detector ({exc.__class__.__name__}: {exc})") from None
    if getattr(model, "task", "detect") != "detect":
        raise CheckpointError(f"{p}: a {model.task} model, not a detector")
    return model


def detector_info(model) -> dict[str, Any]:
    """``{"names": [...], "channels": int, "imgsz": int | None}`` of a loaded detector (imgsz: its training size)."""
    names = model.names
    names = [names[i] for i in sorted(names)] if isinstance(names, dict) else list(names)
    inner = getattr(model, "model", None)
    ch = getattr(inner, "yaml", {}).get("channels", 3) if inner is not None else 3
    imgsz = (getattr(model, "ckpt", None) or {}).get("train_args", {}).get("imgsz")
    return {"names": names, "channels": int(ch), "imgsz": int(imgsz) if isinstance(imgsz, int) else None}


def class_mapping(detector_names: Sequence[str], dataset_classes: Sequence[str]) -> dict[int, int]:
    """Map detector class indices to dataset ones by name (case-insensitive, ``people`` = ``person`` ...).

    A COCO-trained detector evaluated on LLVIP keeps only its ``person`` outputs. Raises :class:`ConfigError` when
    no class matches.
    """

    def norm(n: str) -> str:
        n = str(n).strip().lower()
        return _CLASS_ALIASES.get(n, n)

    target = {norm(c): i for i, c in enumerate(dataset_classes)}
    mapping = {i: target[norm(n)] for i, n in enumerate(detector_names) if norm(n) in target}
    if not mapping:
        raise ConfigError(
            f"detector classes ({', '.join(map(str, detector_names[:8]))}...) share no name with the dataset's "
            f"({', '.join(dataset_classes)})"
        )
    return mapping


def predict_images(
    model,
    images: Sequence[str | os.PathLike],
    *,
    imgsz: int,
    device: str = "cpu",
    batch: int = 8,
    conf: float = 0.001,
    iou: float = 0.7,
    max_det: int = 300,
    class_map: dict[int, int] | None = None,
) -> list[Detections]:
    """Run the detector on image files; boxes come back in each image's own pixel frame.

    Files are decoded exactly as ultralytics' training loader decodes them (BGR, or all channels for a 4-channel
    detector): handing ultralytics a list of *paths* would open them with PIL as RGB and drop the thermal channel.
    The low default ``conf`` keeps the whole score range, which AP and the miss-rate curve need.
    """
    import cv2
    from ultralytics.utils.patches import imread

    channels = detector_info(model)["channels"]
    flag = {1: cv2.IMREAD_GRAYSCALE, 3: cv2.IMREAD_COLOR}.get(channels, cv2.IMREAD_UNCHANGED)
    dev = ultralytics_device(device).split(",")[0]
    out: list[Detections] = []
    paths = [Path(p) for p in images]
    for i in range(0, len(paths), batch):
        arrays = []
        for p in paths[i : i + batch]:
            im = imread(p, flags=flag)
            if im is None:
                raise InputError(f"{p}: cannot read image")
            if im.ndim == 2:
                im = im[..., None]
            if im.shape[2] != channels:
                raise InputError(f"{p}: {im.shape[2]} channels, the detector takes {channels}")
            arrays.append(im)
        results = model.predict(
            arrays, imgsz=imgsz, device=dev, conf=conf, iou=iou, max_det=max_det, verbose=False, batch=batch
        )
        for r in results:
            b = r.boxes
            boxes = b.xyxy.cpu().numpy().astype(np.float64)
            scores = b.conf.cpu().numpy().astype(np.float64)
            cls = b.cls.cpu().numpy().astype(np.int64)
            if class_map is not None:
                keep = np.array([c in class_map for c in cls], dtype=bool)
                boxes, scores = boxes[keep], scores[keep]
                cls = np.array([class_map[c] for c in cls[keep]], dtype=np.int64)
            out.append(Detections(boxes, scores, cls))
    return out
