"""Dataset-level evaluation: pair sources with fused results, score them, and write tables and plots.

Used by ``pipelines/eval_fusion.py``. Outputs (all written atomically, never into an input folder):

* ``metrics_<profile>.csv``: one row per (method, image), columns ``method, image, profile, <metrics...>``;
  re-running with the same output folder skips the rows already present (resumable);
* ``summary_<profile>.md``: per-method mean ± std table that names its profile and conventions;
* ``bar_<profile>.png`` and ``box_<profile>.png``: per-metric bar charts (mean ± std) and box plots.
"""

from __future__ import annotations

import csv
import io
import math
import os
import re
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from fusion.data.pairs import list_images, pair_folders
from fusion.errors import ConfigError, DatasetError, InputError
from fusion.fusers.spec import FuserSpec
from fusion.metrics.evaluate import evaluate_batch
from fusion.metrics.registry import Profile, get_profile
from fusion.utils.io import IMAGE_EXTENSIONS, atomic_path, atomic_write_text, is_within, read_image, write_image
from fusion.utils.logging import get_logger

__all__ = [
    "FusedSource",
    "EvalConfig",
    "pair_sources",
    "discover_fused",
    "load_rows",
    "write_rows",
    "summarize",
    "markdown_table",
    "plot_summary",
    "run_evaluation",
]

log = get_logger(__name__)


def pair_sources(ir_dir: str | Path, vis_dir: str | Path) -> list[tuple[str, Path, Path]]:
    """Match infrared and visible images by file stem: ``[(stem, ir_path, vis_path)]`` sorted by stem.

    The project's pairing rule (:func:`fusion.data.pairs.pair_folders`) with unpaired files logged and skipped.

    Raises:
        DatasetError: missing/empty folders or no common stems.
    """
    pairs = pair_folders(vis_dir, ir_dir, task="vif", unpaired="skip")
    return [(p.name, p.b, p.a) for p in pairs]


@dataclass
class FusedSource:
    """Where the fused images of one method are: ``files`` maps an image stem to its file."""

    method: str
    files: dict[str, Path]
    folder: Path


def _pattern_regex(pattern: str, stems: Iterable[str]) -> re.Pattern[str]:
    """Regex for ``pattern``: ``{image}`` matches one of ``stems`` (longest first), ``{method}`` anything."""
    if "{image}" not in pattern or "{method}" not in pattern:
        raise ConfigError(f"--fused-pattern {pattern!r}: must contain {{image}} and {{method}}")
    alts = "|".join(re.escape(x) for x in sorted(stems, key=len, reverse=True))
    rx = ""
    for part in re.split(r"(\{image\}|\{method\})", pattern):
        if part == "{image}":
            rx += f"(?P<image>{alts})"
        elif part == "{method}":
            rx += r"(?P<method>.+)"
        else:
            rx += re.escape(part)
    return re.compile(rx, re.IGNORECASE)


def discover_fused(
    specs: Sequence[str], image_stems: Iterable[str], pattern: str | None = None
) -> list[FusedSource]:
    """Resolve ``--fused`` arguments into methods.

    Each spec is ``NAME=DIR`` (one method), or ``DIR``: with ``pattern`` (e.g. ``{image}_{method}.jpg``, VIFB's
    naming) the methods are parsed from the file names in ``DIR``; otherwise a folder with method subfolders gives
    one method per subfolder, and a folder of images is one method named after the folder.
    """
    stems = set(image_stems)
    out: dict[str, FusedSource] = {}

    def add(src: FusedSource) -> None:
        if src.method in out:
            raise ConfigError(f"method {src.method!r} given twice (in {out[src.method].folder} and {src.folder})")
        out[src.method] = src

    rx = _pattern_regex(pattern, stems) if pattern else None
    by_lower = {s.lower(): s for s in stems}
    for spec in specs:
        name, sep, path = spec.partition("=")
        if not sep:
            name, path = "", spec
        folder = Path(path)
        if not folder.is_dir():
            raise DatasetError(f"{folder}: fused folder does not exist")
        if rx is not None:
            found: dict[str, dict[str, Path]] = {}
            for p in sorted(folder.iterdir()):
                m = rx.fullmatch(p.name) if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS else None
                if m:
                    found.setdefault(m.group("method"), {})[by_lower[m.group("image").lower()]] = p
            if not found:
                raise DatasetError(f"{folder}: no file matches {pattern!r} for any source image")
            for meth, files in sorted(found.items()):
                add(FusedSource(meth if not name else f"{name}:{meth}", files, folder))
            continue
        subdirs = sorted(d for d in folder.iterdir() if d.is_dir() and not d.name.startswith("."))
        direct = list_images(folder)
        if name or not subdirs or direct:
            files = {s: p for s, p in direct.items() if s in stems}
            if not files:
                raise DatasetError(f"{folder}: no fused image matches a source image name")
            add(FusedSource(name or folder.name, files, folder))
        else:
            for d in subdirs:
                files = {s: p for s, p in list_images(d).items() if s in stems}
                if files:
                    add(FusedSource(d.name, files, d))
                else:
                    log.warning("%s: no fused image matches a source image name; skipped", d)
    return list(out.values())


