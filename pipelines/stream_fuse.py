#!/usr/bin/env python
"""Fuse an infrared and a visible stream live into a video, an image sequence and/or a browser view.

Examples::

    python pipelines/stream_fuse.py --ir ir.mp4 --vis vis.mp4 --method gff --out runs/fused.mp4 --stats runs/s.json
    python pipelines/stream_fuse.py --ir 1 --vis 0 --method average --serve 8080          # two cameras, browser view
    python pipelines/stream_fuse.py --ir rtsp://cam/ir --vis rtsp://cam/vis --method tcmoa_base:ckpt.pth \\
        --device cuda --precision bf16 --register calib.json --detect yolo.pt --out runs/live.avi
    python pipelines/stream_fuse.py --ir ir.mp4 --vis vis.mp4 --method gff --out f.mp4 queue_size=8 fuser.levels=5

Sources: video files, image folders, camera indices, RTSP/HTTP URLs. Files are fused frame by frame (every frame);
cameras and URLs are paired by arrival time and only the newest pair is fused (bounded latency).
``--serve PORT`` shows infrared | visible | fused at http://127.0.0.1:PORT/. Ctrl-C stops cleanly: the output file
is finalised and the stats are written (exit status 130).

Options: positional ``key=value`` set any stream option (the fields of fusion.stream.StreamConfig: batch,
tolerance_s, queue_size, labels=a,b,c, ...); ``fuser.<key>=<value>`` sets a fuser setting. The flags below set the
common stream options too; giving one option both ways is an error.
"""

from __future__ import annotations

import argparse
from typing import Any

from fusion.errors import ConfigError
from fusion.stream import StreamConfig, run_stream
from fusion.stream.stats import summary_line
from fusion.utils.cli import legacy_overrides, parse_overrides, pop_section, run_cli, script_positionals
from fusion.utils.logging import get_logger, setup_script_logging

log = get_logger("stream_fuse")

_DEFAULTS = StreamConfig()

# flag dest -> (stream option, conversion of the flag's value)
_FLAG_OPTIONS: dict[str, tuple[str, Any]] = {
    "task": ("task", None),
    "batch": ("batch", None),
    "register": ("register", lambda v: None if v in ("none", "") else v),
    "register_frames": ("register_frames", None),
    "pairing": ("pairing", None),
    "tolerance_ms": ("tolerance_s", lambda v: v / 1e3),
    "stall_timeout": ("stall_timeout_s", None),
    "max_frames": ("max_frames", None),
    "fps": ("fps", None),
    "fourcc": ("fourcc", None),
    "realtime": ("realtime", None),
    "linger": ("serve_linger_s", None),
    "no_temporal": ("temporal", lambda v: not v),
    "no_progress": ("progress", lambda v: not v),
}


