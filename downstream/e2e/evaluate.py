"""Scoring a fuser + segmenter pair, and the comparison the end-to-end finetuning has to win.

:func:`evaluate_pair` fuses every test pair with the fuser in eval mode (any size, :func:`fusion.models.fuse_tensors`),
rounds the result to ``uint8`` (what a deployed fuser hands a segmenter), segments it, and reports the field's
segmentation scores (``downstream.segmentation.confusion``: mIoU over all classes, …) together with fusion metrics
of the same fused images (:func:`fusion.metrics.evaluate_batch`, profile ``tang`` by default).

:func:`run_comparison` trains, from one configuration, in one process:

1. a shared frozen-fusion warm-up of the segmenter (``train.seg_warmup_iters``), checkpointed;
2. **frozen**: from that checkpoint, the segmenter alone on the frozen fuser's outputs to ``train.iters``;
3. **e2e**: from the same checkpoint, the configured schedule (``joint`` by default) to ``train.iters``;

so both arms see the same iterations, learning rates, batches, crops and seeds; then it scores both on the test
split and checks that the finetuned fuser's fusion metrics stay within ``eval.band`` (relative change against the
frozen fuser's) of the frozen ones.
"""

from __future__ import annotations

import copy
import json
import math
import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from downstream.e2e.bridge import segmentation_logits
from downstream.e2e.data import SegTriple, load_triple, to_tensor01
from fusion.utils.io import atomic_write_text
from fusion.utils.logging import get_logger

__all__ = ["evaluate_pair", "band_limits", "fusion_band", "run_comparison", "prepare_synthetic_mfnet",
           "prepare_synthetic_data", "comparison_markdown", "comparison_grid", "seed_rows", "seeds_markdown",
           "run_seeds"]

log = get_logger(__name__)


def prepare_synthetic_mfnet(root: str | os.PathLike, *, n: int = 100, height: int = 112, width: int = 112,
                            seed: int = 0, thermal_crossover: float = 0.0) -> Path:
    """Write (once) synthetic MFNet-layout scenes into ``root`` (:func:`fusion.data.synthetic.write_synthetic_once`);
    a finished folder with the same settings is reused."""
    from fusion.data.synthetic import write_synthetic_once

    return write_synthetic_once(root, "mfnet", owner="finetune_e2e", stamp_name=".e2e_synthetic.json", n=n,
                                height=height, width=width, seed=seed, thermal_crossover=float(thermal_crossover))


def run_environment() -> dict[str, Any]:
    """What decides a run's floating-point path besides its config: library versions, the CPU kernels torch
    dispatches to, threads, the synthetic-scene generator (written into ``results.json``; two runs agree bit for bit
    only when these agree)."""
    import importlib.metadata as md
    import platform

    from fusion.data.synthetic import GENERATOR_VERSION

    versions = {}
    for pkg in ("torch", "numpy", "mmengine", "mmsegmentation", "ultralytics", "opencv-python"):
        try:
            versions[pkg] = md.version(pkg)
        except md.PackageNotFoundError:
            versions[pkg] = "absent"
    return {
        "versions": versions,
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "mkldnn": torch.backends.mkldnn.is_available(),
        "torch_threads": torch.get_num_threads(),
        "machine": platform.machine(),
        "processor": platform.processor() or platform.machine(),
        "synthetic_generator": GENERATOR_VERSION,
    }


def prepare_synthetic_data(cfg: dict[str, Any], out_dir: str | os.PathLike) -> Path:
    """Write (once) the synthetic scenes a config without ``data.root`` trains on: MFNet layout for segmentation,
    LLVIP layout (60 % train / 40 % test, ``<out>/data/llvip_synthetic``) for detection."""
    syn = cfg["data"]["synthetic"]
    if cfg["downstream"] != "detection":
        return prepare_synthetic_mfnet(Path(out_dir) / "data" / "mfnet_synthetic", **syn)
    from fusion.data.synthetic import write_synthetic_once

    n_train = round(0.6 * int(syn["n"]))
    return write_synthetic_once(Path(out_dir) / "data" / "llvip_synthetic", "llvip", owner="finetune_e2e",
                                stamp_name=".e2e_synthetic.json", n_train=n_train, n_test=int(syn["n"]) - n_train,
                                seed=int(syn["seed"]), height=int(syn["height"]), width=int(syn["width"]),
                                thermal_crossover=float(syn["thermal_crossover"]))