def load_rows(path: str | Path) -> list[dict[str, str]]:
    """Rows of an existing per-image CSV (empty when the file does not exist)."""
    p = Path(path)
    if not p.is_file():
        return []
    with p.open(newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


def write_rows(path: str | Path, rows: Sequence[dict[str, object]], metrics: Sequence[str]) -> Path:
    """Write the per-image CSV atomically (``method, image, profile, <metrics>``; floats with 12 significant digits)."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["method", "image", "profile", *metrics])
    for r in rows:
        vals = []
        for m in metrics:
            v = r.get(m, "")
            vals.append(f"{float(v):.12g}" if v not in ("", None) else "")
        w.writerow([r["method"], r["image"], r["profile"], *vals])
    return atomic_write_text(path, buf.getvalue())


Summary = dict[str, dict[str, tuple[float, float, int]]]


def summarize(rows: Sequence[dict[str, object]], metrics: Sequence[str]) -> Summary:
    """Per method and metric: ``(mean, std, n)`` over images (population std; NaN values skipped)."""
    out: dict[str, dict[str, tuple[float, float, int]]] = {}
    methods = list(dict.fromkeys(str(r["method"]) for r in rows))
    for meth in methods:
        rs = [r for r in rows if r["method"] == meth]
        out[meth] = {}
        for m in metrics:
            xs = np.array([float(r[m]) for r in rs if r.get(m) not in ("", None)], dtype=np.float64)
            xs = xs[~np.isnan(xs)]
            out[meth][m] = (float(xs.mean()), float(xs.std()), int(xs.size)) if xs.size else (math.nan, math.nan, 0)
    return out


def _fmt(x: float) -> str:
    if math.isnan(x):
        return "nan"
    if math.isinf(x):
        return "inf" if x > 0 else "-inf"
    a = abs(x)
    return f"{x:.4f}" if a >= 0.1 or a == 0 else f"{x:.3g}"


def rank_methods(rows: Sequence[dict[str, object]], metrics: Sequence[str],
                 profile: Profile) -> tuple[list[dict[str, object]], list[str]]:
    """Rank the methods by their mean rank over ``metrics`` on the images **every** method was scored on.

    Per metric: each method's mean over the common images, ranked 1 (best, by the metric's direction) to N, ties
    sharing their average rank; a method's score is its mean rank over the metrics. Returns the ranked rows
    (``method``, ``mean_rank``, ``place``, and the per-metric ranks ``rank_<metric>``) best first, and the common
    images.
    """
    higher = {m.name: m.higher_is_better for m in profile.metrics.values()}
    methods = list(dict.fromkeys(str(r["method"]) for r in rows))
    per_method: dict[str, set[str]] = {m: {str(r["image"]) for r in rows if r["method"] == m} for m in methods}
    common = sorted(set.intersection(*per_method.values())) if methods else []
    if len(methods) < 2 or not common:
        raise ConfigError("ranking needs at least two methods scored on common images")
    means: dict[str, dict[str, float]] = {m: {} for m in methods}
    for met in metrics:
        for m in methods:
            vals = [float(r[met]) for r in rows if r["method"] == m and str(r["image"]) in common
                    and r.get(met, "") not in ("", None)]
            means[m][met] = float(np.nanmean(vals)) if vals else float("nan")
    ranks: dict[str, dict[str, float]] = {m: {} for m in methods}
    for met in metrics:
        sign = -1.0 if higher.get(met, True) else 1.0
        keyed = sorted(methods, key=lambda m: (math.isnan(means[m][met]), sign * means[m][met]))
        i = 0
        while i < len(keyed):
            j = i
            while j + 1 < len(keyed) and means[keyed[j + 1]][met] == means[keyed[i]][met]:
                j += 1
            for m in keyed[i : j + 1]:
                ranks[m][met] = (i + j) / 2 + 1
            i = j + 1
    out = [{"method": m, "mean_rank": float(np.mean([ranks[m][met] for met in metrics])),
            **{f"rank_{met}": ranks[m][met] for met in metrics}} for m in methods]
    out.sort(key=lambda r: r["mean_rank"])
    for place, r in enumerate(out, 1):
        r["place"] = place
    return out, common


def rank_table(ranked: list[dict[str, object]], metrics: Sequence[str], profile: Profile, common: list[str],
               highlight: Sequence[str] = ()) -> str:
    """Markdown of :func:`rank_methods`: place, method, mean rank and the rank per metric (highlighted methods bold)."""
    lines = [f"Ranking with profile **{profile.name}** over {len(metrics)} metrics on the {len(common)} images every "
             f"method was scored on; rank 1 is best per metric (ties share their average rank).", "",
             "| place | method | mean rank | " + " | ".join(metrics) + " |", "|---|---|---|" + "---|" * len(metrics)]
    for r in ranked:
        name = f"**{r['method']}**" if r["method"] in highlight else str(r["method"])
        cells = " | ".join(f"{r[f'rank_{m}']:g}" for m in metrics)
        lines.append(f"| {r['place']} | {name} | {r['mean_rank']:.2f} | {cells} |")
    return "\n".join(lines) + "\n"


def markdown_table(summary: Summary, metrics: Sequence[str], profile: Profile, title: str = "") -> str:
    """Markdown table ``method | metric (↑/↓) ...`` with ``mean ± std``; the best mean per column is bold.

    Means over different image sets do not compare: only the methods scored on the most images compete for bold,
    and a method scored on fewer is marked ``(incomplete)``.
    """
    higher = {m.name: m.higher_is_better for m in profile.metrics.values()}
    lines = [f"# {title or 'Fusion metrics'}", "", f"Profile: **{profile.name}**: {profile.description}", ""]
    lines += [f"- {c}" for c in profile.conventions]
    lines += ["", "Values are mean ± std over images (n = images scored); ↑ higher is better, ↓ lower is better.", ""]
    head = ["method", "n", *[f"{m} {'↑' if higher.get(m, True) else '↓'}" for m in metrics]]
    lines.append("| " + " | ".join(head) + " |")
    lines.append("|" + "|".join(["---"] * len(head)) + "|")
    best: dict[str, float] = {}
    full = {m: max((s[m][2] for s in summary.values()), default=0) for m in metrics}
    for m in metrics:
        vals = [s[m][0] for s in summary.values() if not math.isnan(s[m][0]) and s[m][2] == full[m]]
        if vals:
            best[m] = max(vals) if higher.get(m, True) else min(vals)
    for meth, s in summary.items():
        n = max((s[m][2] for m in metrics), default=0)
        incomplete = any(s[m][2] < full[m] for m in metrics)
        cells = [f"{meth} (incomplete)" if incomplete else meth, str(n)]
        for m in metrics:
            mean, std, count = s[m]
            cell = f"{_fmt(mean)} ± {_fmt(std)}"
            win = m in best and count == full[m] and mean == best[m] and len(summary) > 1
            cells.append(f"**{cell}**" if win else cell)
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def plot_summary(
    rows: Sequence[dict[str, object]], metrics: Sequence[str], out_dir: str | Path, profile: Profile
) -> list[Path]:
    """Bar charts (mean ± std) and box plots, one panel per metric; returns the written PNG paths."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out_dir = Path(out_dir)
    methods = list(dict.fromkeys(str(r["method"]) for r in rows))
    if not methods or not metrics:
        return []
    def values(meth: str, m: str) -> np.ndarray:
        return np.array([float(r[m]) for r in rows if r["method"] == meth and r.get(m) not in ("", None)])

    data = {m: [values(meth, m) for meth in methods] for m in metrics}
    ncol = min(4, len(metrics))
    nrow = math.ceil(len(metrics) / ncol)
    written = []
    for kind in ("bar", "box"):
        fig, axes = plt.subplots(nrow, ncol, figsize=(4.2 * ncol, 3.2 * nrow), squeeze=False)
        for ax, m in zip(axes.flat, metrics):
            series = [x[~np.isnan(x)] for x in data[m]]
            if kind == "bar":
                means = [x.mean() if x.size else np.nan for x in series]
                stds = [x.std() if x.size else 0.0 for x in series]
                ax.bar(range(len(methods)), means, yerr=stds, capsize=3, color="tab:blue", alpha=0.8)
            else:
                ax.boxplot([x if x.size else [np.nan] for x in series], showmeans=True)
            ticks = range(len(methods)) if kind == "bar" else range(1, len(methods) + 1)
            ax.set_xticks(list(ticks))
            ax.set_xticklabels(methods, rotation=45, ha="right", fontsize=7)
            arrow = "↑" if profile.metrics[profile.resolve(m)].higher_is_better else "↓"
            ax.set_title(f"{m} {arrow}", fontsize=9)
            ax.tick_params(axis="y", labelsize=7)
        for ax in list(axes.flat)[len(metrics) :]:
            ax.axis("off")
        fig.suptitle(f"profile: {profile.name}", fontsize=10)
        fig.tight_layout()
        target = out_dir / f"{kind}_{profile.name}.png"
        with atomic_path(target) as tmp:
            fig.savefig(tmp, dpi=110, format="png")
        plt.close(fig)
        written.append(target)
    return written


