"""Smoke test of benchmarks/bench_model.py: it runs, and writes CSV + Markdown with real numbers."""

from __future__ import annotations

import csv
import subprocess
import sys

import pytest


@pytest.mark.slow
def test_bench_model_writes_csv_and_markdown(repo_root, tmp_path):
    out = tmp_path / "bench"
    proc = subprocess.run(
        [sys.executable, str(repo_root / "benchmarks" / "bench_model.py"), "--models", "tiny", "--device", "cpu",
         "--modes", "official", "--size", "112x112", "--warmup", "0", "--runs", "1", "--out", str(out)],
        capture_output=True, text=True, timeout=300, check=False)
    assert proc.returncode == 0, proc.stderr[-2000:]
    rows = list(csv.DictReader((out / "bench_model.csv").open()))
    assert len(rows) == 1 and rows[0]["model"] == "tcmoa_tiny" and rows[0]["size"] == "112x112"
    assert float(rows[0]["mean_s"]) > 0 and float(rows[0]["peak_mem_mb"]) > 0
    assert "| tcmoa_tiny | cpu | official | none |" in (out / "bench_model.md").read_text()


def test_bench_model_rejects_bad_options(repo_root, tmp_path):
    proc = subprocess.run(
        [sys.executable, str(repo_root / "benchmarks" / "bench_model.py"), "--models", "huge", "--device", "cpu",
         "--out", str(tmp_path)], capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 2 and "unknown model 'tcmoa_huge'" in proc.stderr
    assert "Traceback" not in proc.stderr
