#!/usr/bin/env python
"""Does fusion help segmentation? Train/evaluate one segmenter per input and compare them in one table.

    tcmoa-seg-eval                          # synthetic demo: ir, vis, baselines, TC-MoA (CPU, minutes)
    tcmoa-seg-eval data/MFNet --inputs ir,vis,gff,tcmoa_base:ckpt/tcmoa_base.pth fuser.device=cuda
    tcmoa-seg-eval data/FMB --config configs/seg/fcn_r18-d8_fmb.py --iters 20000 train_dataloader.batch_size=4
    tcmoa-seg-eval data/MFNet --seg-checkpoint seg.pth --config configs/seg/segformer_mit-b0_mfnet.py
    torchrun --nproc_per_node 4 pipelines/seg_eval.py data/MFNet --launcher pytorch

``tcmoa-seg-eval`` is ``python pipelines/seg_eval.py``. Positional ``key=value`` words override the mmseg config
(dotted keys), ``fuser.key=value`` words are settings for every fuser. ``--config configs/seg/<name>.py`` names a
shipped config from any folder.

Outputs in --out (default runs/seg_eval): results.csv, results.md, results.png (bar chart), qualitative.png,
fused/<input>-<hash>/ (cached fused images), runs/<input>-<hash>/ (logs, checkpoints, result.json). Finished inputs are
skipped when the command is run again.
"""

from __future__ import annotations

import argparse
import os
import warnings

