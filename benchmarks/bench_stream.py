#!/usr/bin/env python
"""Streaming overhead: does the pipeline deliver the fuser's own frame rate?

For each method, the same N frame pairs are fused twice, alternately, for ``--rounds`` rounds:

* **fuser only**: frames decoded into memory beforehand, then ``fuse``/``fuse_batch`` in a loop (the ceiling);
* **pipeline**: the full streaming pipeline from the video files (reader threads, pairing, registration, fusion,
  video writing, temporal measures), frames per second over its whole run.

``ratio = median pipeline FPS / median fuser-only FPS``, measured in the same process on the same frames; the goal is
>= 0.9. A fuser that costs less than decoding and encoding a frame (e.g. ``average``) cannot reach it: the pipeline
is then bound by video I/O, which the table shows in the read/write columns.

Writes ``bench_stream.csv`` and ``bench_stream.md`` to ``--out``.

Example::

    python benchmarks/bench_stream.py --method gff --method dwt --frames 60 --out runs/bench_stream
"""

from __future__ import annotations

import argparse
import csv
import io
import os
import statistics
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

from fusion.errors import InputError  # noqa: E402
from fusion.utils.cli import run_cli  # noqa: E402
from fusion.utils.logging import get_logger, setup_script_logging  # noqa: E402

log = get_logger("bench_stream")

SHARED = Path(os.environ.get("TCMOA_SHARED_DATA", ROOT.parent / "shared" / "data"))
DEFAULT_CLIP = "1230_1202"
DEFAULT_SIZES = ("320x240", "640x480")  # common thermal cores, and the clip's own size
COLUMNS = [
    "method", "size", "device", "precision", "batch", "frames", "rounds", "fuser_fps", "pipeline_fps", "ratio",
    "meets_0.9",
    "fuse_ms", "read_ms", "write_ms", "temporal_ms", "temporal_measured", "latency_p50_ms", "latency_p99_ms",
]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    clip = SHARED / "video_m3svd"
    p.add_argument("--ir", default=str(clip / "infrared" / f"{DEFAULT_CLIP}.mp4"), help="infrared video")
    p.add_argument("--vis", default=str(clip / "visible" / f"{DEFAULT_CLIP}.mp4"), help="visible video")
    p.add_argument("--method", action="append", help="fuser (repeatable; default: gff and tcmoa_tiny)")
    p.add_argument("--frames", type=int, default=200, help="frame pairs per measurement (start-up is included)")
    p.add_argument("--rounds", type=int, default=2, help="alternating fuser-only / pipeline rounds")
    p.add_argument("--batch", type=int, default=1)
    p.add_argument("--device", default="auto")
    p.add_argument("--precision", default="fp32", choices=("fp32", "bf16", "fp16"))
    p.add_argument("--no-temporal", action="store_true", help="pipeline without the temporal measures")
    p.add_argument("--size", action="append", default=None,
                   help="WxH to resize the clip to before both measurements (repeatable; default: 320x240, the "
                        "resolution of common thermal cores, and 640x480)")
    p.add_argument("--out", required=True, help="folder for bench_stream.csv / .md (and the fused test videos)")
    p.add_argument("-v", "--verbose", action="store_true")
    args = p.parse_args(argv)
    if args.frames < 2 or args.rounds < 1 or args.batch < 1:
        p.error("--frames must be >= 2, --rounds and --batch >= 1")
    return args


def _decode(path: str, n: int) -> list:
    from fusion.stream.temporal import read_video_frames

    return list(read_video_frames(path, n))


def _fuser_only(fuser, vis: list, ir: list, batch: int) -> float:
    t0 = time.perf_counter()
    for k in range(0, len(vis), batch):
        if batch == 1:
            fuser.fuse(vis[k], ir[k], "vif")
        else:
            fuser.fuse_batch(vis[k : k + batch], ir[k : k + batch], "vif")
    _sync()
    return len(vis) / (time.perf_counter() - t0)


def _sync() -> None:
    import torch

    if torch.cuda.is_available():
        torch.cuda.synchronize()


