"""Cost of the fusion-metric suites: seconds per image pair, per metric and in total, and how it grows with size.

    python benchmarks/bench_metrics.py --out runs/bench_metrics               # all profiles, 3 sizes
    python benchmarks/bench_metrics.py --out runs/b --profiles tang --sizes 640x480 --device cuda
    python benchmarks/bench_metrics.py --out runs/b --profiles cddfuse --sizes 630x460 \
        --peer /path/to/MMIF-CDDFuse/utils/Evaluator.py --peer-python /path/to/venv/bin/python

Writes ``bench_metrics.csv`` (profile, metric, size, seconds; metric ``DEFAULT`` = the profile's default set and
``ALL`` = every metric it defines, each in one call) and ``bench_metrics.md`` (totals per profile and size, the growth
exponent, the 75 ms target per 640x480 pair, the slowest metrics at 640x480) to ``--out``.
Images are synthetic (smooth structure plus noise, colour fused/visible, grey infrared), so timings do not depend on
any dataset.

``--peer EVALUATOR_PY`` (or ``$CDDFUSE_EVALUATOR``, so that ``make bench CDDFUSE_EVALUATOR=... CDDFUSE_PYTHON=...``
includes it) also times the CDDFuse ``Evaluator`` (its 12 metrics on the same grey pair, best of
``--repeat``, at least 3) in a subprocess of ``--peer-python`` (an environment with its dependencies: numpy, scipy,
scikit-learn, scikit-image, opencv) and reports the ``cddfuse`` profile's speed-up against it, measured in the same
run on the same images (``peer`` section of the Markdown, rows ``peer`` in the CSV).
"""

from __future__ import annotations

import argparse
import csv
import io
import math
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np
import torch

from fusion.errors import InputError
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


_PEER = """
import sys, time, json, importlib.util
import numpy as np
spec = importlib.util.spec_from_file_location("Evaluator", sys.argv[1])
mod = importlib.util.module_from_spec(spec)
spec.loader.exec_module(mod)
E = mod.Evaluator
fi, ir, vi = (np.load(p).astype(np.float32) for p in sys.argv[2:5])
def run():
    return [E.EN(fi), E.SD(fi), E.SF(fi), E.AG(fi), E.MI(fi, ir, vi), E.MSE(fi, ir, vi), E.CC(fi, ir, vi),
            E.PSNR(fi, ir, vi), E.SCD(fi, ir, vi), E.VIFF(fi, ir, vi), E.Qabf(fi, ir, vi), E.SSIM(fi, ir, vi)]
run()
best = min((lambda t: (run(), time.perf_counter() - t)[1])(time.perf_counter()) for _ in range(int(sys.argv[5])))
print(json.dumps({"seconds": best}))
"""


def _time_peer(args: argparse.Namespace, f: np.ndarray, a: np.ndarray, b: np.ndarray) -> float:
    """Best time of the Evaluator's 12 metrics on the grey versions of the pair (as its image_read_cv2 gives them)."""
    import json
    import subprocess
    import tempfile

    from fusion.metrics._ops import opencv_gray

    with tempfile.TemporaryDirectory() as tmp:
        paths = []
        for name, img in (("f", f), ("a", a), ("b", b)):
            path = Path(tmp) / f"{name}.npy"
            np.save(path, opencv_gray(img))
            paths.append(str(path))
        proc = subprocess.run([args.peer_python, "-c", _PEER, str(args.peer), *paths, str(max(3, args.repeat))],
                              capture_output=True, text=True, check=False, timeout=600)
    if proc.returncode != 0:
        raise InputError(f"--peer {args.peer}: the Evaluator failed: {(proc.stderr.strip().splitlines() or ['?'])[-1]}")
    return float(json.loads(proc.stdout.strip().splitlines()[-1])["seconds"])


