"""Golden tests: the profiles reproduce published per-image metric tables shipped with the sample data.

* ``tno/metrics``: EFIF's table of 11 metrics for 9 methods (legacy Tang MATLAB code) -> ``tang_legacy``, 1e-6 rel.
* ``vifb/metrics``: VIFB's per-image values of 13 metrics (5 significant digits) -> ``vifb``, 1e-4 rel.
  SwinFusion and YDTR are left out: their reference values do not correspond to the shipped JPEGs.

A fast subset runs by default; the full tables are marked ``slow``.
"""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
import torch

from fusion.metrics import evaluate_batch
from fusion.metrics.profiles import VIFB_NAMES
from fusion.utils.io import read_image

pytestmark = pytest.mark.shared_data

TNO_METRICS = ("EN", "SF", "SD", "PSNR", "MSE", "MI", "VIF", "AG", "CC", "SCD", "Qabf")


@pytest.fixture(autouse=True)
def _one_thread():
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


def _tno_reference(root: Path) -> dict[tuple[str, str], dict[str, float]]:
    ref: dict[tuple[str, str], dict[str, float]] = {}
    with (root / "tno" / "metrics" / "efif_metric_tno_shared.csv").open() as fh:
        for r in csv.DictReader(fh):
            ref.setdefault((r["image"], r["method"]), {})[r["metric"]] = float(r["value"])
    return ref


def _vifb_reference(root: Path) -> dict[tuple[str, str], dict[str, float]]:
    ref: dict[tuple[str, str], dict[str, float]] = {}
    with (root / "vifb" / "metrics" / "vifb_metrics_shared.csv").open() as fh:
        for r in csv.DictReader(fh):
            if r["method"] in ("SwinFusion", "YDTR"):
                continue
            ref.setdefault((r["image"], r["method"]), {})[VIFB_NAMES[r["metric"]]] = float(r["value"])
    return ref


def _check(keys, ref, out, rel_tol):
    failures = []
    for key, got in zip(keys, out, strict=True):
        for metric, want in ref[key].items():
            err = abs(got[metric] - want) / abs(want)
            if err > rel_tol:
                failures.append(f"{key} {metric}: got {got[metric]!r}, table {want!r} (rel {err:.2e})")
    assert not failures, "\n".join(failures[:20])


def _run_tno(root: Path, images: set[str] | None):
    ref = _tno_reference(root)
    keys = sorted(k for k in ref if images is None or k[0] in images)
    assert keys
    fused = [read_image(root / "tno" / "fused" / m / f"{i}.png", "unchanged") for i, m in keys]
    ir = [read_image(root / "tno" / "ir" / f"{i}.png", "unchanged") for i, _ in keys]
    vis = [read_image(root / "tno" / "vis" / f"{i}.png", "unchanged") for i, _ in keys]
    out = evaluate_batch(fused, ir, vis, profile="tang_legacy", metrics=list(TNO_METRICS))
    _check(keys, ref, out, 1e-6)


def _run_vifb(root: Path, pairs: set[tuple[str, str]] | None):
    ref = _vifb_reference(root)
    keys = sorted(k for k in ref if pairs is None or k in pairs)
    assert keys
    fused = [read_image(root / "vifb" / "fused" / f"{i}_{m}.jpg", "unchanged") for i, m in keys]
    ir = [read_image(root / "vifb" / "ir" / f"{i}.jpg", "unchanged") for i, _ in keys]
    vis = [read_image(root / "vifb" / "vis" / f"{i}.jpg", "unchanged") for i, _ in keys]
    out = evaluate_batch(fused, ir, vis, profile="vifb", metrics=list(VIFB_NAMES.values()))
    _check(keys, ref, out, 1e-4)


def test_tno_table_subset(shared_data):
    _run_tno(shared_data, {"05", "34"})


@pytest.mark.slow
def test_tno_table_full(shared_data):
    _run_tno(shared_data, None)


def test_vifb_table_subset(shared_data):
    # Two small pairs, one with an 8-bit grey IR file (used for every colour channel).
    _run_vifb(shared_data, {("manWalking", "GFF"), ("peopleshadow", "IFCNN"), ("carLight", "U2Fusion")})


@pytest.mark.slow
def test_vifb_table_full(shared_data):
    _run_vifb(shared_data, None)
