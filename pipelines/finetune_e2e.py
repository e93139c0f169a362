"""End-to-end finetuning: train TC-MoA's adapters (and a segmenter or a YOLO detector) through the task's loss.

Examples (``tcmoa-finetune-e2e`` is ``python pipelines/finetune_e2e.py``)::

    tcmoa-finetune-e2e --compare                 # synthetic MFNet-layout demo: frozen vs e2e, CPU
    tcmoa-finetune-e2e configs/e2e/my_run.py data.root=/data/MFNet train.iters=20000 --device cuda
    torchrun --nproc_per_node 2 pipelines/finetune_e2e.py configs/e2e/my_run.py train.amp=bf16
    tcmoa-finetune-e2e configs/e2e/my_run.py --resume auto          # continue a killed run
    tcmoa-finetune-e2e configs/e2e/tcmoa-tiny_yolov8n_llvip-crossover.py --compare --seeds 0,1,2   # detection
    tcmoa-seg-eval ... --inputs vis,ir,tcmoa_tiny,tcmoa_e2e:runs/e2e/e2e_final.safetensors

Without ``--compare`` one run trains with the configured schedule (``schedule.mode``: joint | alternating |
frozen) and writes ``e2e_final.safetensors`` (fusion + segmenter or detector weights) in the output folder;
``--export-parts`` also writes ``fusion.safetensors`` (a plain TC-MoA checkpoint) and, for a segmenter,
``segmenter.pth`` + ``segmenter_config.py``.
With ``--compare`` the frozen-fusion reference and the end-to-end pipeline are trained with one schedule and scored
on the test split (mIoU, or mAP50 / mAP50-95 / MR^-2 for ``downstream=detection``, and fusion metrics):
``results.md`` / ``results.json``; ``--seeds 0,1,2`` repeats it per training seed in ``<out>/seed_<s>/`` and writes
the table ``seeds.md`` / ``seeds.csv``. Without ``data.root`` the synthetic
scenes are written to ``<out>/data``. The config is a file or a shipped name (``configs/e2e/<name>.py`` works from
any folder). Bad input stops with a one-line error and exit status 2.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from fusion.errors import ConfigError
from fusion.utils.cli import parse_overrides, run_cli, script_positionals
from fusion.utils.config import config_path
from fusion.utils.logging import setup_script_logging

DEFAULT_CONFIG = "configs/e2e/tcmoa-tiny_fcn-slim_mfnet-synthetic.py"
"""The shipped CPU demo (read through :func:`fusion.utils.config.config_path`)."""


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("config", nargs="?", help="config file or configs/e2e/<name>.py (default: the synthetic CPU demo)")
    p.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="config overrides, e.g. train.iters=50")
    p.add_argument("--out", type=Path, help="output folder (default: the config's output_dir)")
    p.add_argument("--compare", action="store_true", help="train frozen-fusion and e2e arms and compare them")
    p.add_argument("--seeds", help="with --compare: comma list of training seeds, one comparison each in "
                   "<out>/seed_<s>/, then the table seeds.md / seeds.csv (e.g. 0,1,2,3,4)")
    p.add_argument("--resume", help="'auto' (newest checkpoint in the output folder) or a checkpoint / run folder")
    p.add_argument("--device", help="cpu, cuda, cuda:N or auto (sets train.device)")
    p.add_argument("--export-parts", type=Path, metavar="DIR", help="also write the fusion (and segmenter) parts here")
    p.add_argument("-v", "--verbose", action="store_true")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_intermixed_args(argv)
    setup_script_logging(args.verbose)
    plain, overrides = script_positionals([args.config, *args.overrides], max_plain=1, plain_name="config file")
    config = plain[0] if plain else None
    from downstream.e2e.config import load_config
    from downstream.e2e.evaluate import comparison_markdown, prepare_synthetic_data, run_comparison, run_seeds
    from downstream.e2e.trainer import finetune

    seeds = _seed_list(args.seeds) if args.seeds is not None else None
    if seeds is not None and not args.compare:
        raise ConfigError("--seeds runs the comparison once per seed: add --compare")
    opts = parse_overrides(overrides)
    if args.out is not None:
        opts["output_dir"] = str(args.out)
    if args.device:
        opts.setdefault("train", {})["device"] = args.device
    cfg = load_config(config or config_path(DEFAULT_CONFIG), opts)
    out = Path(cfg["output_dir"])
    if cfg["data"]["root"] is None:
        cfg["data"]["root"] = str(prepare_synthetic_data(cfg, out))
    elif not Path(cfg["data"]["root"]).is_dir():
        raise ConfigError(f"{cfg['data']['root']}: no such dataset folder (data.root)")
    if args.compare:
        if args.resume:
            raise ConfigError("--compare resumes each arm from its own folder by itself; drop --resume")
        if seeds is not None:
            command = "python pipelines/finetune_e2e.py " + " ".join(argv if argv is not None else sys.argv[1:])
            run_seeds(cfg, out, seeds, progress=bool(cfg["log"]["progress"]), command=command)
            print((out / "seeds.md").read_text(encoding="utf-8"), end="")
            print(f"results: {out / 'seeds.md'}")
            return 0
        result = run_comparison(cfg, out, progress=bool(cfg["log"]["progress"]))
        print(comparison_markdown(result), end="")
        print(f"results: {out / 'results.md'}")
        return 0
    final = finetune(cfg, resume=args.resume)
    if final is not None:
        part = "detector" if cfg["downstream"] == "detection" else "segmenter"
        print(f"finetuned fuser + {part}: {final}")
        print(f"use it as the fusion method 'tcmoa_e2e:{final}'")
        if args.export_parts:
            from downstream.e2e.checkpoint import export_parts

            for part, path in export_parts(final, args.export_parts).items():
                print(f"{part}: {path}")
    return 0


def _seed_list(text: str) -> list[int]:
    try:
        seeds = [int(t) for t in text.split(",") if t.strip()]
    except ValueError:
        raise ConfigError(f"--seeds {text!r}: expected a comma list of integers, e.g. 0,1,2") from None
    if not seeds or len(set(seeds)) != len(seeds) or min(seeds) < 0:
        raise ConfigError(f"--seeds {text!r}: expected distinct non-negative integers")
    return seeds


def cli() -> None:
    """The console command ``tcmoa-finetune-e2e``."""
    run_cli(main)


if __name__ == "__main__":
    run_cli(main)
