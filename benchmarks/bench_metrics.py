"""Cost of the fusion-metric suites: seconds per image pair, per metric and in total, and how it grows with size.

    python benchmarks/bench_metrics.py --out runs/bench_metrics               # all profiles, 3 sizes
    python benchmarks/bench_metrics.py --out runs/b --profiles tang --sizes 640x480 --device cuda

Writes ``bench_metrics.csv`` (profile, metric, size, seconds; metric ``ALL`` = the whole profile in one call) and
``bench_metrics.md`` (totals per profile and size, the growth exponent, the slowest metrics at 640x480) to ``--out``.
Images are synthetic (smooth structure plus noise, colour fused/visible, grey infrared), so timings do not depend on
any dataset.
"""

from __future__ import annotations

import argparse
import csv
import io
import math
import platform
import time
from pathlib import Path

import numpy as np
import torch

from fusion.metrics import evaluate, get_profile, list_profiles
from fusion.utils.cli import run_cli
from fusion.utils.io import atomic_write_text


def synthetic_triple(h: int, w: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w]
    base = 128 + 60 * np.sin(xx / 17.0) * np.cos(yy / 23.0)
    ir = np.clip(base + rng.normal(0, 10, (h, w)), 0, 255).astype(np.uint8)
    g = np.clip(255 - base + rng.normal(0, 10, (h, w)), 0, 255)
    vis = np.stack([g, np.clip(g * 0.8 + 30, 0, 255), np.clip(g * 0.6 + 50, 0, 255)], axis=2).astype(np.uint8)
    fused = ((vis.astype(np.int32) + ir[..., None]) // 2).astype(np.uint8)
    return fused, ir, vis


def _time(fn, repeat: int, sync) -> float:
    best = math.inf
    for _ in range(repeat):
        sync()
        t = time.perf_counter()
        fn()
        sync()
        best = min(best, time.perf_counter() - t)
    return best


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", required=True, type=Path)
    p.add_argument("--profiles", default=",".join(list_profiles()))
    p.add_argument("--sizes", default="256x256,640x480,1024x768", help="comma list of WxH")
    p.add_argument("--repeat", type=int, default=1, help="best of N runs")
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: default)")
    p.add_argument("--per-metric", action="store_true", help="also time every metric alone (all sizes)")
    args = p.parse_args(argv)
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    sizes = []
    for s in args.sizes.split(","):
        w, h = (int(v) for v in s.lower().split("x"))
        sizes.append((w, h))
    profiles = [get_profile(n) for n in args.profiles.split(",") if n]
    cuda = str(args.device).startswith("cuda")

    def sync() -> None:
        if cuda:
            torch.cuda.synchronize()

    rows: list[tuple[str, str, str, float]] = []
    for prof in profiles:
        names = list(prof.metrics)
        for w, h in sizes:
            f, a, b = synthetic_triple(h, w)
            evaluate(f, a, b, prof, names[:1], device=args.device)  # warm-up (imports, CUDA context)
            def run_all(f=f, a=a, b=b, prof=prof, names=names) -> None:
                evaluate(f, a, b, prof, names, device=args.device)

            total = _time(run_all, args.repeat, sync)
            rows.append((prof.name, "ALL", f"{w}x{h}", total))
            print(f"{prof.name:12s} {w}x{h}: full suite ({len(names)} metrics) {total:.3f} s", flush=True)
            if args.per_metric or (w, h) == (640, 480):
                for m in names:
                    def run_one(m=m, f=f, a=a, b=b, prof=prof) -> None:
                        evaluate(f, a, b, prof, [m], device=args.device)

                    t = _time(run_one, args.repeat, sync)
                    rows.append((prof.name, m, f"{w}x{h}", t))

    buf = io.StringIO()
    wr = csv.writer(buf, lineterminator="\n")
    wr.writerow(["profile", "metric", "size", "seconds"])
    for r in rows:
        wr.writerow([r[0], r[1], r[2], f"{r[3]:.6f}"])
    atomic_write_text(args.out / "bench_metrics.csv", buf.getvalue())

    md = [
        "# Fusion metric cost",
        "",
        f"Device: {args.device}, torch {torch.__version__}, {torch.get_num_threads()} CPU threads, "
        f"{platform.processor() or platform.machine()}; best of {args.repeat}; synthetic colour images.",
        "",
        "Full suite = every metric the profile defines, one `evaluate()` call per image pair.",
        "",
        "| profile | metrics | " + " | ".join(f"{w}x{h} (s)" for w, h in sizes) + " | growth exponent |",
        "|---|---|" + "---|" * len(sizes) + "---|",
    ]
    for prof in profiles:
        ts = [next(r[3] for r in rows if r[0] == prof.name and r[1] == "ALL" and r[2] == f"{w}x{h}") for w, h in sizes]
        px = [w * h for w, h in sizes]
        slope = (
            math.log(ts[-1] / ts[0]) / math.log(px[-1] / px[0]) if len(sizes) > 1 and ts[0] > 0 else float("nan")
        )
        md.append(f"| {prof.name} | {len(prof.metrics)} | " + " | ".join(f"{t:.3f}" for t in ts) + f" | {slope:.2f} |")
    md += ["", "Growth exponent: slope of log(time) against log(pixels) between the smallest and largest size.", ""]
    per = [r for r in rows if r[1] != "ALL" and r[2] == "640x480"]
    if per:
        md += ["## Per metric at 640x480", "", "| profile | metric | seconds |", "|---|---|---|"]
        for r in sorted(per, key=lambda r: (r[0], -r[3])):
            md.append(f"| {r[0]} | {r[1]} | {r[3]:.4f} |")
    atomic_write_text(args.out / "bench_metrics.md", "\n".join(md) + "\n")
    print(f"wrote {args.out / 'bench_metrics.csv'} and {args.out / 'bench_metrics.md'}")
    return 0


if __name__ == "__main__":
    run_cli(main)
