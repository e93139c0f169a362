"""Score fused images (or fusers run on the fly) with the fusion metrics of one profile.

Examples (``tcmoa-eval-fusion`` is ``python pipelines/eval_fusion.py``)::

    # folders of fused results, one subfolder per method, TNO-style file names matching the sources
    tcmoa-eval-fusion --ir data/tno/ir --vis data/tno/vis --fused data/tno/fused \\
        --profile tang_legacy --out runs/eval_tno

    # VIFB naming <image>_<Method>.jpg in one folder
    tcmoa-eval-fusion --ir vifb/ir --vis vifb/vis --fused vifb/fused \\
        --fused-pattern "{image}_{method}.jpg" --profile vifb --out runs/eval_vifb

    # classical baselines computed on the fly, next to two named result folders
    tcmoa-eval-fusion --ir ir --vis vis --fused ours=results/ours,old=results/old --methods ours,average,gff \\
        --out runs/x

    # fused videos: temporal consistency on every transition (flicker, occlusion-masked warping error with both
    # sources' motion, fidelity), the two sources scored as references
    tcmoa-eval-fusion --video --vis vis.mp4 --ir ir.mp4 --fused tcmoa_tiny=runs/a.mp4,gff=runs/b.mp4 --out runs/t

Lists (``--fused``, ``--methods``, ``--metrics``) are comma-separated (``--fused`` also takes several words).

Writes ``metrics_<profile>.csv`` (per image; re-running resumes), ``summary_<profile>.md`` (mean ± std per
method) and ``bar_<profile>.png`` / ``box_<profile>.png`` into ``--out``; with ``--video``, ``temporal_video.csv``
and ``temporal_video.md`` (definitions: ``fusion.stream.temporal``).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from tqdm import tqdm

from fusion.errors import ConfigError, InputError
from fusion.metrics import get_profile, list_profiles
from fusion.metrics.report import EvalConfig, run_evaluation
from fusion.tasks import TASKS
from fusion.utils.cli import comma_list, parse_overrides, pop_section, run_cli, script_positionals, split_list_overrides
from fusion.utils.logging import setup_script_logging


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--ir", required=True, type=Path, help="folder of infrared (first source) images (a video with "
                   "--video)")
    p.add_argument("--vis", required=True, type=Path, help="folder of visible (second source) images (a video with "
                   "--video)")
    p.add_argument("--video", action="store_true",
                   help="score fused videos (--fused NAME=VIDEO,...) for temporal consistency on every transition")
    p.add_argument("--max-side", type=int, default=320, help="--video: frame size (longer side) for the measures")
    p.add_argument("overrides", nargs="*", metavar="fuser.KEY=VALUE",
                   help="settings of the on-the-fly fusers, e.g. fuser.levels=5")
    p.add_argument("--fused", nargs="*", action="extend", default=[],
                   help="comma list of NAME=DIR, or DIR (method subfolders / a method folder)")
    p.add_argument("--fused-pattern", help="file-name pattern inside --fused DIR, e.g. '{image}_{method}.jpg'")
    p.add_argument(
        "--methods",
        help="comma list of fusers to run on the fly and/or fused methods to keep (naming only fusers keeps every "
        "fused method)",
    )
    p.add_argument("--profile", default="tang", help=f"metric conventions: {', '.join(list_profiles())}")
    p.add_argument("--metrics", help="comma list of metrics (default: the profile's default set)")
    p.add_argument("--task", default="vif", choices=TASKS, help="task passed to on-the-fly fusers")
    p.add_argument("--out", required=True, type=Path, help="output folder (must not be inside an input folder)")
    p.add_argument("--device", default="cpu", help="cpu, cuda, cuda:N or auto")
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    p.add_argument("--jobs", type=int, default=0,
                   help="worker processes scoring pairs in parallel (0: automatic: none for fused files, whose "
                        "metrics already use every thread; one per CPU core from 64 pairs on when fusers run on the "
                        "fly; 1: none)")
    p.add_argument("--save-fused", action="store_true", help="also save on-the-fly fused images under OUT/fused")
    p.add_argument("--no-plots", action="store_true", help="skip the PNG plots")
    p.add_argument("--rank", action="store_true",
                   help="also rank every method (published folders and fusers) by mean rank over the metrics, on "
                   "the images all were scored on (rank_<profile>.md/.csv; fusers in bold)")
    p.add_argument("-v", "--verbose", action="store_true")
    return p


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The options, with ``args.fused`` a list."""
    args = build_parser().parse_intermixed_args(argv)
    setup_script_logging(args.verbose)
    args.fused, listed = split_list_overrides(args.fused)
    _, tokens = script_positionals([*listed, *args.overrides], max_plain=0, plain_name="positional arguments")
    opts = parse_overrides(tokens)
    settings = pop_section(opts, "fuser")
    if opts:
        raise ConfigError(f"unknown option {next(iter(opts))!r}: the overrides here are fuser.<setting>=<value>")
    args.fuser_settings = settings
    return args


