"""TC-MoA speed and memory, each path as a ratio against the official-style forward measured in the same run.

    python benchmarks/bench_model.py                       # the CPU suite (about 10 minutes on 2 cores)
    python benchmarks/bench_model.py --sections shipped    # only the shipped CPU model
    python benchmarks/bench_model.py --runs 5 --threads 2

Sections (``--sections``, comma list):

* ``forward``: ``tcmoa_base`` (random weights), one 448x448 pair, one forward: the official-style forward
  (``fusion.models.reference.official_forward``, a literal re-statement of the official code) against ours in
  float32 and under bf16 autocast;
* ``frame``: ``tcmoa_base``, one 640x480 pair: the official predict strategy (four 448x448 tiles, official
  forward) against our default path (one whole-frame pass) in float32 and bf16;
* ``shipped``: the shipped ``tcmoa_tiny`` through the ``Fuser`` interface (uint8 in, uint8 out) at 320x240,
  640x480 and 1280x1024, against the official-style forward of the same weights with the official strategy
  (float32 only: its analytic codec backbone carries the image in small offsets on a large constant direction,
  which bf16 rounds away; ``gpu_check.py`` measures that);
* ``memory``: peak memory of ``tcmoa_tiny`` with random weights (every block computed) at 0.3, 1.2 and 5 MP on the
  default path: frames beyond ``max_pixels`` are tiled, so memory stays bounded.

Every case runs in its own subprocess (its peak RSS is its own), ``--warmup`` untimed runs then ``--runs`` timed
ones; the table reports the median and the minimum, ``ratio`` = the section baseline's median / the case's median,
the achieved GFLOP/s (FLOPs counted by ``torch.utils.flop_counter`` on one call of the case) and, beside it, the
machine's attainable peak measured in the same run (a large ``torch.mm`` in float32 and bfloat16 with the same
threads). Writes ``bench_model.csv`` and ``bench_model.md`` to ``--out``.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import platform
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

from fusion.errors import ConfigError
from fusion.utils.cli import run_cli
from fusion.utils.io import atomic_write_text
from fusion.utils.logging import get_logger, setup_script_logging

log = get_logger("bench_model")
SECTIONS = ("forward", "frame", "shipped", "memory")
FIELDS = ["section", "case", "model", "path", "amp", "size", "megapixels", "median_s", "min_s", "ratio",
          "gflop", "gflops_per_s", "peak_mem_mb", "mem_kind", "device", "threads", "torch"]


def _cases(sections: list[str]) -> list[dict]:
    """The cases of each section; the first of a section is its baseline (``path == "official"``)."""
    cases: list[dict] = []

    def add(section: str, case: str, model: str, path: str, amp: str, size: tuple[int, int], **kw) -> None:
        cases.append({"section": section, "case": case, "model": model, "path": path, "amp": amp,
                      "width": size[0], "height": size[1], **kw})

    if "forward" in sections:
        add("forward", "official forward fp32", "tcmoa_base", "official", "none", (448, 448))
        add("forward", "ours fp32", "tcmoa_base", "default", "none", (448, 448))
        add("forward", "ours bf16", "tcmoa_base", "default", "bf16", (448, 448))
    if "frame" in sections:
        add("frame", "official predict (4 tiles) fp32", "tcmoa_base", "official", "none", (640, 480))
        add("frame", "ours whole frame fp32", "tcmoa_base", "default", "none", (640, 480))
        add("frame", "ours whole frame bf16", "tcmoa_base", "default", "bf16", (640, 480))
    if "shipped" in sections:
        add("shipped", "official-style, shipped weights", "tcmoa_tiny:shipped", "official", "none", (640, 480))
        for size in ((320, 240), (640, 480), (1280, 1024)):
            add("shipped", f"fuser {size[0]}x{size[1]} fp32", "tcmoa_tiny:shipped", "fuser", "none", size)
    if "memory" in sections:
        for mp, size in ((0.3, (640, 480)), (1.2, (1280, 960)), (5.0, (2592, 1944))):
            add("memory", f"{mp} MP", "tcmoa_tiny", "default", "none", size, runs=1, warmup=0)
    return cases


def _parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sections", default=",".join(SECTIONS), help=f"comma list of {', '.join(SECTIONS)}")
    p.add_argument("--device", default="cpu", help="cpu, cuda, cuda:N or auto (the GPU suite is gpu_check.py)")
    p.add_argument("--warmup", type=int, default=1, help="untimed runs per case")
    p.add_argument("--runs", type=int, default=3, help="timed runs per case (the median is reported)")
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    p.add_argument("--out", default="runs/bench/model", help="output folder (CSV + Markdown)")
    p.add_argument("--child", default=None, help=argparse.SUPPRESS)
    return p.parse_args(argv)


def _peak_rss_mb() -> float:
    scale = 1 if platform.system() == "Darwin" else 1024  # ru_maxrss: KiB on Linux, bytes on macOS
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale / 2**20


def _build(case: dict, device):
    """``(call, model)``: a no-argument callable running the case once."""
    import numpy as np
    import torch

    from fusion.fusers.base import create_fuser
    from fusion.models import create_model, fuse_tensors
    from fusion.models.reference import ReferenceTCMoA, randomize

    w, h = case["width"], case["height"]
    amp = None if case["amp"] == "none" else case["amp"]
    name = case["model"]
    if name == "tcmoa_tiny:shipped":
        fuser = create_fuser("tcmoa_tiny", device=str(device), amp_dtype=amp)
        model = fuser.model
    else:
        torch.manual_seed(0)
        model = create_model(name).to(device).eval()
        randomize(model, seed=0)  # routers and tables non-trivial, as trained weights
        fuser = None
    if case["path"] == "fuser":
        rng = np.random.default_rng(0)
        a8 = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
        b8 = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
        return (lambda: fuser.fuse(a8, b8, "vif")), model
    gen = torch.Generator().manual_seed(0)
    a = torch.rand(1, 3, h, w, generator=gen).to(device)
    b = torch.rand(1, 3, h, w, generator=gen).to(device)
    if case["path"] == "official":
        target = ReferenceTCMoA(model)
        return (lambda: fuse_tensors(target, a, b, "vif", compat="official", amp_dtype=amp)), model
    return (lambda: fuse_tensors(model, a, b, "vif", compat="default", amp_dtype=amp)), model


def _count_flops(call) -> float:
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as counter:
        call()
    return float(counter.get_total_flops())


def _run_case(case: dict) -> dict:
    import torch

    from fusion.utils.device import resolve_device

    if case["threads"]:
        torch.set_num_threads(case["threads"])
    device = resolve_device(case["device"])
    call, _ = _build(case, device)

    def once() -> float:
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        t0 = time.perf_counter()
        call()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        return time.perf_counter() - t0

    for _ in range(case["warmup"]):
        once()
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    times = [once() for _ in range(case["runs"])]
    if device.type == "cuda":
        peak, kind = torch.cuda.max_memory_allocated(device) / 2**20, "cuda_max_allocated"
    else:
        peak, kind = _peak_rss_mb(), "process_peak_rss"
    flops = _count_flops(call) if case["section"] != "memory" else float("nan")
    median = statistics.median(times)
    return {
        "section": case["section"], "case": case["case"], "model": case["model"], "path": case["path"],
        "amp": case["amp"], "size": f"{case['width']}x{case['height']}",
        "megapixels": round(case["width"] * case["height"] / 1e6, 2), "median_s": round(median, 4),
        "min_s": round(min(times), 4), "gflop": round(flops / 1e9, 1),
        "gflops_per_s": round(flops / 1e9 / median, 1), "peak_mem_mb": round(peak, 1), "mem_kind": kind,
        "device": str(device), "threads": torch.get_num_threads(), "torch": torch.__version__,
    }


def _gemm_peak(threads: int, device: str) -> dict:
    """Attainable GEMM throughput (GFLOP/s) in float32 and bfloat16 with the same threads: the ceiling the table's
    achieved GFLOP/s compare with."""
    import torch

    from fusion.utils.device import resolve_device

    if threads:
        torch.set_num_threads(threads)
    dev = resolve_device(device)
    out = {}
    n = 2048
    for name, dtype in (("fp32", torch.float32), ("bf16", torch.bfloat16)):
        x = torch.randn(n, n, device=dev).to(dtype)
        y = torch.randn(n, n, device=dev).to(dtype)
        torch.mm(x, y)
        times = []
        for _ in range(5):
            if dev.type == "cuda":
                torch.cuda.synchronize(dev)
            t0 = time.perf_counter()
            torch.mm(x, y)
            if dev.type == "cuda":
                torch.cuda.synchronize(dev)
            times.append(time.perf_counter() - t0)
        out[name] = round(2 * n**3 / min(times) / 1e9, 1)
    return out


def _markdown(rows: list[dict], peak: dict) -> str:
    head = ["section", "case", "size", "median s", "min s", "ratio vs official", "GFLOP", "GFLOP/s", "peak MB"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        ratio = "baseline" if r["path"] == "official" else (f"{r['ratio']:.2f}x" if r["ratio"] == r["ratio"] else "")
        gflop = "" if r["gflop"] != r["gflop"] else f"{r['gflop']:.0f}"
        rate = "" if r["gflops_per_s"] != r["gflops_per_s"] else f"{r['gflops_per_s']:.0f}"
        lines.append(f"| {r['section']} | {r['case']} | {r['size']} | {r['median_s']:.3f} | {r['min_s']:.3f} | "
                     f"{ratio} | {gflop} | {rate} | {r['peak_mem_mb']:.0f} |")
    first = rows[0] if rows else {}
    return ("# TC-MoA speed and memory\n\n" + "\n".join(lines) +
            f"\n\nMachine: {platform.machine()}, {first.get('threads', '?')} torch threads on "
            f"{first.get('device', '?')}, torch {first.get('torch', '?')}. Attainable GEMM peak measured in the same "
            f"run (2048x2048 `torch.mm`): fp32 {peak.get('fp32', '?')} GFLOP/s, bf16 {peak.get('bf16', '?')} "
            "GFLOP/s. GFLOP counts matrix products, convolutions and attention (`torch.utils.flop_counter`); the "
            "official-style forward computes both streams through every decoder block and decodes every pixel, "
            "so it counts more. Peak memory: the case process's peak RSS (weights and runtime included).\n")


def _ratios(rows: list[dict]) -> None:
    base: dict[str, float] = {}
    for r in rows:
        if r["path"] == "official":
            base[r["section"]] = r["median_s"]
    for r in rows:
        b = base.get(r["section"])
        r["ratio"] = round(b / r["median_s"], 3) if b and r["median_s"] > 0 else float("nan")


def main(argv: list[str] | None = None) -> int:
    args = _parse_args(argv)
    if args.child:
        payload = json.loads(args.child)
        if payload.get("peak"):
            print(json.dumps(_gemm_peak(payload["threads"], payload["device"])))
        else:
            print(json.dumps(_run_case(payload)))
        return 0
    setup_script_logging()
    sections = [s.strip() for s in args.sections.split(",") if s.strip()]
    unknown = [s for s in sections if s not in SECTIONS]
    if unknown or not sections:
        raise ConfigError(f"--sections: unknown {', '.join(unknown) or '(none given)'}; expected {', '.join(SECTIONS)}")
    if args.runs < 1 or args.warmup < 0:
        raise ConfigError("--runs must be >= 1 and --warmup >= 0")

    def child(payload: dict) -> dict | None:
        proc = subprocess.run([sys.executable, __file__, "--child", json.dumps(payload)], capture_output=True,
                              text=True, check=False)
        if proc.returncode != 0:
            log.error("%s failed: %s", payload.get("case", "peak"),
                      (proc.stderr.strip().splitlines() or ["no output"])[-1])
            return None
        return json.loads(proc.stdout.strip().splitlines()[-1])

    peak = child({"peak": True, "threads": args.threads, "device": args.device}) or {}
    rows = []
    for case in _cases(sections):
        case = {"warmup": args.warmup, "runs": args.runs, **case, "threads": args.threads, "device": args.device}
        log.info("%s: %s", case["section"], case["case"])
        row = child(case)
        if row is not None:
            log.info("  %.3f s (median of %d), peak %.0f MB", row["median_s"], case["runs"], row["peak_mem_mb"])
            rows.append(row)
    _ratios(rows)
    out = Path(args.out)
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=FIELDS, extrasaction="ignore")
    writer.writeheader()
    writer.writerows(rows)
    atomic_write_text(out / "bench_model.csv", buf.getvalue())
    md = _markdown(rows, peak)
    atomic_write_text(out / "bench_model.md", md)
    print(md)
    return 0 if rows else 1


if __name__ == "__main__":
    run_cli(main)