@dataclass
class EvalConfig:
    """What :func:`run_evaluation` scores and where it writes."""

    ir_dir: Path
    vis_dir: Path
    out_dir: Path
    profile: str = "tang"
    fused: list[str] = field(default_factory=list)
    fused_pattern: str | None = None
    methods: list[str] = field(default_factory=list)
    metrics: list[str] | None = None
    task: str = "vif"
    device: str = "cpu"
    fuser_settings: dict[str, Any] = field(default_factory=dict)
    save_fused: bool = False
    plots: bool = True
    flush_every: int = 20
    jobs: int = 0  # worker processes; 0: automatic (one for fused files; with on-the-fly fusers one per core from
    # 64 pairs on), 1: in this process
    rank: bool = False  # also write rank_<profile>.md/.csv: methods by mean rank over the metrics


@dataclass
class EvalResult:
    csv_path: Path
    table_path: Path
    plot_paths: list[Path]
    rows: list[dict[str, object]]
    scored: int
    skipped: int
    failed: list[str] = field(default_factory=list)


def _check_output_dir(cfg: EvalConfig, inputs: Iterable[Path]) -> None:
    for d in inputs:
        if is_within(cfg.out_dir, d):
            raise ConfigError(f"--out {cfg.out_dir} lies inside the input folder {d}; choose another output folder")


