"""Time and peak memory of TC-MoA per 640x480 pair (random weights), written as CSV + Markdown.

    python benchmarks/bench_model.py                              # tiny, base, large on the best device
    python benchmarks/bench_model.py --models tiny --device cpu   # quick CPU run
    python benchmarks/bench_model.py --models base,large --device cuda --amp none,bf16 --runs 5

Each (model, mode, amp) case runs in its own subprocess so that the peak memory is its own: the process peak RSS
on CPU (weights included), ``torch.cuda.max_memory_allocated`` on GPU. Modes: ``default`` (feathered 448 tiles with
112 overlap: 4 tiles for 640x480) and ``official`` (end-anchored 448 tiles with overwriting, also 4 tiles for 640x480
since both sides exceed 448; smaller images are resized to multiples of 112), see ``fusion.models.inference``.
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path

from fusion.errors import ConfigError
from fusion.utils.cli import run_cli
from fusion.utils.io import atomic_write_text
from fusion.utils.logging import get_logger, setup_script_logging

log = get_logger("bench_model")
FIELDS = ["model", "device", "mode", "amp", "size", "batch_size", "warmup", "runs", "mean_s", "min_s", "peak_mem_mb",
          "mem_kind", "rss_before_mb", "params_m", "trainable_m", "threads", "torch"]


def _parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--models", default="tiny,base,large", help="comma list: tiny, small, base, large")
    p.add_argument("--device", default="auto", help="cpu, cuda, cuda:N or auto")
    p.add_argument("--modes", default="default,official", help="comma list: default, official")
    p.add_argument("--amp", default=None,
                   help="comma list: none, bf16, fp16 (default: none on CPU, none,bf16 on GPU)")
    p.add_argument("--size", default="640x480", help="WxH of the pair")
    p.add_argument("--warmup", type=int, default=None, help="warm-up runs (default 1)")
    p.add_argument("--runs", type=int, default=None, help="timed runs (default 2 on CPU, 10 on GPU)")
    p.add_argument("--batch-size", type=int, default=4, help="tiles per model call")
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    p.add_argument("--out", default="runs/bench_model", help="output folder (CSV + Markdown)")
    p.add_argument("--child", default=None, help=argparse.SUPPRESS)
    return p.parse_args(argv)


def _peak_rss_mb() -> float:
    # ru_maxrss is in KiB on Linux, bytes on macOS
    scale = 1 if platform.system() == "Darwin" else 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale / 2**20


def _current_rss_mb() -> float:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return float("nan")


def _run_case(case: dict) -> dict:
    import torch

    from fusion.models import create_model, fuse_tensors
    from fusion.utils.device import resolve_device

    if case["threads"]:
        torch.set_num_threads(case["threads"])
    device = resolve_device(case["device"])
    torch.manual_seed(0)
    model = create_model(case["model"]).to(device).eval()
    w, h = case["width"], case["height"]
    a = torch.rand(1, 3, h, w, device=device)
    b = torch.rand(1, 3, h, w, device=device)
    amp = None if case["amp"] == "none" else case["amp"]

    def once() -> float:
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        t0 = time.perf_counter()
        fuse_tensors(model, a, b, "vif", compat=case["mode"], batch_size=case["batch_size"], amp_dtype=amp)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        return time.perf_counter() - t0

    rss_before = _current_rss_mb()  # weights, inputs and the torch runtime, before any forward
    for _ in range(case["warmup"]):
        once()
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    times = [once() for _ in range(case["runs"])]
    if device.type == "cuda":
        peak, kind = torch.cuda.max_memory_allocated(device) / 2**20, "cuda_max_allocated"
    else:
        peak, kind = _peak_rss_mb(), "process_peak_rss"
    return {
        "model": case["model"], "device": str(device), "mode": case["mode"], "amp": case["amp"],
        "size": f"{w}x{h}", "batch_size": case["batch_size"], "warmup": case["warmup"], "runs": case["runs"],
        "mean_s": round(sum(times) / len(times), 4), "min_s": round(min(times), 4), "peak_mem_mb": round(peak, 1),
        "mem_kind": kind, "rss_before_mb": round(rss_before, 1),
        "params_m": round(model.count_parameters(trainable_only=False) / 1e6, 2),
        "trainable_m": round(model.count_parameters() / 1e6, 3), "threads": torch.get_num_threads(),
        "torch": torch.__version__,
    }


def _markdown(rows: list[dict]) -> str:
    head = ["model", "device", "mode", "amp", "mean s/pair", "min s/pair", "peak MB", "memory measure",
            "RSS before MB", "params M"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        lines.append(f"| {r['model']} | {r['device']} | {r['mode']} | {r['amp']} | {r['mean_s']:.3f} | "
                     f"{r['min_s']:.3f} | {r['peak_mem_mb']:.0f} | {r['mem_kind']} | {r['rss_before_mb']:.0f} | "
                     f"{r['params_m']} |")
    size = rows[0]["size"] if rows else "?"
    return (f"# TC-MoA speed ({size} pair, random weights)\n\n" + "\n".join(lines) +
            f"\n\nwarm-up {rows[0]['warmup'] if rows else '?'}, timed runs {rows[0]['runs'] if rows else '?'}, "
            f"torch {rows[0]['torch'] if rows else '?'}, {rows[0]['threads'] if rows else '?'} CPU threads.\n")


def main(argv: list[str] | None = None) -> int:
    args = _parse_args(argv)
    if args.child:
        print(json.dumps(_run_case(json.loads(args.child))))
        return 0
    setup_script_logging()
    import torch

    from fusion.utils.device import resolve_device

    device = resolve_device(args.device)
    models = [m.strip() for m in args.models.split(",") if m.strip()]
    models = [m if m.startswith("tcmoa_") else f"tcmoa_{m}" for m in models]
    for m in models:
        if m not in ("tcmoa_tiny", "tcmoa_small", "tcmoa_base", "tcmoa_large"):
            raise ConfigError(f"--models: unknown model {m!r} (tiny, small, base, large)")
    modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    if any(m not in ("default", "official") for m in modes):
        raise ConfigError(f"--modes: expected default and/or official, got {args.modes!r}")
    amps = [a.strip() for a in (args.amp or ("none,bf16" if device.type == "cuda" else "none")).split(",")]
    if any(a not in ("none", "bf16", "fp16") for a in amps):
        raise ConfigError(f"--amp: expected none, bf16, fp16, got {args.amp!r}")
    try:
        width, height = (int(v) for v in args.size.lower().split("x"))
    except ValueError:
        raise ConfigError(f"--size: expected WxH, got {args.size!r}") from None
    warmup = 1 if args.warmup is None else args.warmup
    runs = args.runs or (10 if device.type == "cuda" else 2)
    if runs < 1 or warmup < 0:
        raise ConfigError("--runs must be >= 1 and --warmup >= 0")

    rows = []
    for model in models:
        for mode in modes:
            for amp in amps:
                case = {"model": model, "device": str(device), "mode": mode, "amp": amp, "width": width,
                        "height": height, "warmup": warmup, "runs": runs, "batch_size": args.batch_size,
                        "threads": args.threads}
                log.info("running %s %s amp=%s on %s", model, mode, amp, device)
                proc = subprocess.run([sys.executable, __file__, "--child", json.dumps(case)], capture_output=True,
                                      text=True, check=False)
                if proc.returncode != 0:
                    tail = (proc.stderr.strip().splitlines() or ["no output"])[-1]
                    log.error("%s %s amp=%s failed: %s", model, mode, amp, tail)
                    continue
                row = json.loads(proc.stdout.strip().splitlines()[-1])
                log.info("%s %s amp=%s: %.3f s/pair, peak %.0f MB", model, mode, amp, row["mean_s"],
                         row["peak_mem_mb"])
                rows.append(row)
    out = Path(args.out)
    csv_lines = [",".join(FIELDS)] + [",".join(str(r[f]) for f in FIELDS) for r in rows]
    atomic_write_text(out / "bench_model.csv", "\n".join(csv_lines) + "\n")
    atomic_write_text(out / "bench_model.md", _markdown(rows))
    log.info("wrote %s and %s (torch %s)", out / "bench_model.csv", out / "bench_model.md", torch.__version__)
    return 0 if rows else 1


if __name__ == "__main__":
    run_cli(main)
