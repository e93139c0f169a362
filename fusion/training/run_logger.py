"""What a training run tells its user: scalars to CSV and TensorBoard, and sample grids of fused outputs (PNG).

Only rank 0 creates a :class:`RunLogger`. On resumption the CSV is cut back to the resumed iteration and
TensorBoard purges later events, so that the logs of a resumed run read like those of an uninterrupted one.
"""

from __future__ import annotations

import csv
import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import torch

from fusion.utils.io import atomic_write_text, write_image
from fusion.utils.logging import get_logger

__all__ = ["RunLogger", "sample_grid", "csv_columns"]

log = get_logger(__name__)


def csv_columns(tasks: Sequence[str], terms: Sequence[str]) -> list[str]:
    """``iteration, epoch, lr, seconds`` then ``<task>/<term>`` for every task and term."""
    return ["iteration", "epoch", "lr", "seconds"] + [f"{t}/{name}" for t in tasks for name in terms]


def sample_grid(rows: Sequence[Sequence[torch.Tensor]], pad: int = 2) -> np.ndarray:
    """Tile images ``(3, H, W)`` in [0, 1] into one ``uint8`` ``(H', W', 3)`` grid, one list per row.

    Rows may have different image sizes; each row is padded on the right to the widest.
    """
    strips = []
    for row in rows:
        imgs = [r.detach().float().clamp(0, 1).cpu() for r in row]
        h = max(i.shape[1] for i in imgs)
        parts = []
        for img in imgs:
            canvas = torch.ones(3, h, img.shape[2])
            canvas[:, : img.shape[1]] = img
            parts.extend([canvas, torch.ones(3, h, pad)])
        strips.append(torch.cat(parts[:-1], dim=2))
    width = max(s.shape[2] for s in strips)
    padded = []
    for s in strips:
        canvas = torch.ones(3, s.shape[1], width)
        canvas[:, :, : s.shape[2]] = s
        padded.extend([canvas, torch.ones(3, pad, width)])
    grid = torch.cat(padded[:-1], dim=1)
    return (grid.permute(1, 2, 0).numpy() * 255.0 + 0.5).astype(np.uint8)


class RunLogger:
    """CSV + TensorBoard scalars and PNG samples under ``output_dir``.

    Args:
        output_dir: the run folder (``metrics.csv``, ``tensorboard/``, ``samples/``).
        columns: CSV header (:func:`csv_columns`).
        tensorboard: write TensorBoard events.
        csv_enabled: write ``metrics.csv``.
        resume_iteration: the iteration a resumed run continues after (0 for a fresh run).
    """

    def __init__(
        self,
        output_dir: str | os.PathLike,
        columns: Sequence[str],
        *,
        tensorboard: bool = True,
        csv_enabled: bool = True,
        resume_iteration: int = 0,
    ) -> None:
        self.dir = Path(output_dir)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.columns = list(columns)
        self.csv_path = self.dir / "metrics.csv" if csv_enabled else None
        if self.csv_path is not None:
            self._prepare_csv(resume_iteration)
        self.writer = None
        if tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter

                self.writer = SummaryWriter(
                    log_dir=str(self.dir / "tensorboard"), purge_step=resume_iteration + 1 if resume_iteration else None
                )
            except ImportError:  # tensorboard is a declared dependency, but a broken install should not stop training
                log.warning("tensorboard is not importable; scalars go to metrics.csv only")

    def _prepare_csv(self, resume_iteration: int) -> None:
        path = self.csv_path
        assert path is not None
        kept: list[dict[str, str]] = []
        if resume_iteration and path.is_file():
            with path.open(newline="", encoding="utf-8") as fh:
                for row in csv.DictReader(fh):
                    try:
                        if int(row["iteration"]) <= resume_iteration:
                            kept.append(row)
                    except (KeyError, ValueError):
                        continue
        lines = [",".join(self.columns)]
        for row in kept:
            lines.append(",".join(row.get(c, "") or "" for c in self.columns))
        atomic_write_text(path, "\n".join(lines) + "\n")

    def log_scalars(self, iteration: int, epoch: int, lr: float, seconds: float, values: Mapping[str, float]) -> None:
        """One CSV row and the matching TensorBoard scalars; ``values`` keys are ``<task>/<term>``."""
        if self.csv_path is not None:
            row = {"iteration": str(iteration), "epoch": str(epoch), "lr": f"{lr:.6g}", "seconds": f"{seconds:.3f}"}
            for k, v in values.items():
                if k in self.columns:
                    row[k] = f"{float(v):.6g}"
            with self.csv_path.open("a", newline="", encoding="utf-8") as fh:
                fh.write(",".join(row.get(c, "") for c in self.columns) + "\n")
        if self.writer is not None:
            self.writer.add_scalar("lr", lr, iteration)
            self.writer.add_scalar("epoch", epoch, iteration)
            for k, v in values.items():
                self.writer.add_scalar(k, float(v), iteration)

    def log_samples(self, iteration: int, rows: Sequence[Sequence[torch.Tensor]]) -> Path:
        """Write ``samples/iter_<iteration>.png`` (each row: source a, source b, fused)."""
        path = self.dir / "samples" / f"iter_{iteration:08d}.png"
        write_image(path, sample_grid(rows))
        if self.writer is not None:
            grid = torch.from_numpy(sample_grid(rows)).permute(2, 0, 1)
            self.writer.add_image("samples", grid, iteration)
        return path

    def close(self) -> None:
        if self.writer is not None:
            self.writer.flush()
            self.writer.close()
