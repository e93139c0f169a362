"""The GPU check: reduced-precision correctness on real pairs and a throughput table, in one run of under 8 minutes.

Prepared for the few minutes a GPU machine is lent (H100/H200); run it from the repository root:

    PYTHONPATH=. python benchmarks/gpu_check.py --out $OUT            # everything (about 5 minutes on an H100)
    PYTHONPATH=. python benchmarks/gpu_check.py --models tiny --no-compile --out /tmp/gpu   # a quick look

1. **Correctness.** ``tcmoa_tiny`` and ``tcmoa_base`` with random weights (every block computed, as in a trained
   backbone; the shipped tiny's analytic codec refuses reduced precision) fuse real infrared/visible pairs
   (``--data``: the VIFB/TNO/MSRS samples of ``../shared/data`` when present, else the synthetic scenes of
   ``fusion.data.synthetic``) in float32, bf16 and fp16 autocast; the table gives the largest pixel difference
   to float32 and the relative change of SSIM and Qabf (``vifb`` profile) against float32 (band: 0.5%).
2. **Throughput** at 640x480 for ``tiny``, ``base`` and ``large`` (random weights): the official-style forward
   (``fusion.models.reference``, the literal re-statement of the official code, with the official four-tile
   predict strategy under fp16 autocast, as the official ``main_predict.py`` runs on a GPU) against ours on the
   default whole-frame path in fp32, bf16, bf16 + ``torch.compile`` and bf16 + ``torch.compile`` with CUDA graphs
   (``mode="reduce-overhead"``); latency (batch 1), frames per second at ``--batch`` frames per call, peak memory
   (``torch.cuda.max_memory_allocated``) and the ratio against the official-style forward.

Writes ``gpu_check.md`` and ``gpu_check.csv`` to ``--out``. Cases that would pass the time budget
(``--budget-s``, 420 s) are skipped and listed as such, so that the run ends inside the lease.
"""

from __future__ import annotations

import argparse
import csv
import io
import os
import statistics
import sys
import time
from functools import partial
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]


def _parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", required=True, help="folder for gpu_check.md / gpu_check.csv")
    p.add_argument("--models", default="tiny,base,large", help="comma list for the throughput table")
    p.add_argument("--data", default=os.environ.get("TCMOA_SHARED_DATA", str(ROOT.parent / "shared" / "data")),
                   help="the shared samples folder (synthetic scenes when missing)")
    p.add_argument("--pairs", type=int, default=6, help="real pairs for the correctness table")
    p.add_argument("--batch", type=int, default=8, help="frames per call for the fps column")
    p.add_argument("--runs", type=int, default=10, help="timed calls per case (median)")
    p.add_argument("--budget-s", type=float, default=420.0, help="skip cases that would start after this")
    p.add_argument("--no-compile", action="store_true", help="skip the torch.compile cases")
    p.add_argument("--device", default="cuda", help=argparse.SUPPRESS)  # "cpu": the test suite's smoke run
    return p.parse_args(argv)


def _pairs(data: Path, n: int) -> list[tuple[str, np.ndarray, np.ndarray]]:
    """Up to ``n`` real (name, visible, infrared) uint8 RGB pairs; synthetic scenes when no sample folder exists."""
    from fusion.data.pairs import pair_folders
    from fusion.utils.io import read_image

    per_set: list[list[tuple[str, np.ndarray, np.ndarray]]] = []
    for sub in ("vifb", "tno", "msrs"):
        if (data / sub / "vis").is_dir() and (data / sub / "ir").is_dir():
            pairs = pair_folders(data / sub / "vis", data / sub / "ir", task="vif", unpaired="skip")
            per_set.append([(f"{sub}/{p.name}", _rgb(read_image(p.a)), _rgb(read_image(p.b))) for p in pairs])
    out = [pair for group in zip(*per_set) for pair in group][:n] if per_set else []
    if out:
        return out
    from fusion.data.synthetic import render_scene

    scenes = [render_scene(i, seed=0, height=480, width=640) for i in range(n)]
    return [(f"synthetic/{i}", s.vis, _rgb(s.ir)) for i, s in enumerate(scenes)]