@torch.no_grad()
def evaluate_pair(fuser: nn.Module, segmenter: nn.Module, triples: Sequence[SegTriple], classes: Sequence[str], *,
                  task: str = "vif", batch_size: int = 4, device: str | torch.device = "cpu",
                  profile: str = "tang", metrics: Sequence[str] | None = ("EN", "SD", "Qabf"),
                  progress: bool = False, keep: int = 0) -> dict[str, Any]:
    """Test scores of a fuser (:class:`~fusion.models.TCMoA`) followed by a segmenter.

    Args:
        fuser, segmenter: the two networks (switched to eval mode for the call, restored after).
        triples: test samples (:func:`downstream.e2e.data.list_triples`).
        classes: class names of the dataset (its confusion matrix has this many rows).
        task: fusion task of the pairs (a = visible, b = infrared).
        batch_size: pairs of equal size per forward pass.
        profile, metrics: fusion-metric profile and names (``None``: no fusion metrics).
        keep: return the first ``keep`` fused images and predictions (for pictures).

    Returns:
        ``{"seg": {"mIoU", "mIoU_present", "mAcc", "aAcc", "IoU": {class: value}}, "fusion": {metric: mean},
        "n": number of pairs, "seconds": float, "samples": [(name, fused uint8, prediction uint8), ...]}``.
    """
    from downstream.segmentation.confusion import confusion_matrix, segmentation_scores
    from fusion.models import fuse_tensors

    dev = torch.device(device)
    modes = (fuser.training, segmenter.training)
    fuser.eval()
    segmenter.eval()
    t0 = time.perf_counter()
    conf = np.zeros((len(classes), len(classes)), dtype=np.int64)
    fused_all: list[np.ndarray] = []
    ir_all: list[np.ndarray] = []
    vis_all: list[np.ndarray] = []
    samples: list[tuple[str, np.ndarray, np.ndarray]] = []
    loaded = [(t["name"], *load_triple(t)) for t in triples]
    groups: dict[tuple[int, int], list[int]] = {}
    for i, item in enumerate(loaded):
        groups.setdefault(item[1].shape[:2], []).append(i)
    order = [i for idx in groups.values() for i in idx]
    chunks = [order[s : s + batch_size] for s in range(0, len(order), batch_size)]
    if progress:
        from tqdm import tqdm

        chunks = tqdm(chunks, desc="e2e test", unit="batch", leave=False)
    try:
        for chunk in chunks:
            chunk = [i for i in chunk if loaded[i][1].shape[:2] == loaded[chunk[0]][1].shape[:2]]
            a = torch.stack([to_tensor01(loaded[i][1]) for i in chunk]).to(dev)
            b = torch.stack([to_tensor01(loaded[i][2]) for i in chunk]).to(dev)
            fused = fuse_tensors(fuser, a, b, task)
            fused_u8 = (fused * 255.0).round().clamp_(0, 255)
            logits = segmentation_logits(segmenter, fused_u8 / 255.0)
            pred = logits.argmax(1).cpu().numpy().astype(np.int64)
            fused_np = fused_u8.byte().permute(0, 2, 3, 1).cpu().numpy()
            for j, i in enumerate(chunk):
                name, vis, ir, label = loaded[i]
                conf += confusion_matrix(pred[j], label, len(classes))
                fused_all.append(fused_np[j])
                vis_all.append(vis)
                ir_all.append(ir[:, :, 0])
                if len(samples) < keep:
                    samples.append((name, fused_np[j], pred[j].astype(np.uint8)))
    finally:
        fuser.train(modes[0])
        segmenter.train(modes[1])
    scores = segmentation_scores(conf, tuple(classes))
    out: dict[str, Any] = {
        "seg": {"mIoU": scores.miou, "mIoU_present": scores.miou_present, "mAcc": scores.macc, "aAcc": scores.aacc,
                "IoU": dict(scores.iou)},
        "fusion": {},
        "n": len(loaded),
    }
    if metrics:
        from fusion.metrics import evaluate_batch

        rows = evaluate_batch(fused_all, ir_all, vis_all, profile=profile, metrics=list(metrics))
        out["fusion"] = {m: float(np.nanmean([r[m] for r in rows])) for m in rows[0]}
    out["seconds"] = time.perf_counter() - t0
    out["samples"] = samples
    return out


