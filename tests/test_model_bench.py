"""Smoke tests of benchmarks/bench_model.py: it runs, and writes CSV + Markdown with real numbers and ratios."""

from __future__ import annotations

import csv
import os
import subprocess
import sys

import pytest


@pytest.mark.slow
def test_bench_model_writes_csv_and_markdown(repo_root, tmp_path):
    out = tmp_path / "bench"
    proc = subprocess.run(
        [sys.executable, str(repo_root / "benchmarks" / "bench_model.py"), "--sections", "shipped", "--warmup", "0",
         "--runs", "1", "--out", str(out)], capture_output=True, text=True, timeout=600, check=False)
    assert proc.returncode == 0, proc.stderr[-2000:]
    rows = list(csv.DictReader((out / "bench_model.csv").open()))
    assert [r["path"] for r in rows] == ["official", "fuser", "fuser", "fuser"]
    assert rows[0]["ratio"] == "1.0" and all(float(r["median_s"]) > 0 for r in rows)
    assert all(float(r["peak_mem_mb"]) > 0 and float(r["gflop"]) > 0 for r in rows)
    # the official-style forward computes every block and decodes every pixel: more work than the fuser
    assert float(rows[0]["gflop"]) > float(rows[2]["gflop"])
    md = (out / "bench_model.md").read_text()
    assert "| shipped | official-style, shipped weights | 640x480 |" in md and "GFLOP/s" in md


def test_bench_model_rejects_bad_options(repo_root, tmp_path):
    proc = subprocess.run(
        [sys.executable, str(repo_root / "benchmarks" / "bench_model.py"), "--sections", "huge", "--out",
         str(tmp_path)], capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 2 and "--sections: unknown huge" in proc.stderr
    assert "Traceback" not in proc.stderr


@pytest.mark.slow
def test_gpu_check_smoke_run_on_cpu(repo_root, tmp_path):
    """The GPU script is only ever run for minutes on a lent GPU: its code paths are exercised here on the CPU."""
    proc = subprocess.run(
        [sys.executable, str(repo_root / "benchmarks" / "gpu_check.py"), "--device", "cpu", "--models", "tiny",
         "--pairs", "1", "--runs", "1", "--batch", "1", "--no-compile", "--out", str(tmp_path)],
        capture_output=True, text=True, timeout=600, check=False, env={**os.environ, "PYTHONPATH": str(repo_root)})
    assert proc.returncode == 0, proc.stderr[-2000:]
    rows = list(csv.DictReader((tmp_path / "gpu_check.csv").open()))
    corr = [r for r in rows if r["section"] == "correctness"]
    thr = [r for r in rows if r["section"] == "throughput"]
    assert [r["amp"] for r in corr] == ["bf16"] and corr[0]["pairs"] == "1"
    assert [r["case"] for r in thr][1:] == ["ours whole frame fp32", "ours whole frame bf16"]
    assert thr[0]["ratio"] == "1.0" and all(float(r["fps"]) > 0 for r in thr)
    assert "## Throughput at 640x480" in (tmp_path / "gpu_check.md").read_text()


def test_gpu_check_refuses_without_a_gpu(repo_root, tmp_path):
    import torch

    if torch.cuda.is_available():
        pytest.skip("a GPU is present")
    proc = subprocess.run([sys.executable, str(repo_root / "benchmarks" / "gpu_check.py"), "--out", str(tmp_path)],
                          capture_output=True, text=True, timeout=120, check=False,
                          env={**os.environ, "PYTHONPATH": str(repo_root)})
    assert proc.returncode == 2 and "no CUDA device" in proc.stderr and "Traceback" not in proc.stderr


@pytest.mark.shared_data
def test_bench_stream_resizes_the_clip_and_reports_each_size(repo_root, tmp_path, shared_data):
    proc = subprocess.run(
        [sys.executable, str(repo_root / "benchmarks" / "bench_stream.py"), "--method", "average", "--size", "96x64",
         "--size", "64x48", "--frames", "12", "--rounds", "1", "--no-temporal", "--out", str(tmp_path)],
        capture_output=True, text=True, timeout=300, check=False)
    assert proc.returncode == 0, proc.stderr[-2000:]
    rows = list(csv.DictReader((tmp_path / "bench_stream.csv").open()))
    assert [(r["method"], r["size"], r["frames"]) for r in rows] == [("average", "96x64", "12"),
                                                                     ("average", "64x48", "12")]
    assert all(float(r["fuser_fps"]) > 0 and float(r["pipeline_fps"]) > 0 for r in rows)
    assert (tmp_path / "clips" / "vis_96x64.mp4").is_file()