def build_parser() -> argparse.ArgumentParser:
    d = _DEFAULTS
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("overrides", nargs="*", metavar="KEY=VALUE",
                   help="stream option (e.g. queue_size=8, labels=ir,vis,fused) or fuser setting (fuser.levels=5)")
    p.add_argument("--ir", required=True, help="infrared source: video file, image folder, camera index or URL")
    p.add_argument("--vis", required=True, help="visible source: video file, image folder, camera index or URL")
    p.add_argument("--method", default="average", help="fuser name or name:arg (e.g. average, gff, tcmoa_base:ckpt)")
    p.add_argument("--out", help="output video (.mp4 mp4v, .avi MJPG) or folder for an image sequence")
    p.add_argument("--stats", help="write run statistics (timings, FPS, latency, drops, temporal) to this JSON file")
    p.add_argument("--set", dest="legacy_settings", action="append", default=[], help=argparse.SUPPRESS)
    p.add_argument("--device", default="auto", help="cpu, cuda, cuda:N or auto")
    p.add_argument("--precision", default="fp32", choices=("fp32", "bf16", "fp16"),
                   help="fuser precision on GPU (passed when the fuser supports it)")
    p.add_argument("--task", help=f"fusion task passed to the fuser (default {d.task})")
    p.add_argument("--batch", type=int, help=f"pairs fused per call (file sources; default {d.batch})")
    p.add_argument("--register", help="infrared->visible alignment: none (resize; default), auto (estimate once) "
                   "or a .json/.npy homography")
    p.add_argument("--register-frames", type=int, help=f"pairs used by --register auto (default {d.register_frames})")
    p.add_argument("--pairing", choices=("auto", "index", "timestamp"), help=f"default {d.pairing}")
    p.add_argument("--tolerance-ms", type=float, help=f"timestamp pairing tolerance (default {d.tolerance_s * 1e3:g})")
    p.add_argument("--stall-timeout", type=float, help="seconds without frames before a source counts as stalled "
                   f"(default {d.stall_timeout_s:g})")
    p.add_argument("--max-frames", type=int, help="stop after this many fused frames")
    p.add_argument("--fps", type=float, help="output frame rate (default: the visible source's) and image-folder rate")
    p.add_argument("--fourcc", help="video codec override (mp4v, MJPG, XVID)")
    p.add_argument("--realtime", action="store_true", default=None,
                   help="pace video files at their frame rate, like cameras")
    p.add_argument("--serve", type=int, metavar="PORT", help="serve an MJPEG view on http://127.0.0.1:PORT/")
    p.add_argument("--linger", type=float,
                   help="with --serve: keep serving this many seconds after the end (-1: until Ctrl-C; default 0)")
    g = p.add_mutually_exclusive_group()
    g.add_argument("--segment", metavar="CONFIG", help="mmsegmentation config for a segmentation overlay")
    g.add_argument("--detect", metavar="WEIGHTS", help="ultralytics .pt weights or .yaml model for a detection overlay")
    p.add_argument("--seg-checkpoint", help="checkpoint for --segment")
    p.add_argument("--trust-checkpoint", action="store_true",
                   help="allow an ultralytics .pt pickle for --detect (it can run code; only for files you trust)")
    p.add_argument("--conf", type=float, default=0.25, help="detection confidence threshold")
    p.add_argument("--imgsz", type=int, default=640, help="detection inference size")
    p.add_argument("--no-temporal", action="store_true", default=None, help="skip the temporal-consistency measures")
    p.add_argument("--no-progress", action="store_true", default=None, help="no progress bar")
    p.add_argument("-v", "--verbose", action="store_true")
    return p


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = build_parser()
    args = p.parse_intermixed_args(argv)
    if not args.out and args.serve is None:
        p.error("give --out, --serve, or both")
    return args


def stream_options(args: argparse.Namespace) -> tuple[dict[str, Any], dict[str, Any]]:
    """``(stream options, fuser settings)`` from the flags, the ``key=value`` arguments and the legacy ``--set``."""
    _, tokens = script_positionals(args.overrides, max_plain=0, plain_name="positional arguments")
    legacy = legacy_overrides(args.legacy_settings, option="--set", section="fuser")
    overrides = parse_overrides([*legacy, *tokens])  # fuser.K=V wins over --set K=V
    settings = pop_section(overrides, "fuser")
    options: dict[str, Any] = {}
    for dest, (key, convert) in _FLAG_OPTIONS.items():
        value = getattr(args, dest)
        if value is None:
            continue
        if key in overrides:
            raise ConfigError(f"{key} given twice: as --{dest.replace('_', '-')} and as {key}=")
        options[key] = convert(value) if convert else value
    options.update(overrides)
    return options, settings


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    setup_script_logging(args.verbose)
    options, settings = stream_options(args)
    perception = None
    if args.segment or args.detect:
        perception = {"segment": args.segment, "seg_checkpoint": args.seg_checkpoint, "detect": args.detect}
        if args.detect:
            perception.update(conf=args.conf, imgsz=args.imgsz, trust=args.trust_checkpoint)
    stats = run_stream(
        args.vis, args.ir, args.method, out=args.out or None, stats_file=args.stats or None, device=args.device,
        precision=args.precision, fuser_settings=settings, serve=args.serve, perceiver=perception, **options,
    )
    log.info("%s", summary_line(stats))
    return 130 if stats["interrupted"] else 0


def cli() -> None:
    """Console entry point (``tcmoa-stream``)."""
    run_cli(main)


if __name__ == "__main__":
    run_cli(main)