def _peer_section(args: argparse.Namespace, sizes: list[tuple[int, int]], rows: list) -> list[str]:
    out = ["", "## Against the CDDFuse Evaluator (same run, same images)", "",
           f"Peer: `{args.peer}` run by `{args.peer_python}`; best of {max(3, args.repeat)}.", "",
           "| size | Evaluator (s) | cddfuse profile (s) | speed-up | goal >= 20x |", "|---|---|---|---|---|"]
    for w, h in sizes:
        peer = next(r[3] for r in rows if r[0] == "peer" and r[1] == "Evaluator_ALL" and r[2] == f"{w}x{h}")
        ours = next(r[3] for r in rows if r[0] == "peer" and r[1] == "cddfuse_ALL" and r[2] == f"{w}x{h}")
        met = "met" if peer / ours >= 20 else "not met"
        out.append(f"| {w}x{h} | {peer:.4f} | {ours:.4f} | {peer / ours:.1f}x | {met} |")
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", required=True, type=Path)
    p.add_argument("--profiles", default=",".join(list_profiles()))
    p.add_argument("--sizes", default="256x256,640x480,1024x768", help="comma list of WxH")
    p.add_argument("--repeat", type=int, default=1, help="best of N runs")
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: default)")
    p.add_argument("--per-metric", action="store_true", help="also time every metric alone (all sizes)")
    env_peer = os.environ.get("CDDFUSE_EVALUATOR")
    p.add_argument("--peer", type=Path, default=Path(env_peer) if env_peer else None,
                   help="the CDDFuse Evaluator.py to time against the cddfuse profile (default: $CDDFUSE_EVALUATOR)")
    p.add_argument("--peer-python", default=os.environ.get("CDDFUSE_PYTHON", sys.executable),
                   help="interpreter with the Evaluator's dependencies (default: $CDDFUSE_PYTHON, else this one)")
    args = p.parse_args(argv)
    if args.peer is not None and not args.peer.is_file():
        raise InputError(f"--peer {args.peer}: no such file")
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
        default = list(prof.default or names)
        for w, h in sizes:
            f, a, b = synthetic_triple(h, w)
            evaluate(f, a, b, prof, names, device=args.device)  # warm-up (imports, compiled kernels, CUDA context)
            for label, chosen in (("DEFAULT", default), ("ALL", names)):
                def run_set(f=f, a=a, b=b, prof=prof, chosen=chosen) -> None:
                    evaluate(f, a, b, prof, chosen, device=args.device)

                total = _time(run_set, args.repeat, sync)
                rows.append((prof.name, label, f"{w}x{h}", total))
                kind = "default set" if label == "DEFAULT" else "full suite"
                print(f"{prof.name:12s} {w}x{h}: {kind} ({len(chosen)} metrics) {total:.3f} s", flush=True)
            if args.per_metric or (w, h) == (640, 480):
                for m in names:
                    def run_one(m=m, f=f, a=a, b=b, prof=prof) -> None:
                        evaluate(f, a, b, prof, [m], device=args.device)

                    t = _time(run_one, args.repeat, sync)
                    rows.append((prof.name, m, f"{w}x{h}", t))

    if args.peer is not None:
        for w, h in sizes:
            f, a, b = synthetic_triple(h, w)
            rows.append(("peer", "Evaluator_ALL", f"{w}x{h}", _time_peer(args, f, a, b)))
            ours = _time(lambda f=f, a=a, b=b: evaluate(f, a, b, "cddfuse", device=args.device),
                         max(3, args.repeat), sync)
            rows.append(("peer", "cddfuse_ALL", f"{w}x{h}", ours))
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
        "Default set = the metrics a profile reports when none are named; full suite = every metric it defines. One "
        "`evaluate()` call per image pair.",
        "",
        "| profile | set | metrics | " + " | ".join(f"{w}x{h} (s)" for w, h in sizes) + " | growth exponent |",
        "|---|---|---|" + "---|" * len(sizes) + "---|",
    ]
    for prof in profiles:
        for label, n in (("DEFAULT", len(prof.default or prof.metrics)), ("ALL", len(prof.metrics))):
            ts = [next(r[3] for r in rows if r[0] == prof.name and r[1] == label and r[2] == f"{w}x{h}")
                  for w, h in sizes]
            px = [w * h for w, h in sizes]
            slope = (
                math.log(ts[-1] / ts[0]) / math.log(px[-1] / px[0]) if len(sizes) > 1 and ts[0] > 0 else float("nan")
            )
            kind = "default" if label == "DEFAULT" else "full"
            md.append(f"| {prof.name} | {kind} | {n} | " + " | ".join(f"{t:.3f}" for t in ts) + f" | {slope:.2f} |")
    md += ["", "Growth exponent: slope of log(time) against log(pixels) between the smallest and largest size.", ""]
    if (640, 480) in sizes:
        md += ["## Target: default set under 75 ms per 640x480 pair", "", "| profile | default set (ms) | met |",
               "|---|---|---|"]
        for prof in profiles:
            t = next(r[3] for r in rows if r[0] == prof.name and r[1] == "DEFAULT" and r[2] == "640x480")
            md.append(f"| {prof.name} | {t * 1e3:.1f} | {'yes' if t < 0.075 else 'no'} |")
        md.append("")
    per = [r for r in rows if r[1] not in ("ALL", "DEFAULT") and r[2] == "640x480"]
    if per:
        md += ["## Per metric at 640x480", "", "| profile | metric | seconds |", "|---|---|---|"]
        for r in sorted(per, key=lambda r: (r[0], -r[3])):
            md.append(f"| {r[0]} | {r[1]} | {r[3]:.4f} |")
    if args.peer is not None:
        md += _peer_section(args, sizes, rows)
    atomic_write_text(args.out / "bench_metrics.md", "\n".join(md) + "\n")
    print(f"wrote {args.out / 'bench_metrics.csv'} and {args.out / 'bench_metrics.md'}")
    return 0


if __name__ == "__main__":
    run_cli(main)
