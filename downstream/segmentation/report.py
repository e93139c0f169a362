"""The comparison's outputs: table (CSV + Markdown), bar chart and qualitative grid."""

from __future__ import annotations

import csv
import io
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from downstream.segmentation.confusion import SegScores
from fusion.utils.io import atomic_path, atomic_write_text, write_image

__all__ = ["ResultRow", "results_csv", "results_markdown", "write_tables", "write_bar_chart", "colorize",
           "qualitative_grid"]


@dataclass(frozen=True)
class ResultRow:
    """One table row: an input's label, what it is, and its scores on the test split."""

    label: str
    description: str
    scores: SegScores


def _pct(v: float) -> str:
    return "nan" if not math.isfinite(v) else f"{100.0 * v:.2f}"


def results_csv(rows: Sequence[ResultRow]) -> str:
    """CSV text: ``input, mIoU, mAcc`` then the IoU of every class (percent, 2 decimals; ``nan`` = undefined)."""
    if not rows:
        raise ValueError("no result rows")
    classes = rows[0].scores.classes
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["input", "mIoU", "mAcc", *classes])
    for r in rows:
        w.writerow([r.label, _pct(r.scores.miou), _pct(r.scores.macc), *(_pct(r.scores.iou[c]) for c in classes)])
    return buf.getvalue()


def results_markdown(rows: Sequence[ResultRow], *, title: str | None = None) -> str:
    """Markdown table with both mIoU variants (best value per column in bold) and a legend."""
    if not rows:
        raise ValueError("no result rows")
    classes = rows[0].scores.classes
    cols = ["mIoU", "mIoU_present", "mAcc", *classes]

    def values(r: ResultRow) -> list[float]:
        s = r.scores
        return [s.miou, s.miou_present, s.macc, *(s.iou[c] for c in classes)]

    table = np.array([values(r) for r in rows], dtype=np.float64)
    best = np.nanmax(np.where(np.isfinite(table), table, -np.inf), axis=0)
    lines = []
    if title:
        lines += [f"**{title}**", ""]
    lines.append("| input | " + " | ".join(cols) + " |")
    lines.append("|---|" + "---:|" * len(cols))
    for r, vals in zip(rows, table):
        cells = []
        for v, b in zip(vals, best):
            text = "–" if not math.isfinite(v) else f"{100 * v:.1f}"
            cells.append(f"**{text}**" if math.isfinite(v) and len(rows) > 1 and v == b and b > 0 else text)
        lines.append(f"| {r.label} | " + " | ".join(cells) + " |")
    present = rows[0].scores.present
    lines += ["", f"mIoU: mean IoU over all {len(classes)} classes, `unlabeled` included, undefined counted as 0 "
              "(the RTFNet/SegMiF protocol for MFNet and FMB). mIoU_present: mean over the "
              f"{len(present)} classes present in the test ground truth. mAcc: mean per-class accuracy over all "
              "classes. Per-class columns are IoU (%); – = class neither present nor predicted. "
              "runs/*/result.json also has mIoU_nanmean (CMX/MRFS-style), aAcc and the confusion matrix."]
    return "\n".join(lines) + "\n"


def write_tables(rows: Sequence[ResultRow], out_dir: str | os.PathLike, *, title: str | None = None) -> tuple[Path,
                                                                                                          Path]:
    """Write ``results.csv`` and ``results.md`` into ``out_dir`` (atomically); return both paths."""
    out = Path(out_dir)
    csv_path = atomic_write_text(out / "results.csv", results_csv(rows))
    md_path = atomic_write_text(out / "results.md", results_markdown(rows, title=title))
    return csv_path, md_path