def band_limits(tol: float | Sequence[float | None]) -> tuple[float, float]:
    """``(low, high)`` relative-change limits of one band entry: ``t`` means ``(-t, t)``; ``[low, high]`` is taken
    as given, ``None`` meaning no limit on that side (e.g. ``[-0.1, None]``: at most 10 % lower, any rise)."""
    if isinstance(tol, (int, float)) and not isinstance(tol, bool):
        return -float(tol), float(tol)
    low, high = tol
    return (-math.inf if low is None else float(low)), (math.inf if high is None else float(high))


def fusion_band(finetuned: dict[str, float], reference: dict[str, float],
                band: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Relative change of each banded fusion metric and whether it lies within its band.

    ``change = (finetuned - reference) / |reference|``; a metric is ``ok`` when ``low <= change <= high`` with
    ``(low, high) = band_limits(band[metric])``.
    """
    out = {}
    for name, tol in band.items():
        if name not in finetuned or name not in reference:
            continue
        ref, val = reference[name], finetuned[name]
        change = (val - ref) / abs(ref) if ref else (math.inf if val else 0.0)
        low, high = band_limits(tol)
        out[name] = {"reference": ref, "finetuned": val, "change": change,
                     "band": [None if math.isinf(low) else low, None if math.isinf(high) else high],  # JSON-safe
                     "ok": bool(low <= change <= high)}
    return out


def _band_text(low: float | None, high: float | None) -> str:
    if low is not None and high is not None and low == -high:
        return f"±{100 * high:.0f}%"
    lo = "no lower limit" if low is None else f"{100 * low:+.0f}%"
    hi = "no upper limit" if high is None else f"{100 * high:+.0f}%"
    return f"{lo} … {hi}"


def _det_markdown(result: dict[str, Any]) -> list[str]:
    metrics = list(result["arms"]["frozen"]["fusion"])
    head = "| pipeline | test mAP50 | mAP50-95 | recall@1FPPI | MR⁻² | " + " | ".join(metrics) + " | train s |"
    lines = [head, "|" + "---|" * (6 + len(metrics))]
    for arm, label in (("frozen", "frozen fusion + detector"), ("e2e", f"e2e ({result['mode']}) fusion + detector")):
        r = result["arms"][arm]
        d = r["det"]
        vals = " | ".join(f"{r['fusion'][m]:.3f}" for m in metrics)
        lines.append(f"| {label} | {100 * d['mAP50']:.2f} | {100 * d['mAP50-95']:.2f} | "
                     f"{100 * d['recall_1fppi']:.2f} | {100 * d['miss_rate']:.2f} | {vals} | "
                     f"{r['train_seconds']:.0f} |")
    return lines


def comparison_markdown(result: dict[str, Any]) -> str:
    """A Markdown table of :func:`run_comparison`'s result (segmentation or detection)."""
    metrics = list(result["arms"]["frozen"]["fusion"])
    if "det" in result["arms"]["frozen"]:
        lines = _det_markdown(result)
        lines.append("")
        changes = ", ".join(f"{m} {100 * v['change']:+.1f}% ({_band_text(*v['band'])}{'' if v['ok'] else ', OUT'})"
                            for m, v in result["band"].items())
        lines.append(f"Fusion metrics of the finetuned fuser vs the frozen one (relative change, allowed band): "
                     f"{changes}")
        lines.append(f"mAP50 gain: {100 * result['map50_gain']:+.2f} points, mAP50-95 "
                     f"{100 * result['map50_95_gain']:+.2f}, MR⁻² {100 * result['miss_rate_change']:+.2f} (lower is "
                     f"better); fusion metrics within band: {'yes' if result['band_ok'] else 'no'}")
        return "\n".join(lines) + "\n"
    head = "| pipeline | test mIoU | mIoU (present) | mAcc | " + " | ".join(metrics) + " | train s |"
    lines = [head, "|" + "---|" * (5 + len(metrics))]
    for arm, label in (("frozen", "frozen fusion + segmenter"), ("e2e", f"e2e ({result['mode']}) fusion + "
                                                                         "segmenter")):
        r = result["arms"][arm]
        vals = " | ".join(f"{r['fusion'][m]:.3f}" for m in metrics)
        lines.append(f"| {label} | {100 * r['seg']['mIoU']:.2f} | {100 * r['seg']['mIoU_present']:.2f} | "
                     f"{100 * r['seg']['mAcc']:.2f} | {vals} | {r['train_seconds']:.0f} |")
    band = result["band"]
    lines.append("")
    changes = ", ".join(f"{m} {100 * v['change']:+.1f}% ({_band_text(*v['band'])}{'' if v['ok'] else ', OUT'})"
                        for m, v in band.items())
    lines.append(f"Fusion metrics of the finetuned fuser vs the frozen one (relative change, allowed band): {changes}")
    lines.append(f"mIoU gain: {100 * result['miou_gain']:+.2f} points; fusion metrics within band: "
                 f"{'yes' if result['band_ok'] else 'no'}")
    return "\n".join(lines) + "\n"


def run_comparison(cfg: dict[str, Any], out_dir: str | os.PathLike, *, progress: bool = True) -> dict[str, Any]:
    """Train the frozen-fusion reference and the end-to-end pipeline with one schedule and compare them.

    Args:
        cfg: an end-to-end configuration (``schedule.mode`` is the e2e arm's schedule; it must not be ``frozen``).
        out_dir: run folder: ``warmup/``, ``frozen/``, ``e2e/`` (each a trainer output folder with its
            ``e2e_final.safetensors``), ``results.json``, ``results.md`` and ``qualitative.png`` (both arms on the
            first test images).

    Returns:
        ``{"mode", "arms": {"frozen": scores, "e2e": scores}, "band": ...,
        "band_ok": bool, "miou_gain": float, "fusion_init": str, "config": cfg}``; the frozen arm's fusion
        metrics are those of the initial fuser.
    """
    from downstream.e2e.config import validate_config
    from downstream.e2e.data import list_triples
    from downstream.e2e.trainer import E2ETrainer
    from fusion.errors import ConfigError

    validate_config(cfg)
    mode = cfg["schedule"]["mode"]
    if mode == "frozen":
        raise ConfigError("schedule.mode='frozen' is the reference arm; set joint or alternating for the comparison")
    out = Path(out_dir)
    warm = int(cfg["train"]["seg_warmup_iters"])
    result: dict[str, Any] = {"mode": mode, "arms": {}, "config": copy.deepcopy(cfg)}

    start = None
    triples = None
    samples: dict[str, list[tuple[str, Any, Any]]] = {}
    if warm > 0:
        wcfg = copy.deepcopy(cfg)
        wcfg["output_dir"] = str(out / "warmup")
        trainer = E2ETrainer(wcfg, resume="auto")
        try:
            t0 = time.perf_counter()
            trainer.fit(stop_at=warm)
            result["warmup_seconds"] = time.perf_counter() - t0
            start = trainer.last_checkpoint
        finally:
            trainer.close()
    for arm, arm_mode in (("frozen", "frozen"), ("e2e", mode)):
        acfg = copy.deepcopy(cfg)
        acfg["schedule"]["mode"] = arm_mode
        acfg["output_dir"] = str(out / arm)
        folder = Path(acfg["output_dir"]) / "checkpoints"
        resume = "auto" if folder.is_dir() and any(folder.glob("iter_*.pth")) else start
        trainer = E2ETrainer(acfg, resume=resume)
        detection = trainer.downstream == "detection"
        try:
            if triples is None:
                test = trainer.test_samples if detection else list_triples(trainer.test_dataset_cfg)
                triples = test[: cfg["data"]["max_test"] or None]
            t0 = time.perf_counter()
            trainer.fit()
            seconds = time.perf_counter() - t0
            common = dict(task=cfg["model"]["task"], batch_size=cfg["data"]["eval_batch_size"], device=trainer.device,
                          profile=cfg["eval"]["profile"], metrics=cfg["eval"]["metrics"], progress=progress, keep=4)
            if detection:
                from downstream.e2e.evaluate_det import evaluate_det_pair

                scores = evaluate_det_pair(trainer.fuser, trainer.task_net, triples, trainer.classes,
                                           conf=cfg["detector"]["conf"], iou=cfg["detector"]["iou"], **common)
            else:
                scores = evaluate_pair(trainer.fuser, trainer.segmenter, triples, trainer.classes, **common)
            scores["train_seconds"] = seconds + result.get("warmup_seconds", 0.0)
            scores["iterations"] = trainer.iteration
            result["fusion_init"] = trainer.fusion_init
            result["classes"] = list(trainer.classes)
        finally:
            trainer.close()
        samples[arm] = scores.pop("samples", [])
        result["arms"][arm] = scores
        primary = ("mAP50", scores["det"]["mAP50"]) if detection else ("mIoU", scores["seg"]["mIoU"])
        log.info("%s: test %s %.4f, fusion %s", arm, *primary, {k: round(v, 4) for k, v in scores["fusion"].items()})
    frozen, e2e = result["arms"]["frozen"], result["arms"]["e2e"]
    if "det" in frozen:
        result["map50_gain"] = e2e["det"]["mAP50"] - frozen["det"]["mAP50"]
        result["map50_95_gain"] = e2e["det"]["mAP50-95"] - frozen["det"]["mAP50-95"]
        result["miss_rate_change"] = e2e["det"]["miss_rate"] - frozen["det"]["miss_rate"]
    else:
        result["miou_gain"] = e2e["seg"]["mIoU"] - frozen["seg"]["mIoU"]
    result["band"] = fusion_band(e2e["fusion"], frozen["fusion"], cfg["eval"]["band"])
    result["band_ok"] = all(v["ok"] for v in result["band"].values())
    result["environment"] = run_environment()
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / "results.json", json.dumps(result, indent=2, default=str) + "\n")
    atomic_write_text(out / "results.md", comparison_markdown(result))
    if samples.get("frozen") and samples.get("e2e"):
        if "det" in frozen:
            _det_comparison_grid(samples, triples or [], out / "qualitative.png")
        else:
            comparison_grid(samples, triples or [], result["classes"], out / "qualitative.png")
    return result


