"""Train TC-MoA (any variant, any tasks) on one CPU/GPU or many with torchrun, with exact resumption.

    tcmoa-train configs/fusion/tcmoa_tiny_cpu.py
    torchrun --nproc_per_node 4 pipelines/train_fusion.py configs/fusion/tcmoa_base.py \
        model.pretrained_backbone=mae_visualize_vit_base.pth train.amp=bf16
    tcmoa-train configs/fusion/tcmoa_tiny_cpu.py --resume auto        # continue where a run stopped

``tcmoa-train`` is ``python pipelines/train_fusion.py``. The config is a file or a shipped name
(``configs/fusion/<name>.py`` works from any folder; default: the defaults). Every option is documented in
configs/fusion/defaults.py; positional ``key=value`` words override any of them (dotted keys: ``train.lr=1e-4``).
Outputs go to output_dir: metrics.csv, tensorboard/, samples/, checkpoints/iter_*.pth, model_final.safetensors.
"""

from __future__ import annotations

import argparse
from typing import Any

from fusion.errors import ConfigError
from fusion.utils.cli import legacy_overrides, parse_overrides, run_cli, script_positionals
from fusion.utils.logging import setup_script_logging


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    p.add_argument("config", nargs="?", help="config file (.py or .yaml) or configs/fusion/<name>.py")
    p.add_argument("overrides", nargs="*", metavar="KEY=VALUE",
                   help="override config values, e.g. train.lr=1e-4 data.crop_size=224")
    p.add_argument("--config", dest="config_option", metavar="CONFIG", default=None, help="the config, as an option")
    p.add_argument("--cfg-options", nargs="+", action="extend", default=[], help=argparse.SUPPRESS)  # KEY=VALUE
    p.add_argument("--resume", nargs="?", const="auto", default=None, metavar="PATH",
                   help="continue a run: a checkpoint, a run folder, or nothing/'auto' for output_dir's newest")
    p.add_argument("--output-dir", default=None, help="overrides output_dir")
    p.add_argument("--unfreeze", action="store_true", help="train the backbone too (train.unfreeze=True)")
    p.add_argument("--device", default=None, help="cpu, cuda, cuda:N or auto (train.device)")
    p.add_argument("--print-config", action="store_true", help="print the resolved config and exit")
    p.add_argument("-v", "--verbose", action="store_true")
    return p


def _set(opts: dict[str, Any], dotted: str, value: Any) -> None:
    """``opts[a][b] = value`` for ``"a.b"`` (an option wins over a ``key=value`` word)."""
    *sections, key = dotted.split(".")
    node = opts
    for name in sections:
        node = node.setdefault(name, {})
        if not isinstance(node, dict):
            raise ConfigError(f"{name}={node!r}: {name} is a section ({dotted}=...)")
    node[key] = value


def parse_args(argv: list[str] | None = None) -> tuple[argparse.Namespace, dict[str, Any]]:
    """The options (``args.config`` the config or ``None``) and every override, options included."""
    args = build_parser().parse_intermixed_args(argv)
    setup_script_logging(args.verbose)
    plain, tokens = script_positionals([args.config, *args.overrides], max_plain=1, plain_name="config file")
    if plain and args.config_option:
        raise ConfigError(f"give the config once: {plain[0]} or --config {args.config_option}")
    args.config = plain[0] if plain else args.config_option
    opts = parse_overrides([*legacy_overrides(args.cfg_options, option="--cfg-options"), *tokens])
    if args.output_dir:
        _set(opts, "output_dir", args.output_dir)
    if args.unfreeze:
        _set(opts, "train.unfreeze", True)
    if args.device:
        _set(opts, "train.device", args.device)
    return args, opts


def main(argv: list[str] | None = None) -> int:
    args, overrides = parse_args(argv)
    import json

    from fusion.training.config import load_config

    cfg = load_config(args.config, overrides)  # None: the defaults (configs/fusion/defaults.py)
    if args.print_config:
        print(json.dumps(cfg, indent=2))
        return 0
    from fusion.training import train

    out = train(cfg, resume=args.resume)
    if out is not None:
        print(out)
    return 0


def cli() -> None:
    """The console command ``tcmoa-train``."""
    run_cli(main)


if __name__ == "__main__":
    run_cli(main)
