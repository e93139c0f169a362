"""Show what TC-MoA decides: prompt maps of one pair, and every task router's expert usage over a set of pairs.

Examples (``tcmoa-explain`` is ``python pipelines/explain.py``)::

    # one pair: sources, fused image and the prompt maps p_a / p_b of every TC-MoA module
    tcmoa-explain --a vis/190001.jpg --b ir/190001.jpg --task vif --out runs/explain

    # a folder pair or a dataset: expert usage per module (tasks x experts) as a heatmap and a CSV, plus the prompt
    # figure of its first pair
    tcmoa-explain --a-dir data/msrs/vis --b-dir data/msrs/ir --task vif --out runs/explain_msrs
    tcmoa-explain --dataset ../shared/data/mef_mefb --task mef --method tcmoa_tiny --out runs/explain_mef

``--method`` is any TC-MoA spec (``tcmoa_tiny``, ``tcmoa_base:/path/ckpt.pth``, ``tcmoa_e2e:/path``);
``--max-pairs`` bounds the pairs used for the usage statistics. Writes ``prompts_<name>_<task>.png``,
``expert_usage.png`` and ``expert_usage.csv`` (module, task, expert, share of tokens, mean gate) into ``--out``.
"""

from __future__ import annotations

import argparse
import csv
import io
from pathlib import Path

from fusion.errors import ConfigError, InputError
from fusion.tasks import TASKS
from fusion.utils.cli import run_cli
from fusion.utils.logging import get_logger, setup_script_logging

log = get_logger("explain")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter)
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--a", type=Path, help="source a of one pair (visible / over-exposed / far focus)")
    src.add_argument("--a-dir", type=Path, help="folder of source-a images (paired by file name with --b-dir)")
    src.add_argument("--dataset", type=Path, help="dataset root in one of the known layouts")
    p.add_argument("--b", type=Path, help="source b of the pair (with --a)")
    p.add_argument("--b-dir", type=Path, help="folder of source-b images (with --a-dir)")
    p.add_argument("--layout", help="dataset layout (with --dataset; detected when omitted)")
    p.add_argument("--task", default="vif", choices=TASKS, help="the task of the prompt figure")
    p.add_argument("--method", default="tcmoa_tiny", help="TC-MoA spec, e.g. tcmoa_base:/path/ckpt.pth")
    p.add_argument("--max-pairs", type=int, default=8, help="pairs used for the expert usage")
    p.add_argument("--device", default="cpu", help="cpu, cuda, cuda:N or auto")
    p.add_argument("--out", required=True, type=Path, help="output folder (not inside an input folder)")
    p.add_argument("-v", "--verbose", action="store_true")
    return p


def _pairs(args: argparse.Namespace) -> list[tuple[str, Path, Path]]:
    from fusion.data.layouts import list_pairs
    from fusion.data.pairs import pair_folders

    if args.a is not None:
        if args.b is None:
            raise ConfigError("--a needs --b (the second source)")
        return [(args.a.stem, args.a, args.b)]
    if args.a_dir is not None:
        if args.b_dir is None:
            raise ConfigError("--a-dir needs --b-dir")
        found = pair_folders(args.a_dir, args.b_dir, task=args.task)
    else:
        found = list_pairs(args.dataset, layout=args.layout, task=args.task)
    if any(p.extract for p in found):
        raise InputError(f"{args.dataset}: 4-channel RGB-T files are not supported here; pass two folders")
    return [(p.name.replace("/", "_"), Path(p.a), Path(p.b)) for p in found]


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    setup_script_logging(args.verbose)
    if args.max_pairs < 1:
        raise ConfigError("--max-pairs must be >= 1")
    from fusion.fusers.base import create_fuser
    from fusion.fusers.spec import FuserSpec
    from fusion.models.explain import expert_usage, module_names, prompt_figure, prompt_maps, usage_figure
    from fusion.utils.io import atomic_write_text, is_within, read_image

    spec = FuserSpec.parse(args.method)
    if not spec.name.startswith("tcmoa"):
        raise ConfigError(f"--method {args.method}: explain needs a TC-MoA model (tcmoa_tiny, tcmoa_base:ckpt, ...)")
    pairs = _pairs(args)
    out = args.out
    for src in {p.parent for pair in pairs for p in pair[1:]}:
        if is_within(args.out, src):
            raise InputError(f"{args.out}: output lies inside the input folder {src}; choose another location")
    fuser = create_fuser(args.method, device=args.device)
    model = fuser.model

    def load(a: Path, b: Path):
        img_a, img_b = read_image(a), read_image(b)
        if img_a.shape != img_b.shape:
            raise InputError(f"{a}, {b}: sizes differ ({img_a.shape[:2]} vs {img_b.shape[:2]}); register them first")
        return img_a, img_b

    name, a_path, b_path = pairs[0]
    a, b = load(a_path, b_path)
    maps = prompt_maps(model, a, b, args.task)
    labels = {"vif": ("vis", "ir"), "mef": ("over", "under"), "mff": ("far", "near")}[args.task]
    fig = prompt_figure(a, b, maps, out / f"prompts_{name}_{args.task}.png", labels=labels,
                        title=f"{args.method}, task {args.task}: prompts of every TC-MoA module ({name})")
    print(f"prompt maps: {fig}")

    used = pairs[: args.max_pairs]
    tasks = list(model.config.task_names[: model.config.num_tasks])
    usage = expert_usage(model, (load(pa, pb) for _, pa, pb in used), tasks)
    names = module_names(model)
    fig = usage_figure(usage, names, tasks, out / "expert_usage.png",
                       title=f"{args.method}: share of tokens each task's router sends to each expert "
                             f"({len(used)} pair(s))")
    buf = io.StringIO()
    writer = csv.writer(buf)
    writer.writerow(["module", "task", "expert", "share_of_tokens", "mean_gate", "tokens"])
    for i, mod in enumerate(names):
        for j, task in enumerate(tasks):
            for e in range(usage["share"].shape[2]):
                writer.writerow([mod, task, e, f"{usage['share'][i, j, e]:.6f}", f"{usage['gate'][i, j, e]:.6f}",
                                 int(usage["tokens"][i, j])])
    atomic_write_text(out / "expert_usage.csv", buf.getvalue())
    print(f"expert usage: {fig} and {out / 'expert_usage.csv'}")
    return 0


def cli() -> None:
    """The console command ``tcmoa-explain``."""
    run_cli(main)


if __name__ == "__main__":
    run_cli(main)