# OpenMP threads that spin while waiting make every step crawl when the CPU is shared; must be set before torch loads.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from fusion.errors import ConfigError  # noqa: E402
from fusion.utils.cli import (  # noqa: E402
    legacy_overrides,
    parse_overrides,
    pop_section,
    run_cli,
    script_positionals,
    split_list_overrides,
)
from fusion.utils.config import resolve_config  # noqa: E402
from fusion.utils.logging import setup_script_logging  # noqa: E402


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("data_root", nargs="?", default=None,
                   help="MFNet or FMB root in its original layout (default: synthetic MFNet-layout scenes)")
    p.add_argument("overrides", nargs="*", metavar="KEY=VALUE",
                   help="mmseg config overrides (train_dataloader.batch_size=4) and fuser settings (fuser.device=cuda)")
    p.add_argument("--inputs", nargs="+", action="extend", default=[], metavar="INPUT",
                   help="comma list of: ir, vis, a fuser spec (average, gff, tcmoa_tiny, tcmoa_base:CKPT), "
                        "folder:PATH; optionally LABEL=INPUT (default: ir,vis,average,maximum[,tcmoa_tiny])")
    p.add_argument("--config", default=None,
                   help="mmseg config, a path or configs/seg/<name>.py (default: the shipped demo or SegFormer-B0)")
    p.add_argument("--out", default="runs/seg_eval", help="output folder (default: runs/seg_eval)")
    p.add_argument("--seg-checkpoint", default=None,
                   help="evaluate this segmentation checkpoint on every input instead of training one per input")
    p.add_argument("--iters", type=int, default=None, help="training iterations (default: the config's)")
    p.add_argument("--batch-size", type=int, default=None, help="training batch size (default: the config's)")
    p.add_argument("--eval-batch-size", type=int, default=None, help="test batch size (default: the config's)")
    p.add_argument("--seed", type=int, default=0, help="seed shared by every input's training (default 0)")
    p.add_argument("--deterministic", action="store_true", help="torch deterministic algorithms (slower)")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N (cpu also hides GPUs from training)")
    p.add_argument("--launcher", default="none", choices=["none", "pytorch", "slurm", "mpi"],
                   help="distributed training launcher (use with torchrun for 'pytorch')")
    p.add_argument("--local-rank", "--local_rank", type=int, default=0, help=argparse.SUPPRESS)
    # deprecated spellings: --cfg-options K=V is K=V, --fuser-options/--fuser-set K=V is fuser.K=V
    p.add_argument("--cfg-options", nargs="+", action="extend", default=[], help=argparse.SUPPRESS)
    p.add_argument("--fuser-options", "--fuser-set", nargs="+", action="extend", default=[], help=argparse.SUPPRESS)
    p.add_argument("--samples", type=int, default=2, help="test samples in qualitative.png (default 2)")
    p.add_argument("--threads", type=int, default=None,
                   help="torch CPU threads (default: half the cores, fewer when busy)")
    p.add_argument("--synthetic-n", type=int, default=300, help="synthetic scenes to render (default 300)")
    p.add_argument("--synthetic-size", default="84x112", help="synthetic scene size HxW (default 84x112)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.add_argument("--verbose", action="store_true", help="debug logging, and mmengine's INFO logs")
    return p


def _size(text: str) -> tuple[int, int]:
    try:
        h, w = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise ConfigError(f"--synthetic-size {text!r}: expected HxW, e.g. 96x128") from None
    if h < 48 or w < 64:
        raise ConfigError(f"--synthetic-size {text!r}: the scenes need at least 48x64 pixels")
    return h, w


def parse_args(argv: list[str] | None = None) -> tuple[argparse.Namespace, dict, dict]:
    """The options (``args.inputs`` a list), the mmseg config overrides and the fuser settings."""
    args = build_parser().parse_intermixed_args(argv)
    setup_script_logging(args.verbose)
    args.inputs, listed = split_list_overrides(args.inputs)  # `--inputs ir,vis fuser.device=cuda`
    plain, tokens = script_positionals([args.data_root, *args.overrides], max_plain=1, plain_name="dataset root")
    args.data_root = plain[0] if plain else None
    opts = parse_overrides([*legacy_overrides(args.cfg_options, option="--cfg-options"),
                            *legacy_overrides(args.fuser_options, option="--fuser-options", section="fuser"),
                            *listed, *tokens])
    fuser_settings = pop_section(opts, "fuser")
    if args.config is not None and not os.path.exists(args.config):  # a shipped config name, from any folder
        args.config = str(resolve_config(args.config))
    return args, opts, fuser_settings


def main(argv: list[str] | None = None) -> int:
    args, cfg_options, fuser_settings = parse_args(argv)
    if not args.verbose:  # deprecation notices of the pinned mmseg/mmengine/torch, not actionable by a user
        warnings.filterwarnings("ignore", category=UserWarning, module=r"(mmseg|mmengine|torch)(\.|$)")
        warnings.filterwarnings("ignore", category=DeprecationWarning)
    if args.device.strip().lower() == "cpu":
        os.environ["CUDA_VISIBLE_DEVICES"] = ""  # the Runner trains on CUDA whenever it sees one
    height, width = _size(args.synthetic_size)
    from downstream.segmentation.compare import SegEvalSettings, run_seg_eval

    settings = SegEvalSettings(
        data_root=args.data_root, inputs=args.inputs, config=args.config, out=args.out,
        seg_checkpoint=args.seg_checkpoint, iters=args.iters, batch_size=args.batch_size,
        eval_batch_size=args.eval_batch_size, seed=args.seed, deterministic=args.deterministic, device=args.device,
        launcher=args.launcher, cfg_options=cfg_options,
        fuser_settings=fuser_settings, num_samples=args.samples, threads=args.threads,
        synthetic_n=args.synthetic_n, synthetic_height=height, synthetic_width=width,
        progress=not args.no_progress, quiet=not args.verbose,
    )
    report = run_seg_eval(settings)
    if report is None:  # a non-zero rank of a distributed run
        return 0
    print()
    print(report.markdown)
    for note in report.skipped:
        print(f"note: {note}")
    print(f"table:       {report.csv_path}  {report.md_path}")
    print(f"bar chart:   {report.chart_path}")
    if report.grid_path:
        print(f"qualitative: {report.grid_path}")
    print(f"runs:        {report.out_dir / 'runs'}  ({report.seconds:.0f} s)")
    return 0


def cli() -> None:
    """The console command ``tcmoa-seg-eval``."""
    run_cli(main)


if __name__ == "__main__":
    run_cli(main)
