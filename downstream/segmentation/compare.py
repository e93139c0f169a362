"""Does fusion help segmentation? Train (or load) one segmenter per input and compare them on the test split.

:func:`run_seg_eval` is the library side of ``pipelines/seg_eval.py``. For every input (``ir``, ``vis``, a fuser,
a folder of fused images) it

1. fuses the needed splits once and caches them under ``<out>/fused/<label>-<hash>/<split>/`` (fusers only);
2. trains the config's segmenter on that input's training images with the same schedule and seed (the per-method
   protocol), or takes the given ``seg_checkpoint``;
3. evaluates on the test split with :class:`~downstream.segmentation.metric.RGBTIoUMetric`;

then writes ``results.csv`` / ``results.md`` / ``results.png`` (bar chart) / ``qualitative.png`` into ``<out>``.
Finished inputs are found again (``<out>/runs/<label>-<hash>/result.json``, the hash covers everything that changes
the result) and skipped; interrupted training resumes from its last checkpoint.

Without a dataset root it renders the synthetic MFNet-layout scenes of :mod:`fusion.data.synthetic` into
``<out>/data/`` (objects visible in only one modality by design) and uses the small CPU config.
"""

from __future__ import annotations

import copy
import json
import os
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from mmengine.config import Config
from mmengine.dist import barrier, get_rank, init_dist, is_distributed
from mmengine.registry import DefaultScope
from mmseg.registry import DATASETS
from PIL import Image

from downstream.segmentation.checkpoint import read_segmenter_state
from downstream.segmentation.confusion import SegScores, segmentation_scores
from downstream.segmentation.datasets import check_split_files, find_fused_image
from downstream.segmentation.engine import (
    build_segmenter,
    dataset_cfgs,
    evaluate_segmenter,
    load_config,
    prepare_training,
    set_data_root,
    set_input,
    train_segmenter,
)
from downstream.segmentation.fusion_cache import fuse_split
from downstream.segmentation.inputs import InputSpec, parse_inputs
from downstream.segmentation.report import (
    ResultRow,
    colorize,
    qualitative_grid,
    results_markdown,
    write_bar_chart,
    write_tables,
)
from downstream.segmentation.transforms import LoadRGBTImage, read_rgbt_sources
from fusion.errors import ConfigError, DatasetError
from fusion.fusers import list_fusers
from fusion.fusers.spec import FuserSpec
from fusion.runners.cache import FusedImageCache
from fusion.runners.dist import DistContext
from fusion.utils.config import config_path
from fusion.utils.device import resolve_device
from fusion.utils.fingerprint import digest, file_identity
from fusion.utils.io import atomic_write_text, is_within, write_image
from fusion.utils.logging import get_logger
from fusion.weights import SHIPPED_WEIGHTS

__all__ = [
    "CONFIG_DIR",
    "DEFAULT_BASELINES",
    "SHIPPED_TCMOA",
    "SegEvalSettings",
    "SegEvalReport",
    "detect_dataset",
    "default_config",
    "default_inputs",
    "prepare_synthetic",
    "choose_threads",
    "run_seg_eval",
]

log = get_logger(__name__)

CONFIG_DIR = config_path("seg")  # the shipped mmseg configs (configs/seg)
DEFAULT_BASELINES: tuple[str, ...] = ("average", "maximum")
"""Classical fusers compared by default (registered in :mod:`fusion.fusers.baselines`)."""
SHIPPED_TCMOA = ("tcmoa_tiny", SHIPPED_WEIGHTS["tcmoa_tiny"])
"""The shipped TC-MoA model: compared by default when its weights file exists."""

_SYNTHETIC_CONFIG = "fcn_r18-slim_mfnet-synthetic.py"
_DEFAULT_CONFIGS = {"mfnet": "segformer_mit-b0_mfnet.py", "fmb": "segformer_mit-b0_fmb.py"}