def _rgb(img: np.ndarray) -> np.ndarray:
    return np.repeat(img[..., None], 3, axis=2) if img.ndim == 2 else img[..., :3]


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def _timed(call, runs: int, device: str) -> tuple[float, float]:
    call()
    _sync(device)
    if device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()
    times = []
    for _ in range(runs):
        _sync(device)
        t0 = time.perf_counter()
        call()
        _sync(device)
        times.append(time.perf_counter() - t0)
    peak = torch.cuda.max_memory_allocated() / 2**20 if device.startswith("cuda") else float("nan")
    return statistics.median(times), peak


def correctness(args: argparse.Namespace) -> list[dict]:
    from fusion.fusers.base import create_fuser
    from fusion.metrics import evaluate
    from fusion.models import create_model
    from fusion.models.reference import randomize

    pairs = _pairs(Path(args.data), args.pairs)
    rows = []
    torch.manual_seed(0)
    dev = args.device
    builders = []
    for short in ("tiny", "base"):  # random weights: every block computed, as in a trained model
        if short not in args.models:
            continue
        net = create_model(f"tcmoa_{short}").to(dev).eval()
        randomize(net, seed=0)
        builders.append((f"tcmoa_{short} (random)", partial(create_fuser, f"tcmoa_{short}", device=dev, model=net)))
    for label, build in builders:
        ref = build(amp_dtype=None)
        fused32 = {name: ref.fuse(v, i, "vif") for name, v, i in pairs}
        scores32 = {name: evaluate(fused32[name], i, v, profile="vifb", metrics=["SSIM", "Qabf"])
                    for name, v, i in pairs}
        for amp in ("bf16", "fp16") if dev.startswith("cuda") else ("bf16",):
            fuser = build(amp_dtype=amp)
            diff, d_ssim, d_qabf = 0, [], []
            for name, v, i in pairs:
                out = fuser.fuse(v, i, "vif")
                diff = max(diff, int(np.abs(out.astype(int) - fused32[name].astype(int)).max()))
                s = evaluate(out, i, v, profile="vifb", metrics=["SSIM", "Qabf"])
                d_ssim.append(abs(s["SSIM"] / scores32[name]["SSIM"] - 1))
                d_qabf.append(abs(s["Qabf"] / scores32[name]["Qabf"] - 1))
            rows.append({"model": label, "amp": amp, "pairs": len(pairs), "max_pixel_diff": diff,
                         "ssim_change_pct": round(100 * max(d_ssim), 3),
                         "qabf_change_pct": round(100 * max(d_qabf), 3),
                         "within_0.5pct": max(d_ssim) <= 0.005 and max(d_qabf) <= 0.005})
            print(rows[-1], flush=True)
    return rows