def run_evaluation(cfg: EvalConfig, progress: Callable[[Iterable, int, str], Iterable] | None = None) -> EvalResult:
    """Score every (method, image) pair and write the CSV, the Markdown table and the plots.

    Args:
        cfg: the evaluation settings.
        progress: optional wrapper for progress display, called as ``progress(iterable, total, description)``.
    """
    profile = get_profile(cfg.profile)
    metric_names = [d.name for d in profile.select(cfg.metrics)]
    pairs = pair_sources(cfg.ir_dir, cfg.vis_dir)
    sources, fuser_names = _select_methods(cfg, [p[0] for p in pairs])

    csv_path = cfg.out_dir / f"metrics_{profile.name}.csv"
    old = load_rows(csv_path)
    done = {(r["method"], r["image"]) for r in old if all(r.get(m, "") != "" for m in metric_names)}
    rows: list[dict[str, object]] = [r for r in old if (r["method"], r["image"]) in done]
    if old and len(rows) < len(old):
        log.info("%s: %d incomplete rows will be recomputed", csv_path, len(old) - len(rows))
    jobs = _jobs(pairs, sources, fuser_names, done)
    skipped = len(rows)
    log.info("%d (method, image) pairs to score, %d already in %s", len(jobs), skipped, csv_path)

    workers = _workers(cfg, len(jobs), fusing=any(job[4] is None for job in jobs))
    if workers > 1:
        results: Iterable = _score_parallel(cfg, metric_names, fuser_names, jobs, workers)
    else:
        # settings go to every on-the-fly fuser; device only to those that declare it
        fusers = {n: FuserSpec.parse(n, cfg.fuser_settings).build(device=cfg.device) for n in fuser_names}
        results = (_score_safe(cfg, profile, metric_names, fusers, job) for job in jobs)
    it: Iterable = results if progress is None else progress(results, len(jobs), f"scoring ({profile.name})")
    pending = 0
    failed: list[str] = []
    for (method, stem, *_), (vals, error) in zip(jobs, it):
        if error is not None:
            # One unreadable or mis-sized result must not cost the rest of a long run.
            log.warning("%s / %s skipped: %s", method, stem, error)
            failed.append(f"{method}/{stem}")
            continue
        rows.append({"method": method, "image": stem, "profile": profile.name, **vals})
        pending += 1
        if pending >= cfg.flush_every:
            write_rows(csv_path, rows, metric_names)
            pending = 0
    listed = [m for m in cfg.methods if m in {s.method for s in sources} or m in fuser_names]
    order = {m: i for i, m in enumerate(listed + [s.method for s in sources if s.method not in listed])}
    rows.sort(key=lambda r: (order.get(str(r["method"]), len(order)), str(r["image"])))
    write_rows(csv_path, rows, metric_names)
    summary = summarize(rows, metric_names)
    table = markdown_table(summary, metric_names, profile, title=f"Fusion metrics on {cfg.ir_dir.parent.name}")
    table_path = atomic_write_text(cfg.out_dir / f"summary_{profile.name}.md", table)
    if cfg.rank:
        ranked, common = rank_methods(rows, metric_names, profile)
        atomic_write_text(cfg.out_dir / f"rank_{profile.name}.md",
                          rank_table(ranked, metric_names, profile, common, highlight=fuser_names))
        buf = io.StringIO()
        writer = csv.DictWriter(buf, fieldnames=["place", "method", "mean_rank", *[f"rank_{m}" for m in metric_names]])
        writer.writeheader()
        writer.writerows(ranked)
        atomic_write_text(cfg.out_dir / f"rank_{profile.name}.csv", buf.getvalue())
    plots = plot_summary(rows, metric_names, cfg.out_dir, profile) if cfg.plots else []
    if failed:
        log.warning("%d pairs could not be scored (first: %s)", len(failed), failed[0])
    return EvalResult(csv_path, table_path, plots, rows, len(jobs) - len(failed), skipped, failed)


