"""Train TC-MoA (any variant, any tasks) on one CPU/GPU or many with torchrun, with exact resumption.

    python pipelines/train_fusion.py --config configs/fusion/tcmoa_tiny_cpu.py
    torchrun --nproc_per_node 4 pipelines/train_fusion.py --config configs/fusion/tcmoa_base.py \
        --cfg-options model.pretrained_backbone=mae_visualize_vit_base.pth train.amp=bf16
    python pipelines/train_fusion.py --config ... --resume auto        # continue where a run stopped

Every option is documented in configs/fusion/defaults.py; --cfg-options key=value overrides any of them.
Outputs go to output_dir: metrics.csv, tensorboard/, samples/, checkpoints/iter_*.pth, model_final.safetensors.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from fusion.utils.cli import parse_overrides, run_cli  # noqa: E402
from fusion.utils.logging import setup_script_logging  # noqa: E402

DEFAULT_CONFIG = ROOT / "configs" / "fusion" / "defaults.py"


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    p.add_argument("--config", default=None, help=f"config file (.py or .yaml); default {DEFAULT_CONFIG.name}")
    p.add_argument("--cfg-options", nargs="+", default=[], metavar="KEY=VALUE",
                   help="override config values, e.g. train.lr=1e-4 data.crop_size=224")
    p.add_argument("--resume", nargs="?", const="auto", default=None, metavar="PATH",
                   help="continue a run: a checkpoint, a run folder, or nothing/'auto' for output_dir's newest")
    p.add_argument("--output-dir", default=None, help="overrides output_dir")
    p.add_argument("--unfreeze", action="store_true", help="train the backbone too (train.unfreeze=True)")
    p.add_argument("--device", default=None, help="cpu, cuda, cuda:N or auto (train.device)")
    p.add_argument("--print-config", action="store_true", help="print the resolved config and exit")
    p.add_argument("-v", "--verbose", action="store_true")
    return p


def main() -> int:
    args = build_parser().parse_args()
    setup_script_logging(args.verbose)
    import json

    from fusion.training.config import load_config

    overrides = parse_overrides(args.cfg_options)
    extra: dict = {}
    if args.output_dir:
        extra["output_dir"] = args.output_dir
    if args.unfreeze:
        extra.setdefault("train", {})["unfreeze"] = True
    if args.device:
        extra.setdefault("train", {})["device"] = args.device
    cfg = load_config(args.config or DEFAULT_CONFIG, overrides)
    if extra:
        from fusion.training.config import merge_config, validate_config

        cfg = merge_config(cfg, extra)
        validate_config(cfg)
    if args.print_config:
        print(json.dumps(cfg, indent=2))
        return 0
    from fusion.training import train

    out = train(cfg, resume=args.resume)
    if out is not None:
        print(out)
    return 0


if __name__ == "__main__":
    run_cli(main)