def _det_comparison_grid(samples: dict[str, list[tuple[str, Any, Any]]], test: Sequence[Any],
                         path: str | os.PathLike) -> Path:
    """Both arms' fused images with their boxes (score >= 0.25) beside the ground truth, same test images."""
    from downstream.detection.report import plot_qualitative

    by_name = {s.ident: s for s in test}
    names = [name for name, _, _ in samples["frozen"]]
    gts = [by_name[n].labels for n in names]
    return plot_qualitative({f"{arm} fusion": [f for _, f, _ in samples[arm]] for arm in ("frozen", "e2e")}, gts,
                            {f"{arm} fusion": [d for _, _, d in samples[arm]] for arm in ("frozen", "e2e")}, path,
                            row_names=names)


def comparison_grid(samples: dict[str, list[tuple[str, np.ndarray, np.ndarray]]], triples: Sequence[SegTriple],
                    classes: Sequence[str], path: str | os.PathLike) -> Path:
    """Picture of both arms on the same test images: rows ``frozen`` / ``e2e`` per sample, columns visible |
    infrared | fused | prediction | ground truth (:func:`downstream.segmentation.report.qualitative_grid`)."""
    from downstream.segmentation.classes import FMB_PALETTE, MFNET_PALETTE
    from downstream.segmentation.report import colorize, qualitative_grid

    palette = {len(MFNET_PALETTE): MFNET_PALETTE, len(FMB_PALETTE): FMB_PALETTE}.get(len(classes))
    if palette is None:  # another dataset: distinct, repeatable colours
        palette = np.random.default_rng(0).integers(0, 256, (len(classes), 3)).tolist()
    by_name = {t["name"]: t for t in triples}
    rows = []
    for (name, fused_f, pred_f), (_, fused_e, pred_e) in zip(samples["frozen"], samples["e2e"]):
        vis, ir, label = load_triple(by_name[name])
        gt = colorize(label, palette)
        rows.append((name, "frozen fusion", [vis, ir, fused_f, colorize(pred_f, palette), gt]))
        rows.append((name, "e2e fusion", [vis, ir, fused_e, colorize(pred_e, palette), gt]))
    return qualitative_grid(rows, path, headers=("visible", "infrared", "fused", "prediction", "ground truth"))