@dataclass
class SegEvalSettings:
    """Everything :func:`run_seg_eval` needs. ``None`` means: the config's (or the built-in) default."""

    data_root: str | None = None  # None: synthetic MFNet-layout scenes
    inputs: Sequence[str] = ()  # empty: ir, vis, the default baselines and the shipped TC-MoA (when present)
    config: str | None = None
    out: str = "runs/seg_eval"
    seg_checkpoint: str | None = None  # evaluate this model on every input instead of training
    iters: int | None = None
    batch_size: int | None = None
    eval_batch_size: int | None = None
    seed: int = 0
    deterministic: bool = False
    device: str = "auto"  # evaluation device (training uses the Runner's choice: CUDA when visible)
    launcher: str = "none"
    cfg_options: dict[str, Any] = field(default_factory=dict)
    fuser_settings: dict[str, Any] = field(default_factory=dict)
    num_samples: int = 2  # test samples in the qualitative grid
    threads: int | None = None  # torch CPU threads; None: automatic (see choose_threads)
    synthetic_n: int = 300
    synthetic_height: int = 84
    synthetic_width: int = 112
    synthetic_seed: int = 0
    progress: bool = True
    quiet: bool = True  # mmengine logs at WARNING (their files keep everything)


@dataclass
class SegEvalReport:
    """What :func:`run_seg_eval` produced."""

    rows: list[ResultRow]
    out_dir: Path
    csv_path: Path
    md_path: Path
    chart_path: Path
    grid_path: Path | None
    markdown: str
    skipped: list[str]
    seconds: float


def detect_dataset(root: str | os.PathLike) -> str:
    """``"mfnet"`` or ``"fmb"`` from the folder layout."""
    r = Path(root)
    if not r.is_dir():
        raise DatasetError(f"{r}: dataset root folder not found")
    if (r / "images").is_dir() and (r / "labels").is_dir():
        return "mfnet"
    if (r / "train" / "Visible").is_dir() or (r / "test" / "Visible").is_dir():
        return "fmb"
    raise DatasetError(f"{r}: neither MFNet (images/, labels/, <split>.txt) nor FMB ({{train,test}}/Visible, "
                       "Infrared, Label) layout")


def default_config(dataset: str | None) -> Path:
    """The config used when none is given: the CPU demo config for the synthetic scenes, else SegFormer-B0."""
    name = _SYNTHETIC_CONFIG if dataset is None else _DEFAULT_CONFIGS[dataset]
    path = CONFIG_DIR / name
    if not path.is_file():
        raise ConfigError(f"{path}: default segmentation config not found (the installed package lacks its "
                          "configs; reinstall it, or pass --config)")
    return path


def default_inputs() -> tuple[list[str], list[str]]:
    """(inputs, skipped notes): ``ir``, ``vis``, :data:`DEFAULT_BASELINES` and the shipped TC-MoA if its weights
    exist."""
    inputs = ["ir", "vis", *DEFAULT_BASELINES]
    skipped = []
    name, weights = SHIPPED_TCMOA
    if weights.is_file():
        inputs.append(name)
    else:
        skipped.append(f"{name}: skipped, {weights} does not exist yet")
    return inputs, skipped


def prepare_synthetic(data_dir: str | os.PathLike, *, n: int, height: int, width: int, seed: int = 0) -> Path:
    """Render (once) the synthetic MFNet-layout scenes into ``data_dir/mfnet_synthetic_<n>_<h>x<w>_s<seed>``."""
    from fusion.data.synthetic import write_synthetic_once

    if n < 5:
        raise ConfigError(f"synthetic_n must be >= 5 (train, val and test need samples), got {n}")
    root = Path(data_dir) / f"mfnet_synthetic_{n}_{height}x{width}_s{seed}"
    return write_synthetic_once(root, "mfnet", owner="seg_eval", n=n, height=height, width=width, seed=seed)