VIDEO_COLUMNS = ["method", "transitions", "flicker_ratio", "flicker_excess", "warp_error", "warp_error_source",
                 "warp_error_excess", "occluded_share", "fidelity"]


def run_video(args: argparse.Namespace) -> int:
    """``--video``: temporal measures of fused videos on every transition, the two sources as reference rows."""
    import csv
    import io

    from fusion.stream.temporal import score_videos
    from fusion.utils.io import atomic_write_text

    fused = {}
    for item in args.fused:
        name, sep, path = item.partition("=")
        if not sep or not name or not path:
            raise ConfigError(f"--fused {item!r}: with --video give NAME=VIDEO")
        fused[name] = Path(path)
    if not fused:
        raise ConfigError("--video needs --fused NAME=VIDEO[,NAME=VIDEO...]")
    for p in [args.vis, args.ir, *fused.values()]:
        if not Path(p).is_file():
            raise InputError(f"{p}: no such video file")
    from fusion.stream import check_output_location

    check_output_location(args.out / "temporal_video.csv", [args.vis, args.ir, *fused.values()])
    rows = score_videos(args.vis, args.ir, fused, max_side=args.max_side,
                        progress=lambda it, name: tqdm(it, desc=name, unit="frame", file=sys.stderr))
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=[*VIDEO_COLUMNS, "video"], extrasaction="ignore")
    writer.writeheader()
    writer.writerows(rows)
    atomic_write_text(args.out / "temporal_video.csv", buf.getvalue())
    lines = ["| " + " | ".join(VIDEO_COLUMNS) + " |", "|" + "---|" * len(VIDEO_COLUMNS)]
    lines += ["| " + " | ".join(str(r[c]) for c in VIDEO_COLUMNS) + " |" for r in rows]
    md = ("# Temporal consistency (every transition)\n\nLower is better for flicker and warping, higher for fidelity; "
          "`vis` and `ir` are the sources themselves. Definitions: `fusion.stream.temporal`.\n\n"
          + "\n".join(lines) + "\n")
    atomic_write_text(args.out / "temporal_video.md", md)
    print(md)
    return 0


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.video:
        return run_video(args)
    if args.threads > 0:
        import torch

        torch.set_num_threads(args.threads)
    get_profile(args.profile)  # fail early on a typo
    cfg = EvalConfig(
        ir_dir=args.ir,
        vis_dir=args.vis,
        out_dir=args.out,
        profile=args.profile,
        fused=args.fused,
        fused_pattern=args.fused_pattern,
        methods=comma_list(args.methods),
        metrics=comma_list(args.metrics) or None,
        task=args.task,
        device=args.device,
        fuser_settings=args.fuser_settings,
        save_fused=args.save_fused,
        plots=not args.no_plots,
        jobs=args.jobs,
        rank=args.rank,
    )

    def progress(it, total, desc):
        return tqdm(it, total=total, desc=desc, unit="img", file=sys.stderr)

    res = run_evaluation(cfg, progress=progress)
    print(f"scored {res.scored} (method, image) pairs, {res.skipped} already done, {len(res.failed)} failed")
    print(f"per-image CSV: {res.csv_path}")
    print(f"summary table: {res.table_path}")
    if args.rank:
        rank_md = res.table_path.with_name(res.table_path.name.replace("summary_", "rank_"))
        print(rank_md.read_text())
    for p in res.plot_paths:
        print(f"plot: {p}")
    return 1 if res.failed else 0


def cli() -> None:
    """The console command ``tcmoa-eval-fusion``."""
    run_cli(main)


if __name__ == "__main__":
    run_cli(main)
