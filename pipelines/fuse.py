"""Fuse a pair, two folders, or a whole dataset (in its original layout) with any fusion method.

Examples (``tcmoa-fuse`` is ``python pipelines/fuse.py``)::

    tcmoa-fuse ../shared/data/tno --method average --out runs/tno_average
    tcmoa-fuse /data/LLVIP --split test --method tcmoa_base:ckpt.pth --color ycbcr --out runs/llvip
    tcmoa-fuse --a vis/ --b ir/ --method maximum --out runs/pairs --grid
    tcmoa-fuse --a over.jpg --b under.jpg --task mef --method mertens --out runs/one
    tcmoa-fuse --a vis/ --b ir/ --method laplacian fuser.levels=5 --out runs/lap5
    torchrun --nproc_per_node 4 pipelines/fuse.py /data/LLVIP --method tcmoa_base:ckpt.pth --out runs/llvip

Source roles: vif a = visible, b = infrared; mef a = over-exposed, b = under-exposed; mff a = far, b = near focus.
Bad input (missing partner, unreadable file, sizes that differ, existing output...) stops the run before anything is
written, with a one-line error and exit status 2.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from fusion.data.layouts import (
    LAYOUT_ALIASES,
    LAYOUTS,
    detect_layout,
    list_folder_pairs,
    list_pairs,
    resolve_layout_name,
)
from fusion.errors import ConfigError
from fusion.fusers.color import CHROMA_SOURCES, COLOR_MODES
from fusion.fusers.spec import FuserSpec, build_fuser
from fusion.runners.batch import COMPAT_MODES, FuseOptions, fuse_pairs
from fusion.runners.dist import DistContext
from fusion.tasks import TASKS
from fusion.utils.cli import legacy_overrides, parse_overrides, pop_section, run_cli, script_positionals
from fusion.utils.logging import setup_script_logging


def build_parser() -> argparse.ArgumentParser:
    layouts = ", ".join([*LAYOUTS, *LAYOUT_ALIASES])
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        epilog=f"layouts: {layouts}",
        formatter_class=argparse.RawTextHelpFormatter,
    )
    p.add_argument("source", nargs="?", help="dataset root (layout detected, or --layout)")
    p.add_argument("overrides", nargs="*", metavar="fuser.KEY=VALUE", help="a method setting, e.g. fuser.levels=5")
    p.add_argument("--a", type=Path, help="source-a file or folder (visible / over-exposed / far focus)")
    p.add_argument("--b", type=Path, help="source-b file or folder (infrared / under-exposed / near focus)")
    p.add_argument("--method", required=True, help="fusion method: average, maximum, ..., tcmoa_base:<checkpoint>")
    p.add_argument("--set", dest="legacy_set", action="append", default=[], help=argparse.SUPPRESS)  # fuser.K=V
    p.add_argument("--out", required=True, type=Path, help="output folder (never inside an input folder)")
    p.add_argument("--layout", help="dataset layout (default: detected)")
    p.add_argument("--split", help="one split or subset (train, test, MRI_PET, ...); default: all")
    p.add_argument("--task", choices=TASKS, help="task (default: from the layout; vif for --a/--b)")
    p.add_argument("--color", choices=COLOR_MODES, default="rgb", help="rgb: official RGB fusion; ycbcr: fuse luma")
    p.add_argument("--chroma", choices=CHROMA_SOURCES, default="auto", help="chroma source for --color ycbcr")
    p.add_argument("--resize", choices=["b_to_a", "a_to_b"], help="resize pairs of different sizes")
    p.add_argument("--compat", choices=(*COMPAT_MODES, "none"), default="default",
                   help="official: min-max stretch like scipy ('none' is the earlier name of 'default')")
    p.add_argument("--ext", help="output extension (default: that of source a)")
    p.add_argument("--grid", action="store_true", help="also write a | b | fused pictures and a contact sheet")
    p.add_argument("--batch-size", type=int, default=1)
    p.add_argument("--device", default="auto", help="cpu, cuda, cuda:N or auto (torchrun: cuda:LOCAL_RANK)")
    group = p.add_mutually_exclusive_group()
    group.add_argument("--overwrite", action="store_true", help="replace existing outputs")
    group.add_argument("--skip-existing", action="store_true", help="keep existing outputs (resume a run)")
    p.add_argument("--no-progress", action="store_true")
    p.add_argument("-v", "--verbose", action="store_true")
    return p


def parse_args(argv: list[str] | None = None) -> tuple[argparse.Namespace, dict]:
    """The options, with ``args.source`` the dataset root (or ``None``), and the fuser settings."""
    args = build_parser().parse_intermixed_args(argv)
    setup_script_logging(args.verbose)
    plain, tokens = script_positionals([args.source, *args.overrides], max_plain=1, plain_name="dataset root")
    args.source = plain[0] if plain else None
    opts = parse_overrides([*legacy_overrides(args.legacy_set, option="--set", section="fuser"), *tokens])
    settings = pop_section(opts, "fuser")
    if opts:
        raise ConfigError(f"unknown option {next(iter(opts))!r}: the overrides here are fuser.<setting>=<value>")
    return args, settings


def main(argv: list[str] | None = None) -> int:
    args, settings = parse_args(argv)
    ctx = DistContext.from_env()

    layout = None
    if args.source and (args.a or args.b):
        raise ConfigError("give a dataset root or --a/--b, not both")
    if args.source:
        layout = resolve_layout_name(args.layout) if args.layout else detect_layout(args.source, args.task)
        pairs = list_pairs(args.source, layout=layout, split=args.split, task=args.task)
        roots = [Path(args.source)]
    elif args.a and args.b:
        if args.layout or args.split:
            raise ConfigError("--layout and --split apply to a dataset root, not to --a/--b")
        pairs = list_folder_pairs(args.a, args.b, task=args.task or "vif")
        roots = [p if p.is_dir() else p.parent for p in (args.a, args.b)]
    else:
        raise ConfigError("give a dataset root, or both --a and --b")

    options = FuseOptions(
        out_dir=args.out,
        overwrite=args.overwrite,
        skip_existing=args.skip_existing,
        compat=args.compat,
        grid=args.grid,
        batch_size=args.batch_size,
        resize=args.resize,
        ext=args.ext,
        progress=not args.no_progress,
    )
    ctx.init(backend="gloo")  # the runner's collectives are on CPU tensors whatever device fuses
    try:
        ctx = ctx.with_device(args.device)
        device = ctx.device
        fuser = build_fuser(
            args.method,
            device=device,
            color=args.color,
            chroma=args.chroma,
            compat=args.compat,
            **settings,
        )
        meta = {
            "source": str(args.source) if args.source else {"a": str(args.a), "b": str(args.b)},
            "layout": layout,
            "split": args.split,
            "color": args.color,
            "device": str(device),
        }
        spec = FuserSpec.parse(args.method, settings)
        fuse_pairs(pairs, fuser, options, task=args.task, input_roots=roots, meta=meta, ctx=ctx, spec=spec,
                   key_context={"color": args.color, "chroma": args.chroma})
    finally:
        ctx.close()
    return 0


def cli() -> None:
    """The console command ``tcmoa-fuse``."""
    run_cli(main)


if __name__ == "__main__":
    run_cli(main)