def write_bar_chart(rows: Sequence[ResultRow], path: str | os.PathLike, *, title: str = "") -> Path:
    """Grouped bars: mIoU, mAcc and per-class IoU (percent), one colour per input."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    classes = list(rows[0].scores.classes)
    groups = ["mIoU", "mAcc", *classes]
    n = len(rows)
    width = 0.8 / max(n, 1)
    x = np.arange(len(groups))
    fig, ax = plt.subplots(figsize=(max(8.0, 0.9 * len(groups) + 2), 4.2), dpi=110)
    for k, r in enumerate(rows):
        s = r.scores
        vals = [s.miou, s.macc, *(s.iou[c] for c in classes)]
        vals = [100 * v if math.isfinite(v) else 0.0 for v in vals]
        ax.bar(x - 0.4 + width * (k + 0.5), vals, width, label=r.label)
    ax.set_xticks(x)
    ax.set_xticklabels(groups, rotation=35, ha="right")
    ax.set_ylabel("%")
    ax.set_ylim(0, 100)
    ax.axvline(1.5, color="0.6", lw=0.8)
    ax.grid(axis="y", alpha=0.3)
    ax.legend(ncol=min(n, 6), fontsize=8, loc="upper right")
    if title:
        ax.set_title(title)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")
    plt.close(fig)
    return Path(path)


def colorize(label: np.ndarray, palette: Sequence[Sequence[int]]) -> np.ndarray:
    """(H, W) class ids -> (H, W, 3) uint8 RGB with ``palette``; ids outside it (e.g. 255) are white."""
    lut = np.full((256, 3), 255, dtype=np.uint8)
    pal = np.asarray(palette, dtype=np.uint8).reshape(-1, 3)
    lut[: len(pal)] = pal
    return lut[np.asarray(label, dtype=np.uint8)]


def _tile(img: np.ndarray, height: int, nearest: bool = False) -> np.ndarray:
    h, w = img.shape[:2]
    width = max(1, round(w * height / h))
    interp = cv2.INTER_NEAREST if nearest else cv2.INTER_LINEAR
    return cv2.resize(img, (width, height), interpolation=interp) if (h, w) != (height, width) else img


def _text_strip(text_lines: Sequence[str], size: tuple[int, int], scale: float = 0.45) -> np.ndarray:
    strip = np.full((*size, 3), 255, dtype=np.uint8)
    for i, t in enumerate(text_lines):
        cv2.putText(strip, t, (4, 16 + 18 * i), cv2.FONT_HERSHEY_SIMPLEX, scale, (0, 0, 0), 1, cv2.LINE_AA)
    return strip


def qualitative_grid(
    rows: Sequence[tuple[str, str, Sequence[np.ndarray]]],
    path: str | os.PathLike,
    *,
    headers: Sequence[str] = ("a: visible", "b: infrared", "model input", "prediction", "ground truth"),
    tile_height: int = 160,
    gap: int = 3,
) -> Path:
    """Write a picture grid: one row per (sample, input), columns ``a | b | fused | prediction | ground truth``.

    Args:
        rows: ``(sample name, input label, [5 RGB uint8 images])``; label-map columns should already be colourised.
        path: output PNG.
        headers: column titles.
        tile_height: every tile is resized to this height (labels with nearest-neighbour).
    """
    if not rows:
        raise ValueError("no rows for the qualitative grid")
    strip_w = 150
    lines = []
    for name, label, images in rows:
        tiles = [_tile(img, tile_height, nearest=k >= 3) for k, img in enumerate(images)]
        parts = [_text_strip([name, label], (tile_height, strip_w))]
        for t in tiles:
            parts += [np.full((tile_height, gap, 3), 255, np.uint8), t]
        lines.append(np.concatenate(parts, axis=1))
    width = max(line.shape[1] for line in lines)
    lines = [np.pad(line, ((0, 0), (0, width - line.shape[1]), (0, 0)), constant_values=255) for line in lines]
    tile_w = rows[0][2][0].shape[1] * tile_height // rows[0][2][0].shape[0]
    header = np.full((24, width, 3), 255, np.uint8)
    for k, h in enumerate(headers):
        x = strip_w + gap + k * (tile_w + gap) + 4
        cv2.putText(header, h, (x, 17), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (0, 0, 0), 1, cv2.LINE_AA)
    body = [header]
    for line in lines:
        body += [np.full((gap, width, 3), 255, np.uint8), line]
    return write_image(path, np.concatenate(body, axis=0))
