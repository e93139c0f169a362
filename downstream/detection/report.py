"""The comparison outputs: ``results.csv``/``results.md``, PR and miss-rate curves, and a qualitative box grid."""

from __future__ import annotations

import csv
import io
import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import cv2
import numpy as np

from downstream.detection.labels import ImageLabels
from downstream.detection.metrics import Detections, DetMetrics
from fusion.utils.io import atomic_path, atomic_write_text

__all__ = ["RESULT_COLUMNS", "write_results", "plot_curves", "plot_qualitative"]

RESULT_COLUMNS = ("input", "mAP50", "mAP50-95", "precision", "recall", "recall_1fppi", "miss_rate")


def _fmt(v: object, digits: int = 4) -> str:
    if isinstance(v, float):
        return "nan" if math.isnan(v) else f"{v:.{digits}f}"
    return str(v)


def write_results(
    rows: Sequence[Mapping[str, object]], out_dir: str | os.PathLike, *, title: str = "", notes: Sequence[str] = ()
) -> tuple[Path, Path]:
    """Write ``results.csv`` (columns :data:`RESULT_COLUMNS`) and ``results.md``; returns both paths."""
    out = Path(out_dir)
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(RESULT_COLUMNS)
    for r in rows:
        w.writerow([_fmt(r[c], 6) for c in RESULT_COLUMNS])
    csv_path = atomic_write_text(out / "results.csv", buf.getvalue())
    best = {}
    for c in RESULT_COLUMNS[1:]:
        vals = [r[c] for r in rows if isinstance(r[c], float) and not math.isnan(r[c])]
        if vals and len(set(vals)) > 1:  # a tie across every row marks nothing
            best[c] = min(vals) if c == "miss_rate" else max(vals)
    lines = [f"# {title}" if title else "# Detection comparison", ""]
    heads = {"miss_rate": "MR^-2 (lower is better)", "recall_1fppi": "recall@1FPPI"}
    lines.append("| " + " | ".join(heads.get(c, c) for c in RESULT_COLUMNS) + " |")
    lines.append("|" + "---|" * len(RESULT_COLUMNS))
    for r in rows:
        cells = [str(r["input"])]
        for c in RESULT_COLUMNS[1:]:
            s = _fmt(r[c])
            cells.append(f"**{s}**" if c in best and r[c] == best[c] else s)
        lines.append("| " + " | ".join(cells) + " |")
    if notes:
        lines += [""] + [f"- {n}" for n in notes]
    md_path = atomic_write_text(out / "results.md", "\n".join(lines) + "\n")
    return csv_path, md_path


def _figure(w: float, h: float):
    from matplotlib.figure import Figure

    # A bare Figure (no pyplot) never touches a GUI backend or global state.
    return Figure(figsize=(w, h), dpi=100)


def plot_curves(metrics: Mapping[str, DetMetrics], path: str | os.PathLike) -> Path:
    """Precision-recall (IoU 0.5, class mean) and miss rate vs. FPPI, one line per input, into one PNG."""
    fig = _figure(11, 4.5)
    ax_pr, ax_mr = fig.subplots(1, 2)
    for name, m in metrics.items():
        ax_pr.plot(m.pr_recall, m.pr_precision, label=f"{name} (AP50 {m.map50:.3f})")
        if len(m.mr_fppi):
            ax_mr.plot(np.maximum(m.mr_fppi, 1e-4), np.maximum(m.mr_miss, 1e-4), label=f"{name} (MR {m.miss_rate:.3f})")
    ax_pr.set(xlabel="recall", ylabel="precision", xlim=(0, 1), ylim=(0, 1.02), title="precision-recall, IoU 0.5")
    ax_mr.set(xscale="log", yscale="log", xlabel="false positives per image", ylabel="miss rate",
              xlim=(1e-3, 10), ylim=(1e-2, 1.05), title="miss rate vs FPPI (MR^-2 over [1e-2, 1])")  # fmt: skip
    ax_mr.axvspan(1e-2, 1.0, color="0.92", zorder=0)
    for ax in (ax_pr, ax_mr):
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=8, loc="lower left")
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")
    return Path(path)


def _draw(img: np.ndarray, gt: ImageLabels, det: Detections, conf: float) -> np.ndarray:
    out = np.ascontiguousarray(img.copy())
    t = max(1, round(max(img.shape[:2]) / 300))
    for x1, y1, x2, y2 in gt.boxes:
        cv2.rectangle(out, (int(x1), int(y1)), (int(round(x2)) - 1, int(round(y2)) - 1), (0, 255, 0), t)
    keep = det.scores >= conf
    for (x1, y1, x2, y2), s in zip(det.boxes[keep], det.scores[keep], strict=True):
        cv2.rectangle(out, (int(x1), int(y1)), (int(round(x2)) - 1, int(round(y2)) - 1), (255, 40, 40), t)
        cv2.putText(out, f"{s:.2f}", (int(x1), max(int(y1) - 2, 8)), cv2.FONT_HERSHEY_SIMPLEX, 0.3 * t, (255, 40, 40),
                    max(1, t // 2), cv2.LINE_AA)  # fmt: skip
    return out


def plot_qualitative(
    images: Mapping[str, Sequence[np.ndarray]],
    ground_truth: Sequence[ImageLabels],
    predictions: Mapping[str, Sequence[Detections]],
    path: str | os.PathLike,
    *,
    row_names: Sequence[str] = (),
    conf: float = 0.25,
) -> Path:
    """A grid: one row per image, one column per input; ground truth green, predictions (score >= conf) red.

    Args:
        images: ``{input: [RGB (H, W, 3) per row]}``.
        ground_truth: boxes per row (same frame as the images).
        predictions: ``{input: [Detections per row]}``.
    """
    cols = list(images)
    n = len(ground_truth)
    fig = _figure(3.2 * len(cols), 2.7 * n + 0.4)
    axes = np.atleast_2d(fig.subplots(n, len(cols), squeeze=False))
    for j, name in enumerate(cols):
        for i in range(n):
            ax = axes[i, j]
            ax.imshow(_draw(images[name][i], ground_truth[i], predictions[name][i], conf))
            ax.set_xticks([])
            ax.set_yticks([])
            if i == 0:
                ax.set_title(name, fontsize=10)
            if j == 0 and i < len(row_names):
                ax.set_ylabel(row_names[i], fontsize=8)
    fig.suptitle(f"green: ground truth, red: predictions with score >= {conf}", fontsize=9)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")
    return Path(path)