def choose_threads(requested: int | None = None) -> int:
    """CPU threads for torch: ``requested``, else half the cores, at most the idle ones, at least one.

    Measured on the 2-core machine with the CPU demo: one thread ran the whole comparison in 4.7 min, two threads in
    7.4 min (OpenMP's synchronisation costs more than the small convolutions gain), and with other jobs holding the
    cores a 2-thread training step was 10-20x slower than a 1-thread one.
    """
    if requested:
        return max(1, int(requested))
    cores = os.cpu_count() or 1
    try:
        load = os.getloadavg()[0]
    except OSError:
        load = 0.0
    return max(1, min(cores // 2, cores - int(load + 0.5)))


def _splits(cfg: Config, training: bool) -> list[dict]:
    """Distinct dataset configs (one per split) that the run reads."""
    loaders = ("train_dataloader", "test_dataloader") if training else ("test_dataloader",)
    seen, out = set(), []
    for ds in dataset_cfgs(cfg, loaders):
        key = (ds.get("type"), ds.get("data_root"), ds.get("split"), ds.get("val_every"))
        if key not in seen:
            seen.add(key)
            out.append(dict(ds))
    return out


def _check_split(dataset_cfg: dict, cfg: Config, *, progress: bool = False) -> None:
    """Every source image and label of a split decodes, sizes match, labels hold only classes or the ignore label:
    checked before any training so that a bad file fails at once, named, instead of inside a DataLoader worker."""
    ds_cfg = copy.deepcopy(dict(dataset_cfg))
    ds_cfg.update(modality="vis", fused_dir=None, fuser=None, pipeline=[], lazy_init=True)
    with DefaultScope.overwrite_default_scope("mmseg"):
        ds = DATASETS.build(ds_cfg)
    head = cfg.model.get("decode_head") or {}
    head = head[0] if isinstance(head, list | tuple) else head
    ignore = int(head.get("ignore_index", 255))
    n = check_split_files(ds, ignore_index=ignore, progress=progress)
    log.info("checked %d samples of %s split %r", n, dataset_cfg.get("data_root"), dataset_cfg.get("split"))


def _sample_names(dataset_cfg: dict, k: int) -> list[str]:
    if k <= 0:
        return []
    ds_cfg = copy.deepcopy(dict(dataset_cfg))
    ds_cfg.update(modality="vis", fused_dir=None, fuser=None, pipeline=[])
    with DefaultScope.overwrite_default_scope("mmseg"):
        ds = DATASETS.build(ds_cfg)
    all_names = [ds.get_data_info(i)["sample_name"] for i in range(len(ds))]

    def spread(pool: list[str], m: int) -> list[str]:
        picks = np.linspace(0, len(pool) - 1, min(m, len(pool))).round().astype(int)
        return [pool[i] for i in sorted(set(picks.tolist()))]

    day = [n for n in all_names if n.endswith("D")]
    night = [n for n in all_names if n.endswith("N")]
    if day and night and len(day) + len(night) == len(all_names) and k >= 2:
        # MFNet names end in D (day) / N (night): show both conditions
        return spread(day, k // 2) + spread(night, k - k // 2)
    return spread(all_names, k)


def _scores_from_json(d: dict) -> SegScores:
    return segmentation_scores(np.asarray(d["confusion"], dtype=np.int64), d["classes"])


def _grid_rows(cfg_by_label: dict[str, Config], rows: Sequence[ResultRow], run_dirs: dict[str, Path],
               names: Sequence[str], palette) -> list[tuple[str, str, list[np.ndarray]]]:
    loader = LoadRGBTImage()
    infos: dict[str, dict[str, dict]] = {}
    for r in rows:
        ds_cfg = copy.deepcopy(dict(cfg_by_label[r.label].test_dataloader.dataset))
        ds_cfg["pipeline"] = []
        with DefaultScope.overwrite_default_scope("mmseg"):
            ds = DATASETS.build(ds_cfg)
        by_name = {ds.get_data_info(i)["sample_name"]: i for i in range(len(ds))}
        infos[r.label] = {n: ds.get_data_info(by_name[n]) for n in names}
    out = []
    for name in names:
        for r in rows:
            info = infos[r.label][name]
            vis, ir = read_rgbt_sources(info)
            seen = loader.transform(dict(info))["img"][:, :, ::-1]  # BGR -> RGB
            pred = np.asarray(Image.open(run_dirs[r.label] / "pred" / f"{name}.png"))
            gt = np.asarray(Image.open(info["seg_map_path"]))
            out.append((name, r.label, [vis, ir, seen, colorize(pred, palette), colorize(gt, palette)]))
    return out


@dataclass
class _SegPlan:
    """What every input of one comparison shares: data, config, splits, and the test images kept as pictures."""

    data_root: Path
    dataset_kind: str | None
    cfg_path: Path
    base_cfg: Config
    training: bool
    splits: list[dict]
    names: list[str]
    palette: Any
    eval_bs: int


def run_seg_eval(settings: SegEvalSettings) -> SegEvalReport | None:
    """Run the comparison described in the module docs. Returns None on non-zero ranks of a distributed run.

    Steps: join the launch; resolve the inputs; prepare the data and the config (:class:`_SegPlan`); per input,
    fuse (through the fused-image cache), train or take the given segmenter, evaluate (:func:`_run_input`);
    write the tables and pictures.
    """
    t_start, c_start = time.perf_counter(), time.process_time()
    s = settings
    _join_launch(s.launcher)
    rank = get_rank()
    threads = choose_threads(s.threads)
    torch.set_num_threads(threads)
    device = resolve_device(s.device)
    out = Path(s.out)
    if s.data_root and is_within(out, s.data_root):
        raise ConfigError(f"--out {out} lies inside the dataset folder {s.data_root}; choose another folder")
    specs, skipped = _resolve_inputs(s)
    plan = _plan(s, out, rank)
    log.info("dataset %s (%s), config %s, %d inputs: %s, %d torch threads, out %s", plan.data_root,
             plan.dataset_kind or "synthetic mfnet", plan.cfg_path, len(specs), ", ".join(x.label for x in specs),
             threads, out)

    rows: list[ResultRow] = []
    cfg_by_label: dict[str, Config] = {}
    run_dirs: dict[str, Path] = {}
    for k, spec in enumerate(specs, 1):
        cfg, run_dir, row = _run_input(s, plan, spec, f"[{k}/{len(specs)}]", out, device, rank)
        cfg_by_label[spec.label], run_dirs[spec.label] = cfg, run_dir
        if row is not None:
            rows.append(row)
    if rank != 0:
        return None
    title = f"{plan.dataset_kind or 'synthetic MFNet-layout scenes'}: {plan.cfg_path.stem}" + \
        ("" if plan.training else f", checkpoint {Path(s.seg_checkpoint).name}")
    csv_path, md_path = write_tables(rows, out, title=title)
    chart_path = write_bar_chart(rows, out / "results.png", title=title)
    grid_path = None
    if plan.names:
        grid = _grid_rows(cfg_by_label, rows, run_dirs, plan.names, plan.palette)
        grid_path = qualitative_grid(grid, out / "qualitative.png")
    summary = {"inputs": [r.label for r in rows], "config": str(plan.cfg_path), "data_root": str(plan.data_root),
               "skipped": skipped, "threads": threads, "seconds": round(time.perf_counter() - t_start, 1),
               "cpu_seconds": round(time.process_time() - c_start, 1),
               "runs": {k: str(v) for k, v in run_dirs.items()}}
    atomic_write_text(out / "results.json", json.dumps(summary, indent=1) + "\n")
    return SegEvalReport(rows=rows, out_dir=out, csv_path=csv_path, md_path=md_path, chart_path=chart_path,
                         grid_path=grid_path, markdown=results_markdown(rows, title=title), skipped=skipped,
                         seconds=time.perf_counter() - t_start)


def _join_launch(launcher: str) -> None:
    """Join the process group of a ``torchrun``/slurm/mpi launch (mmengine's, or gloo on a CPU-only machine)."""
    if launcher not in ("none", "pytorch", "slurm", "mpi"):
        raise ConfigError(f"launcher={launcher!r}: expected none, pytorch, slurm or mpi")
    if launcher == "none" or is_distributed():
        return
    if torch.cuda.is_available():
        init_dist(launcher, backend="nccl")
    elif launcher == "pytorch":
        # mmengine's init_dist always calls torch.cuda.set_device; on CPU-only machines join with gloo.
        DistContext.from_env().init(backend="gloo")
    else:
        raise ConfigError(f"launcher={launcher!r} needs CUDA here; on CPU use --launcher pytorch (torchrun)")


def _resolve_inputs(s: SegEvalSettings) -> tuple[list[InputSpec], list[str]]:
    """The inputs to compare (given, or the defaults with notes on those skipped), checked before any work."""
    skipped: list[str] = []
    if s.inputs:
        specs = parse_inputs(s.inputs)
    else:
        names, skipped = default_inputs()
        specs = parse_inputs(names)
        for note in skipped:
            log.info(note)
    _check_fusers(specs)
    if s.seg_checkpoint is None and s.iters is not None and s.iters < 1:
        raise ConfigError(f"--iters must be >= 1, got {s.iters}")
    for spec in specs:
        if spec.kind == "folder" and not Path(spec.source).is_dir():
            raise ConfigError(f"--inputs {spec.label}: folder {spec.source} not found")
    return specs, skipped


def _plan(s: SegEvalSettings, out: Path, rank: int) -> _SegPlan:
    """Data (synthetic scenes rendered once, or the given root), the config, its splits, all checked."""
    if s.data_root is None:
        data_root = out / "data" / f"mfnet_synthetic_{s.synthetic_n}_{s.synthetic_height}x{s.synthetic_width}" \
                                   f"_s{s.synthetic_seed}"
        if rank == 0:
            data_root = prepare_synthetic(out / "data", n=s.synthetic_n, height=s.synthetic_height,
                                          width=s.synthetic_width, seed=s.synthetic_seed)
        if is_distributed():
            barrier()
        dataset_kind = None
    else:
        data_root = Path(s.data_root)
        dataset_kind = detect_dataset(data_root)
    cfg_path = Path(s.config) if s.config else default_config(dataset_kind)
    base_cfg = load_config(cfg_path, s.cfg_options)
    set_data_root(base_cfg, data_root)
    if s.data_root is None and "data_preprocessor" in base_cfg.model and \
            "size" not in s.cfg_options.get("model", {}).get("data_preprocessor", {}):
        base_cfg.model.data_preprocessor["size"] = (s.synthetic_height, s.synthetic_width)  # train batches: no padding
    if "test_dataloader" not in base_cfg or not base_cfg.test_dataloader:
        raise ConfigError(f"{cfg_path}: the config has no test_dataloader")
    training = s.seg_checkpoint is None
    if not training and not Path(s.seg_checkpoint).is_file():
        raise ConfigError(f"--seg-checkpoint {s.seg_checkpoint}: file not found")
    if not training:
        read_segmenter_state(s.seg_checkpoint)  # refuse an unsafe or broken file before any fusing
    splits = _splits(base_cfg, training)
    if rank == 0:
        for ds in splits:
            _check_split(ds, base_cfg, progress=s.progress)
    test_ds_cfg = base_cfg.test_dataloader.dataset
    with DefaultScope.overwrite_default_scope("mmseg"):
        metainfo = DATASETS.get(test_ds_cfg["type"]).METAINFO
    return _SegPlan(data_root=Path(data_root), dataset_kind=dataset_kind, cfg_path=cfg_path, base_cfg=base_cfg,
                    training=training, splits=splits, names=_sample_names(test_ds_cfg, s.num_samples),
                    palette=metainfo["palette"],
                    eval_bs=s.eval_batch_size or int(base_cfg.test_dataloader.get("batch_size", 1)))


def _run_input(s: SegEvalSettings, plan: _SegPlan, spec: InputSpec, step: str, out: Path, device: torch.device,
               rank: int) -> tuple[Config, Path, ResultRow | None]:
    """One input: its config and run folder (named by a hash of everything that decides the result); a finished
    run is reused, else fuse, train (or take ``--seg-checkpoint``) and evaluate. The row is ``None`` off rank 0."""
    cfg = copy.deepcopy(plan.base_cfg)
    cache, fused_dir = None, None
    if spec.kind == "fuser":
        # the key holds the settings and the weights' identity: retrained weights are fused again
        cache = FusedImageCache(out / "fused", FuserSpec.parse(spec.source, s.fuser_settings),
                                context={"root": str(plan.data_root.resolve())})
        fused_dir = cache.folder
    elif spec.kind == "folder":
        fused_dir = Path(spec.source)
    set_input(cfg, spec.modality, fused_dir=fused_dir)
    sig = digest({"cfg": cfg.to_dict(), "seed": s.seed, "iters": s.iters, "batch": s.batch_size,
                  "deterministic": s.deterministic, "seg_checkpoint": file_identity(s.seg_checkpoint),
                  "folder": file_identity(spec.source) if spec.kind == "folder" else None})
    run_dir = out / "runs" / f"{spec.label}-{sig}"
    result_path = run_dir / "result.json"
    if result_path.is_file() and all((run_dir / "pred" / f"{n}.png").is_file() for n in plan.names):
        if rank != 0:
            return cfg, run_dir, None
        row = ResultRow(spec.label, spec.describe(), _scores_from_json(json.loads(result_path.read_text("utf-8"))))
        log.info("%s %s: done before (%s), mIoU %.2f", step, spec.label, run_dir, 100 * row.scores.miou)
        return cfg, run_dir, row
    log.info("%s %s (%s)", step, spec.label, spec.describe())
    t0, c0 = time.perf_counter(), time.process_time()
    if cache is not None:
        if rank == 0:
            for ds in plan.splits:
                fuse_split(ds, ds["split"], cache, runtime={"device": str(device)}, progress=s.progress)
        if is_distributed():
            barrier()
    elif spec.kind == "folder":
        for ds in plan.splits:
            _check_folder(fused_dir, ds)
    t_fuse, c_fuse = time.perf_counter() - t0, time.process_time() - c0
    t0, c0 = time.perf_counter(), time.process_time()
    if plan.training:
        tcfg = prepare_training(cfg, run_dir / "train", seed=s.seed, max_iters=s.iters, batch_size=s.batch_size,
                                launcher=s.launcher, deterministic=s.deterministic, progress=s.progress,
                                quiet=s.quiet, name=spec.label)
        checkpoint = train_segmenter(tcfg)
    else:
        checkpoint = Path(s.seg_checkpoint)
    t_train, c_train = time.perf_counter() - t0, time.process_time() - c0
    if rank != 0:
        return cfg, run_dir, None
    model = build_segmenter(cfg, checkpoint, device)
    res = evaluate_segmenter(model, cfg.test_dataloader.dataset, batch_size=plan.eval_bs, keep=plan.names,
                             progress=s.progress, desc=f"test {spec.label}")
    del model
    for name, pred in res.predictions.items():
        write_image(run_dir / "pred" / f"{name}.png", pred)
    record = {
        "input": spec.label, "kind": spec.kind, "source": spec.source, "config": str(plan.cfg_path),
        "checkpoint": str(checkpoint), "data_root": str(plan.data_root), "seed": s.seed,
        "iters": (s.iters or int(cfg.train_cfg.max_iters)) if plan.training else None,
        "classes": list(res.scores.classes), "confusion": res.confusion.tolist(),
        "metrics": res.metrics, "scores": asdict(res.scores),
        "seconds": {"fuse": round(t_fuse, 2), "train": round(t_train, 2), "eval": round(res.seconds, 2)},
        "cpu_seconds": {"fuse": round(c_fuse, 2), "train": round(c_train, 2)},
    }
    atomic_write_text(result_path, json.dumps(record, indent=1, default=float) + "\n")
    log.info("%s %s: mIoU %.2f (present %.2f), mAcc %.2f; fuse %.0f s, train %.0f s, eval %.0f s",
             step, spec.label, 100 * res.scores.miou, 100 * res.scores.miou_present,
             100 * res.scores.macc, t_fuse, t_train, res.seconds)
    return cfg, run_dir, ResultRow(spec.label, spec.describe(), res.scores)


def _check_fusers(specs: Sequence[InputSpec]) -> None:
    """Unknown fuser names fail before any data is rendered or fused."""
    names = [FuserSpec.parse(spec.source).name for spec in specs if spec.kind == "fuser"]
    if not names:
        return
    known = list_fusers()
    for name in names:
        if name not in known:
            raise ConfigError(f"unknown fusion method {name!r} (known: {', '.join(known)}; or ir, vis, folder:PATH)")


def _check_folder(folder: Path, dataset_cfg: dict) -> None:
    """Fail early (one line) when a fused-image folder lacks images of a split."""
    ds_cfg = copy.deepcopy(dict(dataset_cfg))
    ds_cfg.update(modality="vis", fused_dir=None, fuser=None, pipeline=[])
    with DefaultScope.overwrite_default_scope("mmseg"):
        ds = DATASETS.build(ds_cfg)
    missing = [ds.get_data_info(i)["sample_name"] for i in range(len(ds))
               if find_fused_image(folder, ds_cfg["split"], ds.get_data_info(i)["sample_name"]) is None]
    if missing:
        raise DatasetError(f"{folder}: no fused image for {len(missing)} {ds_cfg['split']!r} samples "
                           f"(first: {missing[0]})")