def throughput(args: argparse.Namespace, t_start: float) -> list[dict]:
    from fusion.models import create_model, fuse_tensors
    from fusion.models.reference import ReferenceTCMoA, randomize

    rows: list[dict] = []
    h, w = 480, 640
    dev = args.device
    for short in [m.strip() for m in args.models.split(",") if m.strip()]:
        name = short if short.startswith("tcmoa_") else f"tcmoa_{short}"
        torch.manual_seed(0)
        model = create_model(name).to(dev).eval()
        randomize(model, seed=0)
        one = torch.rand(1, 3, h, w, device=dev), torch.rand(1, 3, h, w, device=dev)
        many = torch.rand(args.batch, 3, h, w, device=dev), torch.rand(args.batch, 3, h, w, device=dev)
        reference = ReferenceTCMoA(model)
        official_amp = "fp16" if dev.startswith("cuda") else "bf16"
        cases = [(f"official-style forward, 4 tiles, {official_amp} autocast", reference, "official", official_amp,
                  None),
                 ("ours whole frame fp32", model, "default", None, None),
                 ("ours whole frame bf16", model, "default", "bf16", None)]
        if not args.no_compile:
            cases += [("ours bf16 + torch.compile", model, "default", "bf16", "default"),
                      ("ours bf16 + torch.compile + CUDA graphs", model, "default", "bf16", "reduce-overhead")]
        baseline = None
        for label, target, compat, amp, compile_mode in cases:
            if time.perf_counter() - t_start > args.budget_s:
                rows.append({"model": name, "case": label, "skipped": "time budget"})
                continue
            net = target
            if compile_mode:
                torch._dynamo.reset()
                net = _CompiledView(model, torch.compile(model, mode=compile_mode, dynamic=False))
            try:
                lat, mem1 = _timed(partial(fuse_tensors, net, *one, "vif", compat=compat, amp_dtype=amp),
                                   args.runs, dev)
                per_call, mem = _timed(partial(fuse_tensors, net, *many, "vif", compat=compat, amp_dtype=amp,
                                               batch_size=args.batch), max(3, args.runs // 3), dev)
            except Exception as exc:  # noqa: BLE001 - report the case, keep the run going
                rows.append({"model": name, "case": label, "skipped": f"{type(exc).__name__}: {exc}"[:200]})
                continue
            fps = args.batch / per_call
            baseline = baseline or fps
            rows.append({"model": name, "case": label, "latency_ms": round(lat * 1e3, 2), "fps": round(fps, 1),
                         "peak_mem_mb": round(max(mem, mem1)) if mem == mem else "",
                         "ratio": round(fps / baseline, 2), "skipped": ""})
            print(rows[-1], flush=True)
        del model, reference
        if dev.startswith("cuda"):
            torch.cuda.empty_cache()
    return rows


class _CompiledView(torch.nn.Module):
    """A compiled model with the attributes ``fuse_tensors`` reads (config, train/eval, parameters)."""

    def __init__(self, model: torch.nn.Module, compiled) -> None:
        super().__init__()
        self.inner = model
        self.config = model.config
        self._compiled = compiled

    def forward(self, *args, **kwargs):
        return self._compiled(*args, **kwargs)


def _table(rows: list[dict], cols: list[str]) -> str:
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    lines += ["| " + " | ".join(str(r.get(c, "")) for c in cols) + " |" for r in rows]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = _parse_args(argv)
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        print("gpu_check.py: no CUDA device; run it on the GPU machine", file=sys.stderr)
        return 2
    t_start = time.perf_counter()
    torch.backends.cuda.matmul.allow_tf32 = False  # fp32 means fp32 here
    gpu = torch.cuda.get_device_name(0) if args.device.startswith("cuda") else f"CPU ({os.cpu_count()} cores)"
    print(f"{gpu}, torch {torch.__version__}, CUDA {torch.version.cuda}", flush=True)
    corr = correctness(args)
    thr = throughput(args, t_start)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    md = (f"# GPU check on {gpu}\n\ntorch {torch.__version__}, CUDA {torch.version.cuda}, "
          f"{time.perf_counter() - t_start:.0f} s in all.\n\n## Reduced precision against float32\n\n"
          + _table(corr, ["model", "amp", "pairs", "max_pixel_diff", "ssim_change_pct", "qabf_change_pct",
                          "within_0.5pct"])
          + f"\n\n## Throughput at 640x480 (fps at {args.batch} frames per call, latency at 1)\n\n"
          + _table(thr, ["model", "case", "latency_ms", "fps", "ratio", "peak_mem_mb", "skipped"]) + "\n")
    (out / "gpu_check.md").write_text(md)
    buf = io.StringIO()
    cols = ["section", "model", "case", "amp", "pairs", "max_pixel_diff", "ssim_change_pct", "qabf_change_pct",
            "within_0.5pct", "latency_ms", "fps", "ratio", "peak_mem_mb", "skipped"]
    writer = csv.DictWriter(buf, fieldnames=cols, extrasaction="ignore")
    writer.writeheader()
    writer.writerows([{"section": "correctness", **r} for r in corr] + [{"section": "throughput", **r} for r in thr])
    (out / "gpu_check.csv").write_text(buf.getvalue())
    print(md)
    return 0


if __name__ == "__main__":
    sys.exit(main())