def seed_rows(results: dict[int, dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per seed of :func:`run_comparison` results (segmentation: mIoU, mAcc; detection: mAP50, mAP50-95,
    MR⁻²; both: the banded fusion metrics' relative change), values in percent points, plus a ``mean`` row."""
    rows = []
    for seed, r in sorted(results.items()):
        fz, ee = r["arms"]["frozen"], r["arms"]["e2e"]
        if "det" in fz:
            keys = (("mAP50", "det", "mAP50"), ("mAP50-95", "det", "mAP50-95"), ("MR-2", "det", "miss_rate"))
        else:
            keys = (("mIoU", "seg", "mIoU"), ("mAcc", "seg", "mAcc"))
        row: dict[str, Any] = {"seed": seed}
        for name, part, key in keys:
            row[f"{name} frozen"] = 100 * fz[part][key]
            row[f"{name} e2e"] = 100 * ee[part][key]
            row[f"{name} gain"] = 100 * (ee[part][key] - fz[part][key])
        for m, v in r["band"].items():
            row[f"{m} change %"] = 100 * v["change"]
        row["band ok"] = bool(r["band_ok"])
        rows.append(row)
    if rows:
        mean = {"seed": "mean"}
        for k in rows[0]:
            if k not in ("seed", "band ok"):
                mean[k] = float(np.mean([row[k] for row in rows]))
        mean["band ok"] = all(row["band ok"] for row in rows)
        rows.append(mean)
    return rows


def seeds_markdown(results: dict[int, dict[str, Any]], *, command: str = "") -> str:
    """The multi-seed table of :func:`run_seeds` (what the README shows): per seed the frozen → e2e scores and the
    gain, the banded fusion metrics' change, and the mean over seeds."""
    rows = seed_rows(results)
    if not rows:
        return ""
    first = results[min(results)]
    det = "det" in first["arms"]["frozen"]
    scores = ("mAP50", "mAP50-95", "MR-2") if det else ("mIoU", "mAcc")
    bands = [k[: -len(" change %")] for k in rows[0] if k.endswith(" change %")]
    head = ["seed"] + [f"{m} frozen → e2e" for m in scores] + [f"{m} gain" for m in scores]
    head += [f"{b} change" for b in bands] + ["fusion within band"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for row in rows:
        cells = [str(row["seed"])]
        cells += [f"{row[f'{m} frozen']:.2f} → {row[f'{m} e2e']:.2f}" for m in scores]
        cells += [f"**{row[f'{m} gain']:+.2f}**" if row["seed"] == "mean" else f"{row[f'{m} gain']:+.2f}"
                  for m in scores]
        cells += [f"{row[f'{b} change %']:+.1f} %" for b in bands]
        cells.append("yes" if row["band ok"] else "no")
        lines.append("| " + " | ".join(cells) + " |")
    note = (" MR⁻² is a miss rate: a negative gain is better." if det else "")
    text = "\n".join(lines) + "\n"
    env = first.get("environment")
    if env:
        v = env["versions"]
        text += (f"\ntorch {v['torch']} ({env['cpu_capability']} kernels, {env['torch_threads']} thread(s)), "
                 f"mmsegmentation {v['mmsegmentation']}, ultralytics {v['ultralytics']}, synthetic scenes "
                 f"v{env['synthetic_generator']}: a rerun in this environment gives these numbers bit for bit.\n")
    if command:
        text = f"`{command}` ({len(results)} seeds; percent points).{note}\n\n" + text
    return text


def run_seeds(cfg: dict[str, Any], out_dir: str | os.PathLike, seeds: Sequence[int], *, progress: bool = True,
              command: str = "") -> dict[int, dict[str, Any]]:
    """:func:`run_comparison` once per training seed (``train.seed``; same data) in ``<out>/seed_<s>/``, then
    ``seeds.md`` / ``seeds.csv`` / ``seeds.json`` in ``out_dir``. A finished seed folder is reused (each arm resumes
    from its own checkpoints), so an interrupted sweep continues where it stopped."""
    import csv
    import io

    from fusion.errors import ConfigError

    if not seeds or len(set(seeds)) != len(seeds):
        raise ConfigError(f"seeds {list(seeds)}: expected distinct seeds")
    out = Path(out_dir)
    results: dict[int, dict[str, Any]] = {}
    for seed in seeds:
        scfg = copy.deepcopy(cfg)
        scfg["train"]["seed"] = int(seed)
        results[int(seed)] = run_comparison(scfg, out / f"seed_{seed}", progress=progress)
    rows = seed_rows(results)
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(rows[0]), lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: (f"{v:.4f}" if isinstance(v, float) else v) for k, v in row.items()})
    atomic_write_text(out / "seeds.csv", buf.getvalue())
    atomic_write_text(out / "seeds.md", seeds_markdown(results, command=command))
    slim = {s: {k: v for k, v in r.items() if k != "config"} for s, r in results.items()}
    atomic_write_text(out / "seeds.json", json.dumps(slim, indent=2, default=str) + "\n")
    return results