def _resized_clip(src: str, size: tuple[int, int], n: int, dest: Path) -> str:
    """The first ``n`` frames of ``src`` resized to ``size`` (W, H), written once as an MP4 in the output folder."""
    import cv2

    if dest.is_file():
        return str(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    cap = cv2.VideoCapture(src)
    fps = cap.get(cv2.CAP_PROP_FPS) or 25.0
    tmp = dest.with_name(dest.stem + ".partial.mp4")
    writer = cv2.VideoWriter(str(tmp), cv2.VideoWriter_fourcc(*"mp4v"), fps, size)
    count = 0
    while count < n:
        ok, frame = cap.read()
        if not ok:
            break
        writer.write(cv2.resize(frame, size, interpolation=cv2.INTER_AREA))
        count += 1
    cap.release()
    writer.release()
    tmp.replace(dest)
    return str(dest)


def _parse_size(text: str) -> tuple[int, int]:
    try:
        w, h = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise InputError(f"--size: expected WxH, got {text!r}") from None
    if w < 16 or h < 16:
        raise InputError(f"--size: {text!r} is too small")
    return w, h


def bench_method(method: str, args: argparse.Namespace, out_dir: Path, size: tuple[int, int] | None = None) -> dict:
    import cv2

    from fusion.stream import StreamConfig, StreamPipeline, build_stream_fuser

    vis_path, ir_path = args.vis, args.ir
    if size is not None:
        vis_path = _resized_clip(args.vis, size, args.frames, out_dir / "clips" / f"vis_{size[0]}x{size[1]}.mp4")
        ir_path = _resized_clip(args.ir, size, args.frames, out_dir / "clips" / f"ir_{size[0]}x{size[1]}.mp4")
    vis = _decode(vis_path, args.frames)
    ir = _decode(ir_path, args.frames)
    n = min(len(vis), len(ir))
    if n < 2:
        raise InputError(f"{args.vis}, {args.ir}: fewer than 2 frames decoded")
    vis, ir = vis[:n], ir[:n]
    h, w = vis[0].shape[:2]
    ir = [f if f.shape[:2] == (h, w) else cv2.resize(f, (w, h)) for f in ir]
    fuser = build_stream_fuser(method, device=args.device, precision=args.precision)
    for k in range(min(2, n)):  # warm-up (kernels, caches) before either measurement
        fuser.fuse(vis[k], ir[k], "vif")
    only, piped, last = [], [], {}
    for r in range(args.rounds):
        only.append(_fuser_only(fuser, vis, ir, args.batch))
        cfg = StreamConfig(batch=args.batch, max_frames=n, progress=False, temporal=not args.no_temporal,
                           handle_sigint=False)
        pipe = StreamPipeline(vis_path, ir_path, fuser, config=cfg,
                              outputs=[out_dir / f"bench_{_safe(method)}_{w}x{h}.mp4"])
        last = pipe.run()
        if last["frames_out"] != n:
            raise InputError(f"pipeline fused {last['frames_out']} frames, expected {n}")
        piped.append(last["fps"])
        log.info("%s round %d: fuser-only %.2f FPS, pipeline %.2f FPS", method, r + 1, only[-1], piped[-1])
    f_fps, p_fps = statistics.median(only), statistics.median(piped)
    st = last["stages_ms"]
    ratio = p_fps / f_fps
    return {
        "method": method, "size": f"{w}x{h}",
        "device": str(args.device), "precision": args.precision, "batch": args.batch, "frames": n,
        "rounds": args.rounds, "fuser_fps": round(f_fps, 2), "pipeline_fps": round(p_fps, 2),
        "ratio": round(ratio, 3), "meets_0.9": ratio >= 0.9,
        "fuse_ms": st["fuse"].get("mean_ms"),
        "read_ms": round((st["read_vis"].get("mean_ms") or 0) + (st["read_ir"].get("mean_ms") or 0), 3),
        "write_ms": st["write"].get("mean_ms"), "temporal_ms": st["temporal"].get("mean_ms"),
        # share of frame transitions the low-priority temporal thread measured (it skips rather than slow the stream)
        "temporal_measured": round((last["temporal"] or {}).get("transitions", 0) / (n - 1), 3),
        "latency_p50_ms": last["latency_ms"].get("p50_ms"), "latency_p99_ms": last["latency_ms"].get("p99_ms"),
    }


def _safe(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_" else "_" for c in name)[:60]


def _markdown(rows: list[dict]) -> str:
    import platform

    lines = [
        "# Streaming pipeline vs fuser-only frame rate",
        "",
        f"Machine: {platform.machine()}, {os.cpu_count()} CPU(s), Python {platform.python_version()}. "
        "Pipeline FPS over the whole run (start-up included) from the video files; fuser-only FPS on the same frames "
        "pre-decoded in memory; medians over the rounds.",
        "",
        "| " + " | ".join(COLUMNS) + " |",
        "|" + "---|" * len(COLUMNS),
    ]
    for r in rows:
        lines.append("| " + " | ".join(str(r[c]) for c in COLUMNS) + " |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    setup_script_logging(args.verbose)
    from fusion.stream import check_output_location
    from fusion.utils.io import atomic_write_text

    for src in (args.ir, args.vis):
        if not Path(src).is_file():
            raise InputError(f"{src}: no such video (pass --ir/--vis or set TCMOA_SHARED_DATA)")
    out_dir = Path(args.out)
    check_output_location(out_dir / "bench_stream.csv", [args.ir, args.vis])
    out_dir.mkdir(parents=True, exist_ok=True)
    sizes = [_parse_size(s) for s in (args.size or DEFAULT_SIZES)]
    rows = [bench_method(m, args, out_dir, size) for m in (args.method or ["gff", "tcmoa_tiny"]) for size in sizes]
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=COLUMNS)
    writer.writeheader()
    writer.writerows(rows)
    atomic_write_text(out_dir / "bench_stream.csv", buf.getvalue())
    md = _markdown(rows)
    atomic_write_text(out_dir / "bench_stream.md", md)
    print(md)
    return 0


if __name__ == "__main__":
    run_cli(main)