def _select_methods(cfg: EvalConfig, stems: list[str]) -> tuple[list[FusedSource], list[str]]:
    """The fused-folder methods and the fusers to run (``--fused``/``--methods``); checks the output place.

    Naming some fused methods in ``--methods`` selects them; naming only fusers adds them to every fused method.
    """
    from fusion.fusers import list_fusers

    sources = discover_fused(cfg.fused, stems, cfg.fused_pattern) if cfg.fused else []
    fused_roots = [Path(str(f).split("=", 1)[1] if "=" in str(f) else str(f)) for f in cfg.fused]
    _check_output_dir(cfg, [cfg.ir_dir, cfg.vis_dir, *fused_roots, *[s.folder for s in sources]])
    fuser_names: list[str] = []
    if cfg.methods:
        known = {s.method for s in sources}
        wanted_fused = [m for m in cfg.methods if m in known]
        fuser_names = [m for m in cfg.methods if m not in known]
        available = set(list_fusers())
        bad = [m for m in fuser_names if FuserSpec.parse(m).name not in available]
        if bad:
            raise ConfigError(
                f"--methods: {', '.join(bad)} is neither a fused folder method nor a fuser "
                f"(fused: {', '.join(sorted(known)) or 'none'}; fusers: {', '.join(sorted(available))})"
            )
        if wanted_fused:
            sources = [s for s in sources if s.method in wanted_fused]
    if not sources and not fuser_names:
        raise ConfigError("nothing to evaluate: give --fused folders and/or --methods fusers")
    return sources, fuser_names


