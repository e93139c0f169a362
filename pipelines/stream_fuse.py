#!/usr/bin/env python
"""Fuse an infrared and a visible stream live into a video, an image sequence and/or a browser view.

Examples::

    python pipelines/stream_fuse.py --ir ir.mp4 --vis vis.mp4 --method gff --out runs/fused.mp4 --stats runs/s.json
    python pipelines/stream_fuse.py --ir 1 --vis 0 --method average --serve 8080          # two cameras, browser view
    python pipelines/stream_fuse.py --ir rtsp://cam/ir --vis rtsp://cam/vis --method tcmoa_base:ckpt.pth \\
        --device cuda --precision bf16 --register calib.json --detect yolo.pt --out runs/live.avi

Sources: video files, image folders, camera indices, RTSP/HTTP URLs. Files are fused frame by frame (every frame);
cameras and URLs are paired by arrival time and only the newest pair is fused (bounded latency).
``--serve PORT`` shows infrared | visible | fused at http://127.0.0.1:PORT/. Ctrl-C stops cleanly: the output file
is finalised and the stats are written (exit status 130).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from fusion.errors import InputError  # noqa: E402
from fusion.utils.cli import parse_overrides, run_cli  # noqa: E402
from fusion.utils.logging import get_logger, setup_script_logging  # noqa: E402

log = get_logger("stream_fuse")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--ir", required=True, help="infrared source: video file, image folder, camera index or URL")
    p.add_argument("--vis", required=True, help="visible source: video file, image folder, camera index or URL")
    p.add_argument("--method", default="average", help="fuser name or name:arg (e.g. average, gff, tcmoa_base:ckpt)")
    p.add_argument("--out", help="output video (.mp4 mp4v, .avi MJPG) or folder for an image sequence")
    p.add_argument("--stats", help="write run statistics (timings, FPS, latency, drops, temporal) to this JSON file")
    p.add_argument("--task", default="vif", help="fusion task passed to the fuser (default vif)")
    p.add_argument("--set", dest="settings", action="append", default=[], metavar="KEY=VALUE",
                   help="fuser setting (repeatable), e.g. --set levels=5")
    p.add_argument("--device", default="auto", help="cpu, cuda, cuda:N or auto")
    p.add_argument("--precision", default="fp32", choices=("fp32", "bf16", "fp16"),
                   help="fuser precision on GPU (passed when the fuser supports it)")
    p.add_argument("--batch", type=int, default=1, help="pairs fused per call (file sources)")
    p.add_argument("--register", default="none",
                   help="infrared->visible alignment: none (resize), auto (estimate once) or a .json/.npy homography")
    p.add_argument("--register-frames", type=int, default=3, help="pairs used by --register auto")
    p.add_argument("--pairing", default="auto", choices=("auto", "index", "timestamp"))
    p.add_argument("--tolerance-ms", type=float, default=50.0, help="timestamp pairing tolerance")
    p.add_argument("--stall-timeout", type=float, default=10.0, help="seconds without frames before a source counts "
                   "as stalled")
    p.add_argument("--max-frames", type=int, help="stop after this many fused frames")
    p.add_argument("--fps", type=float, help="output frame rate (default: the visible source's) and image-folder rate")
    p.add_argument("--fourcc", help="video codec override (mp4v, MJPG, XVID)")
    p.add_argument("--realtime", action="store_true", help="pace video files at their frame rate, like cameras")
    p.add_argument("--serve", type=int, metavar="PORT", help="serve an MJPEG view on http://127.0.0.1:PORT/")
    p.add_argument("--linger", type=float, default=0.0,
                   help="with --serve: keep serving this many seconds after the end (-1: until Ctrl-C)")
    g = p.add_mutually_exclusive_group()
    g.add_argument("--segment", metavar="CONFIG", help="mmsegmentation config for a segmentation overlay")
    g.add_argument("--detect", metavar="WEIGHTS", help="ultralytics .pt weights or .yaml model for a detection overlay")
    p.add_argument("--seg-checkpoint", help="checkpoint for --segment")
    p.add_argument("--trust-checkpoint", action="store_true",
                   help="allow an ultralytics .pt pickle for --detect (it can run code; only for files you trust)")
    p.add_argument("--conf", type=float, default=0.25, help="detection confidence threshold")
    p.add_argument("--imgsz", type=int, default=640, help="detection inference size")
    p.add_argument("--no-temporal", action="store_true", help="skip the temporal-consistency measures")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("-v", "--verbose", action="store_true")
    args = p.parse_args(argv)
    if not args.out and args.serve is None:
        p.error("give --out, --serve, or both")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    setup_script_logging(args.verbose)

    from fusion.stream import MjpegServer, StreamConfig, StreamPipeline, build_fuser, create_perceiver
    from fusion.stream.pipeline import check_output_location
    from fusion.utils.io import atomic_write_text

    if args.stats:
        check_output_location(args.stats, [args.ir, args.vis])
        if Path(args.stats).suffix.lower() != ".json":
            raise InputError(f"--stats {args.stats}: expected a .json file")
    cfg = StreamConfig(
        task=args.task,
        batch=args.batch,
        pairing=args.pairing,
        tolerance_s=args.tolerance_ms / 1e3,
        stall_timeout_s=args.stall_timeout,
        max_frames=args.max_frames,
        register=None if args.register in ("none", "") else args.register,
        register_frames=args.register_frames,
        fps=args.fps,
        temporal=not args.no_temporal,
        progress=not args.no_progress,
        serve_linger_s=args.linger,
        realtime=args.realtime,
        fourcc=args.fourcc,
    )
    cfg.validate()
    if args.out and args.fourcc:
        from fusion.stream.sinks import VIDEO_FOURCC

        if Path(args.out).suffix.lower() not in VIDEO_FOURCC:
            raise InputError(f"--fourcc needs a video --out, got {args.out}")
    fuser = build_fuser(args.method, device=args.device, precision=args.precision,
                        settings=parse_overrides(args.settings))
    perceiver = None
    if args.segment or args.detect:
        from fusion.utils.device import resolve_device

        dev = str(resolve_device(args.device))
        opts = {"conf": args.conf, "imgsz": args.imgsz, "trust": args.trust_checkpoint} if args.detect else {}
        perceiver = create_perceiver(args.segment, seg_checkpoint=args.seg_checkpoint, detect=args.detect,
                                     device=dev, precision=args.precision, **opts)
    server = MjpegServer(args.serve) if args.serve is not None else None
    pipe = StreamPipeline(args.vis, args.ir, fuser, config=cfg, outputs=[args.out] if args.out else [],
                          server=server, perceiver=perceiver, fps_hint=args.fps)
    stats = pipe.run()
    if args.stats:
        atomic_write_text(args.stats, json.dumps(stats, indent=2))
    lat = stats["latency_ms"]
    log.info(
        "%d frames fused by %s in %.1f s (%.1f FPS, latency p50 %s ms, p99 %s ms)%s%s",
        stats["frames_out"], stats["method"], stats["wall_s"], stats["fps"] or 0.0, lat.get("p50_ms"),
        lat.get("p99_ms"), f" -> {args.out}" if args.out else "", " [interrupted]" if stats["interrupted"] else "",
    )
    return 130 if stats["interrupted"] else 0


if __name__ == "__main__":
    run_cli(main)
