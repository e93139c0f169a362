"""Does fusion help my detector? Train (or take) a YOLO detector per input and compare them on the test split.

:func:`run_det_eval` is the library behind ``pipelines/det_eval.py``. For every input (``ir``, ``vis``, each fuser,
optionally ``rgbt`` early fusion) it

1. builds the input's images (fused ones cached on disk, see :mod:`downstream.detection.inputs`);
2. writes a YOLO dataset folder + YAML into the run folder;
3. trains a detector with the same schedule and seed (a finished training with the same schedule and data is reused),
   or uses one given detector for every input;
4. predicts on the test split and computes mAP50, mAP50-95, precision, recall and the log-average miss rate with
   :mod:`downstream.detection.metrics` (the same code for trained and given detectors);

then writes ``results.csv``/``results.md``, ``curves.png`` (PR and miss-rate curves), ``qualitative.png``,
``predictions/<input>.json`` (every test image's boxes and scores) and ``run.json`` (settings, sizes, timings,
versions).
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from downstream._compat import check_local_weights
from downstream.detection.datasets import DetDataset, load_detection_dataset, load_llvip
from downstream.detection.inputs import (
    EARLY_FUSION,
    SINGLE_INPUTS,
    display_image,
    input_channels,
    input_images,
    input_slug,
)
from downstream.detection.labels import count_boxes_outside, person_class
from downstream.detection.metrics import DetMetrics, evaluate_detections
from downstream.detection.report import plot_curves, plot_qualitative, write_results
from downstream.detection.safe_weights import SAFE_SUFFIX
from downstream.detection.schedule import load_schedule
from downstream.detection.yolo_data import read_fingerprint, write_yolo_dataset
from fusion.errors import ConfigError, DatasetError
from fusion.utils.io import atomic_write_text, is_within
from fusion.utils.logging import get_logger

__all__ = ["DEFAULT_INPUTS", "SYNTHETIC_DEFAULTS", "DetEvalSettings", "run_det_eval", "prepare_synthetic_llvip"]

log = get_logger(__name__)

DEFAULT_INPUTS: tuple[str, ...] = ("ir", "vis", "maximum", EARLY_FUSION)
SYNTHETIC_DEFAULTS: dict[str, int] = {"n_train": 48, "n_test": 160, "seed": 0, "height": 256, "width": 320}
"""Size of the synthetic LLVIP-layout set written when no ``data`` is given (sized for a CPU run under 10 min)."""


@dataclass
class DetEvalSettings:
    """Everything one comparison run depends on.

    Attributes:
        out: run folder (created). Never inside ``data``.
        data: dataset root; ``None`` writes synthetic LLVIP-layout scenes into ``out/synthetic_llvip`` (cached).
        layout: ``auto``, ``llvip``, ``m3fd`` or ``msrs``.
        inputs: ``ir``, ``vis``, fuser specs, ``rgbt``.
        schedule: schedule name in ``configs/det`` or a YAML path; ``None``: ``synthetic_cpu`` for synthetic data,
            else ``llvip``.
        overrides: ``key=value`` changes to the schedule.
        det_checkpoint: evaluate this detector on every input instead of training (a safe detector file).
        detector: a given detector by name (:mod:`downstream.detection.detectors`, e.g. ``opencv-hog``) evaluated on
            every input instead of training; it finds people only, so only the person class is scored.
        detector_kwargs: its settings (``detector.KEY=VALUE``).
        eval_split: ``test`` (the dataset's test split) or ``all`` (every labelled pair once: for a given detector
            that was never trained on the dataset, e.g. a sample without a split).
        trust_checkpoint: allow ``det_checkpoint`` to be an ultralytics pickle (it can run code when loaded).
        device: ``cpu``, ``auto``, ``cuda``, ``N`` or ``N,M`` (ultralytics' own multi-GPU training).
        task: fusion task passed to the fusers.
        max_train, max_test: use only the first N samples of a split (quick runs).
        synthetic: sizes for the synthetic set (see :data:`SYNTHETIC_DEFAULTS`).
        layout_kwargs: passed to the dataset reader (``label_source`` for MSRS, ``labels`` for M3FD).
        fuser_kwargs: settings for every fuser (TC-MoA fusers also receive ``device``).
        qualitative: rows in the qualitative grid.
        fused_format: cache format of fused images, ``png`` (lossless) or ``jpg`` (smaller).
        retrain: train again even when a finished run matches.
    """

    out: Path
    data: Path | None = None
    layout: str = "auto"
    inputs: tuple[str, ...] = DEFAULT_INPUTS
    schedule: str | None = None
    overrides: list[str] = field(default_factory=list)
    det_checkpoint: Path | None = None
    detector: str | None = None
    detector_kwargs: dict[str, Any] = field(default_factory=dict)
    eval_split: str = "test"
    trust_checkpoint: bool = False
    device: str = "auto"
    task: str = "vif"
    max_train: int | None = None
    max_test: int | None = None
    synthetic: dict[str, int] = field(default_factory=lambda: dict(SYNTHETIC_DEFAULTS))
    layout_kwargs: dict[str, Any] = field(default_factory=dict)
    fuser_kwargs: dict[str, Any] = field(default_factory=dict)
    qualitative: int = 4
    retrain: bool = False
    fused_format: str = "png"


def prepare_synthetic_llvip(root: str | os.PathLike, **sizes: int) -> Path:
    """Write synthetic LLVIP-layout scenes into ``root`` once (:func:`fusion.data.synthetic.write_synthetic_once`);
    reused while the sizes and the generator match."""
    from fusion.data.synthetic import write_synthetic_once

    return write_synthetic_once(root, "llvip", owner="det_eval", **{**SYNTHETIC_DEFAULTS, **sizes})


def _check_inputs(inputs: tuple[str, ...]) -> None:
    from fusion.fusers import FuserSpec, list_fusers

    if not inputs:
        raise ConfigError("no inputs to compare")
    if len(set(inputs)) != len(inputs):
        raise ConfigError(f"inputs: duplicate name in {', '.join(inputs)}")
    known = set(list_fusers())
    for name in inputs:
        if name in SINGLE_INPUTS or name == EARLY_FUSION:
            continue
        if FuserSpec.parse(name).name not in known:
            raise ConfigError(
                f"input {name!r}: not ir, vis, {EARLY_FUSION} or a fusion method (known: {', '.join(sorted(known))})"
            )


def _load_dataset(s: DetEvalSettings) -> tuple[DetDataset, Path]:
    if s.data is None:
        root = prepare_synthetic_llvip(s.out / "synthetic_llvip", **s.synthetic)
        return load_llvip(root), root
    return load_detection_dataset(s.data, s.layout, **s.layout_kwargs), Path(s.data)


def _fuser_kwargs(s: DetEvalSettings, device: str) -> dict[str, Any]:
    kw = dict(s.fuser_kwargs)  # device reaches only the fusers that declare it (FuserSpec.build)
    kw.setdefault("device", "cpu" if device == "cpu" else f"cuda:{device.split(',')[0]}")
    return kw


def _versions() -> dict[str, str]:
    import importlib.metadata as md

    out = {}
    for pkg in ("ultralytics", "torch", "numpy"):
        try:
            out[pkg] = md.version(pkg)
        except md.PackageNotFoundError:
            out[pkg] = "absent"
    return out


def _train_or_reuse(
    s: DetEvalSettings, slug: str, data_yaml: Path, schedule: dict[str, Any], device: str
) -> tuple[Path, bool]:
    from downstream.detection.yolo import train_detector

    run_dir = s.out / "train" / slug
    record_path = run_dir / "det_eval.json"
    record = {"schedule": schedule, "data": read_fingerprint(data_yaml.parent)}
    last = run_dir / "weights" / f"last{SAFE_SUFFIX}"
    if not s.retrain and last.is_file() and record_path.is_file():
        try:
            if json.loads(record_path.read_text(encoding="utf-8")) == json.loads(json.dumps(record)):
                log.info("%s: reusing the finished training in %s", slug, run_dir)
                return last, True
        except ValueError:
            pass
    record_path.unlink(missing_ok=True)
    weights = train_detector(data_yaml, schedule, run_dir=run_dir, device=device)
    atomic_write_text(record_path, json.dumps(record, indent=2, sort_keys=True, default=str))
    return weights, False


def _report_boxes_outside(dataset: DetDataset) -> dict[str, Any]:
    """Count the annotated boxes that reach far outside their image (clipped for training), and say so once."""
    per_split, examples = {}, []
    for split, samples in dataset.splits.items():
        n = 0
        for smp in samples:
            k = count_boxes_outside(smp.labels)
            if k:
                n += k
                examples.append(f"{split}/{smp.ident}")
        per_split[split] = n
    total = sum(per_split.values())
    if total:
        shown = ", ".join(examples[:5]) + (f", … ({len(examples)} images)" if len(examples) > 5 else "")
        log.warning("%d annotated box(es) reach far outside their image and are clipped to it for training: %s",
                    total, shown)
    return {"count": total, "per_split": per_split, "images": examples[:50]}


def _predictions_json(samples: list[Any], preds: list[Any]) -> dict[str, Any]:
    """Every test image's boxes (xyxy pixels, rounded to 0.01 px), scores and classes, in the scored order."""
    return {"images": [{"id": smp.ident, "boxes": np.round(d.boxes, 2).tolist(),
                        "scores": np.round(d.scores, 6).tolist(), "classes": d.classes.tolist()}
                       for smp, d in zip(samples, preds, strict=True)]}


def _metrics_json(m: DetMetrics) -> dict[str, Any]:
    return {**m.row(), "ap50_per_class": m.ap50_per_class, "n_images": m.n_images, "n_gt": m.n_gt}


def run_det_eval(s: DetEvalSettings) -> list[dict[str, Any]]:
    """Run the comparison described by ``s`` and return the result rows (also written to ``s.out``).

    Steps: check the settings; load the data; take the given detector (or none); per input, make its images, train
    or reuse a detector, predict and score; write the tables, curves, pictures and ``run.json``.

    Raises:
        ConfigError, DatasetError, CheckpointError, InputError: one-line problems with settings, data or weights.
    """
    from downstream.detection.yolo import ultralytics_device

    t_start = time.perf_counter()
    _check_settings(s)
    device = ultralytics_device(s.device)
    schedule_name = s.schedule or ("synthetic_cpu" if s.data is None else "llvip")
    schedule = load_schedule(schedule_name, list(s.overrides))
    s.out.mkdir(parents=True, exist_ok=True)
    dataset, data_root = _load_dataset(s)
    dataset = dataset.subset({"train": s.max_train, "test": s.max_test})
    outside = _report_boxes_outside(dataset)
    test = _eval_samples(dataset, s.eval_split)
    given, class_map, imgsz, inputs = _given_detector(s, dataset, int(schedule.get("imgsz", 640)))
    splits = {"test": test} if given is not None else {"train": dataset.split("train"), "test": test}
    found = person_class(dataset.classes)
    person = 0 if found is None else found  # the miss rate is LLVIP's pedestrian measure; else the first class
    people_only = s.detector is not None  # the named detectors find people only: score the person class alone
    if people_only and found is None:
        raise ConfigError(f"{data_root}: no person class among {', '.join(dataset.classes)}; --detector "
                          f"{s.detector} finds people only")  # fmt: skip
    if given is None and {x.ident for x in splits["train"]} & {x.ident for x in test}:
        log.warning("%s: the training and the scored images overlap (a sample without a train split): the "
                    "trained detectors are scored on images they were trained on", data_root)
    classes = (dataset.classes[person],) if people_only else dataset.classes
    gts = [smp.labels.only_class(person) if people_only else smp.labels for smp in test]
    if not any(len(g) for g in gts):
        raise DatasetError(f"{data_root}: no {' / '.join(classes)} box in the {len(test)} scored image(s): "
                           "nothing to score")  # fmt: skip
    results = [_evaluate_input(s, name, classes, splits, gts, 0 if people_only else person, given=given,
                               class_map=class_map, schedule=schedule, imgsz=imgsz, device=device)
               for name in inputs]  # fmt: skip

    n_gt = sum(int((~g.ignore).sum()) for g in gts)
    notes = [
        f"data: {'synthetic LLVIP-layout scenes' if s.data is None else data_root} ({dataset.name}), "
        f"{len(splits.get('train', []))} train / {len(test)} {s.eval_split} images, {n_gt} scored boxes, "
        f"classes scored: {', '.join(classes)}",
        "detector: " + _detector_note(s, given, schedule, schedule_name, imgsz),
        f"miss rate: log-average over FPPI in [1e-2, 1] (9 points), recall@1FPPI at one false positive per image, "
        f"class {dataset.classes[person]!r}, IoU 0.5",
    ]  # fmt: skip
    rows = [{"input": r.name, **r.metrics.row()} for r in results]
    write_results(rows, s.out, title="Detection: does fusion help?", notes=notes)
    _write_pictures(s, results, test, gts, conf=getattr(given, "display_score", 0.25) if people_only else 0.25)
    run = {
        "settings": {k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(s).items()},
        "schedule": schedule,
        "device": device,
        "dataset": {
            "name": dataset.name,
            "root": str(data_root),
            "classes": list(dataset.classes),
            "sizes": {k: len(v) for k, v in splits.items()},
            "boxes_outside_image": outside,
        },  # fmt: skip
        "detector": given.record() if people_only else None,
        "timings": {r.name: r.timings for r in results},
        "total_s": round(time.perf_counter() - t_start, 1),
        "versions": _versions(),
    }
    atomic_write_text(s.out / "run.json", json.dumps(run, indent=2, default=str))
    return rows


def _detector_note(s: DetEvalSettings, given: Any, schedule: dict[str, Any], schedule_name: str, imgsz: int) -> str:
    if s.detector is not None:
        settings = ", ".join(f"{k} {v}" for k, v in given.record().items() if k != "detector")
        return f"{s.detector} (given, not trained; {settings})"
    if given is not None:
        return str(s.det_checkpoint)
    return (f"{schedule['model']} trained per input, same schedule `{schedule_name}` and seed "
            f"{schedule.get('seed', 0)}, {schedule.get('epochs')} epochs, imgsz {imgsz}, last epoch's weights")


def _eval_samples(dataset: DetDataset, eval_split: str) -> list[Any]:
    """The samples scored: the test split, or every labelled pair once (``all``, in split order)."""
    if eval_split == "test":
        if not dataset.splits.get("test"):
            raise ConfigError(f"{dataset.name}: the test split is empty (a given detector can be scored on every "
                              "pair with --eval-split all)")  # fmt: skip
        return dataset.split("test")
    seen: dict[str, Any] = {}
    for samples in dataset.splits.values():
        for smp in samples:
            seen.setdefault(smp.ident, smp)
    return list(seen.values())


def _check_settings(s: DetEvalSettings) -> None:
    """What can be refused before any slow step (output place, weights file, input names)."""
    s.out = Path(s.out)
    if s.data is not None and is_within(s.out, s.data):
        raise ConfigError(f"--out {s.out} lies inside the dataset {s.data}; results are never written into inputs")
    if s.eval_split not in ("test", "all"):
        raise ConfigError(f"eval split {s.eval_split!r}: expected test or all")
    if s.detector is not None and s.det_checkpoint is not None:
        raise ConfigError("--detector and --det-checkpoint both name a detector: give one")
    if s.eval_split == "all" and s.detector is None and s.det_checkpoint is None:
        raise ConfigError("--eval-split all scores training images too: only for a given detector "
                          "(--detector or --det-checkpoint)")  # fmt: skip
    if s.det_checkpoint is not None:
        check_local_weights(s.det_checkpoint)  # before any slow step: a missing file must fail at once
    _check_inputs(tuple(s.inputs))


def _given_detector(s: DetEvalSettings, dataset: DetDataset, imgsz: int) -> tuple[Any, Any, int, list[str]]:
    """``(detector, class map, imgsz, inputs)`` for ``--det-checkpoint`` (``None``s without one).

    The inputs whose channel count the detector cannot take are dropped (``rgbt`` among the defaults) or refused.
    """
    from downstream.detection.yolo import class_mapping, detector_info, load_detector

    inputs = list(s.inputs)
    if s.detector is not None:
        from downstream.detection.detectors import create_detector

        given = create_detector(s.detector, **s.detector_kwargs)
        class_map, channels, source = None, given.channels, s.detector
    elif s.det_checkpoint is None:
        return None, None, imgsz, inputs
    else:
        given = load_detector(s.det_checkpoint, trust=s.trust_checkpoint)
        info = detector_info(given)
        class_map, channels, source = class_mapping(info["names"], dataset.classes), info["channels"], s.det_checkpoint
        if info["imgsz"] and not any(o.split("=", 1)[0].strip() == "imgsz" for o in s.overrides):
            imgsz = info["imgsz"]  # evaluate at the size the detector was trained at unless told otherwise
    wrong = [n for n in inputs if input_channels(n) != channels]
    if wrong:
        if s.inputs == DEFAULT_INPUTS and wrong == [EARLY_FUSION]:
            log.info("skipping %s: the given detector takes %d channels", EARLY_FUSION, channels)
            inputs.remove(EARLY_FUSION)
        else:
            raise ConfigError(
                f"{source}: the detector takes {channels} channels, input {wrong[0]!r} has {input_channels(wrong[0])}"
            )
    return given, class_map, imgsz, inputs


@dataclass
class _InputResult:
    """One input's scores, predictions on the test images, those images, and its stage timings."""

    name: str
    metrics: DetMetrics
    preds: list[Any]
    images: list[Path]
    timings: dict[str, Any]


def _evaluate_input(
    s: DetEvalSettings, name: str, classes: tuple[str, ...], splits: dict[str, Any], gts: list[Any], person: int, *,
    given: Any, class_map: Any, schedule: dict[str, Any], imgsz: int, device: str,
) -> _InputResult:
    """Images of input ``name`` (fused through the cache if needed), its detector (given, reused, trained), scores."""
    from downstream.detection.yolo import load_detector, predict_images

    slug = input_slug(name)
    t0 = time.perf_counter()
    images = {
        sp: input_images(name, smps, sp, s.out / "inputs", task=s.task,
                         fuser_kwargs=_fuser_kwargs(s, device), fused_format=s.fused_format)
        for sp, smps in splits.items()
    }  # fmt: skip
    t_inputs = time.perf_counter() - t0
    reused = False
    if given is None:
        yaml_path = write_yolo_dataset(
            s.out / "datasets" / slug, splits, images, classes, channels=input_channels(name)
        )
        weights, reused = _train_or_reuse(s, slug, yaml_path, schedule, device)
        model = load_detector(weights)
    else:
        model = given
    t1 = time.perf_counter()
    test_images = [images["test"][smp.ident] for smp in splits["test"]]
    if s.detector is not None:
        preds = model.predict(test_images, desc=name)
    else:
        preds = predict_images(
            model, test_images, imgsz=imgsz, device=device,
            batch=int(schedule.get("batch", 8)) if given is None else 8, class_map=class_map,
        )  # fmt: skip
    m = evaluate_detections(preds, gts, len(classes), miss_rate_class=person)
    t2 = time.perf_counter()
    timings = {"inputs_s": round(t_inputs, 2), "train_s": round(t1 - t0 - t_inputs, 2),
               "evaluate_s": round(t2 - t1, 2), "reused_training": reused}  # fmt: skip
    atomic_write_text(s.out / "metrics" / f"{slug}.json", json.dumps(_metrics_json(m), indent=2))
    atomic_write_text(s.out / "predictions" / f"{slug}.json", json.dumps(_predictions_json(splits["test"], preds)))
    log.info("%s: mAP50 %.4f  mAP50-95 %.4f  recall@1FPPI %.4f  MR %.4f", name, m.map50, m.map50_95,
             m.recall_1fppi, m.miss_rate)
    return _InputResult(name, m, preds, test_images, timings)


def _write_pictures(s: DetEvalSettings, results: list[_InputResult], test: list[Any], gts: list[Any],
                    conf: float = 0.25) -> None:
    """``curves.png`` (precision-recall, miss rate) and ``qualitative.png`` (``s.qualitative`` test images, boxes
    scoring ``conf`` or more)."""
    plot_curves({r.name: r.metrics for r in results}, s.out / "curves.png")
    k = min(s.qualitative, len(test))
    if k > 0:
        pick = np.unique(np.linspace(0, len(test) - 1, k).round().astype(int))
        plot_qualitative(
            {r.name: [display_image(r.name, r.images[i]) for i in pick] for r in results},
            [gts[i] for i in pick],
            {r.name: [r.preds[i] for i in pick] for r in results},
            s.out / "qualitative.png",
            row_names=[test[i].ident for i in pick],
            conf=conf,
        )