def _jobs(pairs: list[tuple[str, Path, Path]], sources: list[FusedSource], fuser_names: list[str],
          done: set[tuple[Any, Any]]) -> list[tuple[str, str, Path, Path, Path | None]]:
    """``(method, stem, ir, vis, fused file or None for a fuser)`` of every pair not scored yet."""
    jobs: list[tuple[str, str, Path, Path, Path | None]] = []
    for s in sources:
        for stem, irp, visp in pairs:
            if stem in s.files and (s.method, stem) not in done:
                jobs.append((s.method, stem, irp, visp, s.files[stem]))
        missing = len([1 for st, _, _ in pairs if st not in s.files])
        if missing:
            log.warning("%s: %d source images have no fused result and are skipped", s.method, missing)
    for name in fuser_names:
        for stem, irp, visp in pairs:
            if (name, stem) not in done:
                jobs.append((name, stem, irp, visp, None))
    return jobs


Job = tuple[str, str, Path, Path, Path | None]


def _workers(cfg: EvalConfig, n_jobs: int, fusing: bool = False) -> int:
    """Worker processes for ``n_jobs`` pairs: ``cfg.jobs``, or with 0: one process when only fused files are scored
    (the metrics of a pair already run side by side on the metric threads: 140 VIFB pairs, ``vifb``, 14.4 s in one
    process with two threads against 15.6 s in two workers; ``cddfuse`` 5.8 against 7.5 s), and when fusers run on
    the fly one per core from 64 pairs on (a spawned worker costs 1-2 s to start, more than a small folder saves);
    1 on a GPU (one device)."""
    if cfg.jobs == 1 or str(cfg.device).startswith("cuda") or n_jobs < 2:
        return 1
    if cfg.jobs > 1:
        return min(cfg.jobs, n_jobs)
    if not fusing:
        return 1
    return max(1, min(os.cpu_count() or 1, n_jobs // 32))


def _score_safe(cfg: EvalConfig, profile: Profile, metric_names: list[str], fusers: dict[str, Any],
                job: Job) -> tuple[dict[str, float] | None, str | None]:
    method, stem, irp, visp, fpath = job
    try:
        return _score_one(cfg, profile, metric_names, fusers.get(method), method, stem, irp, visp, fpath), None
    except InputError as exc:
        return None, str(exc)


_WORKER: dict[str, Any] = {}


def _init_worker(cfg: EvalConfig, metric_names: list[str], fuser_names: list[str]) -> None:
    import cv2
    import torch

    torch.set_num_threads(1)  # the processes share the cores; one thread each avoids oversubscription
    cv2.setNumThreads(1)
    _WORKER.update(cfg=cfg, profile=get_profile(cfg.profile), metrics=metric_names,
                   fusers={n: FuserSpec.parse(n, cfg.fuser_settings).build(device=cfg.device) for n in fuser_names})


def _score_in_worker(job: Job) -> tuple[dict[str, float] | None, str | None]:
    w = _WORKER
    return _score_safe(w["cfg"], w["profile"], w["metrics"], w["fusers"], job)


def _score_parallel(cfg: EvalConfig, metric_names: list[str], fuser_names: list[str], jobs: list[Job],
                    workers: int) -> Iterator[tuple[dict[str, float] | None, str | None]]:
    """Score the pairs in ``workers`` processes (spawned: no forked torch thread pools), results in job order."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    log.info("scoring in %d worker processes", workers)
    ctx = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=workers, mp_context=ctx, initializer=_init_worker,
                             initargs=(cfg, metric_names, fuser_names)) as pool:
        yield from pool.map(_score_in_worker, jobs, chunksize=max(1, min(8, len(jobs) // (4 * workers))))


def _score_one(cfg: EvalConfig, profile: Profile, metric_names: list[str], fuser: Any, method: str, stem: str,
               irp: Path, visp: Path, fpath: Path | None) -> dict[str, float]:
    """The metrics of one (method, image): a fused file is read, a fuser fuses (and saves with ``save_fused``)."""
    ir = read_image(irp, "unchanged")
    vis = read_image(visp, "unchanged")
    if fpath is None:
        fused = fuser.fuse(read_image(visp, "rgb"), read_image(irp, "rgb"), cfg.task)
        if cfg.save_fused:
            write_image(cfg.out_dir / "fused" / method.replace(":", "_") / f"{stem}.png", fused)
    else:
        fused = read_image(fpath, "unchanged")
    return evaluate_batch([fused], [ir], [vis], profile=profile, metrics=metric_names, device=cfg.device)[0]
