"""Does fusion help my detector? Compare a YOLO detector on infrared, visible, fused and early-fused (RGB+T) inputs.

Examples (``tcmoa-det-eval`` is ``python pipelines/det_eval.py``)::

    tcmoa-det-eval                                   # synthetic LLVIP-layout scenes, CPU, < 10 min
    tcmoa-det-eval /data/LLVIP --inputs ir,vis,average,tcmoa_base:ckpt.pth --device 0 --out runs/llvip
    tcmoa-det-eval /data/LLVIP --device 0,1 epochs=100 model=yolo11s.yaml     # ultralytics DDP
    tcmoa-det-eval /data/LLVIP --det-checkpoint my_yolo.pt --out runs/given  # evaluate, no training
    tcmoa-det-eval /data/M3FD --layout m3fd --schedule configs/det/llvip.yaml imgsz=800 fuser.levels=5
    tcmoa-det-eval ../shared/data/llvip --detector opencv-hog --inputs ir,vis,laplacian,tcmoa_tiny  # no training
    tcmoa-det-eval ../shared/data/msrs --detector opencv-hog detector.upscale=2 --eval-split all

Every input is trained with the same schedule (``configs/det/*.yaml``, ``key=value`` overrides; ``fuser.key=value``
words are settings for every fuser) and seed, or given one detector (``--det-checkpoint`` file, or ``--detector
opencv-hog``: OpenCV's pretrained HOG people detector, settings ``detector.key=value``, person class only), then
evaluated on the test split: mAP50, mAP50-95, precision, recall, recall at 1 FPPI and LLVIP's log-average miss rate.
Outputs in --out:
results.csv, results.md, curves.png, qualitative.png, run.json. Nothing is downloaded; a named .pt must exist.
Bad input stops the run with a one-line error and exit status 2.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from downstream.detection.datasets import LAYOUTS
from downstream.detection.evaluate import DEFAULT_INPUTS, SYNTHETIC_DEFAULTS, DetEvalSettings, run_det_eval
from fusion.errors import ConfigError
from fusion.tasks import TASKS
from fusion.utils.cli import comma_list, legacy_overrides, parse_overrides, pop_section, run_cli, script_positionals
from fusion.utils.logging import setup_script_logging


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("data", nargs="?", help="dataset root (LLVIP, M3FD or MSRS layout); default: synthetic")
    p.add_argument("overrides", nargs="*", metavar="KEY=VALUE",
                   help="schedule overrides, e.g. epochs=5 imgsz=320, and fuser settings, e.g. fuser.levels=5")
    p.add_argument("--out", type=Path, default=Path("runs/det_eval"), help="run folder (default: runs/det_eval)")
    p.add_argument("--layout", default="auto", choices=["auto", *LAYOUTS])
    p.add_argument(
        "--inputs",
        default=",".join(DEFAULT_INPUTS),
        help="comma list: ir, vis, rgbt (4-channel early fusion), fusion methods (default: %(default)s)",
    )
    p.add_argument("--schedule", help="configs/det name or .yaml (default: synthetic_cpu, or llvip for real data)")
    p.add_argument("--det-checkpoint", type=Path, help="evaluate this detector (.pt) on every input, no training")
    p.add_argument("--detector", help="a given detector by name, no training: opencv-hog (people only)")
    p.add_argument("--eval-split", default="test", choices=["test", "all"],
                   help="images scored: the test split, or every labelled pair (given detectors only)")
    p.add_argument("--trust-checkpoint", action="store_true",
                   help="allow --det-checkpoint to be an ultralytics .pt pickle (it can run code; files you trust)")
    p.add_argument("--device", default="auto", help="cpu, auto, cuda, N, or N,M for ultralytics multi-GPU training")
    p.add_argument("--task", default="vif", choices=TASKS, help="fusion task (default: vif)")
    p.add_argument("--fuser-set", action="append", default=[], help=argparse.SUPPRESS)  # deprecated: fuser.K=V
    p.add_argument("--max-train", type=int, help="use only the first N training pairs")
    p.add_argument("--max-test", type=int, help="use only the first N test pairs")
    p.add_argument(
        "--label-source",
        choices=["fusion", "infrared", "visible"],
        help="MSRS: which annotation pass is the ground truth (default: fusion)",
    )
    p.add_argument("--labels", type=Path, help="M3FD: the XML folder or COCO .json (default: found in the root)")
    p.add_argument(
        "--synthetic-size",
        type=int,
        nargs=2,
        metavar=("TRAIN", "TEST"),
        help=f"synthetic pairs (default: {SYNTHETIC_DEFAULTS['n_train']} {SYNTHETIC_DEFAULTS['n_test']})",
    )
    p.add_argument(
        "--fused-format",
        choices=["png", "jpg"],
        default="png",
        help="cache format of fused images: png (lossless; ~13 GB per fuser for LLVIP) or jpg (q95, ~5x smaller)",
    )
    p.add_argument("--qualitative", type=int, default=4, help="rows in qualitative.png (0: none)")
    p.add_argument("--retrain", action="store_true", help="train again even if a finished run matches")
    p.add_argument("-v", "--verbose", action="store_true")
    return p  # fmt: skip


def parse_args(argv: list[str] | None = None) -> tuple[argparse.Namespace, list[str], dict, dict]:
    """The options (``args.data`` a :class:`Path` or ``None``), the schedule overrides, the fuser settings and the
    given detector's settings."""
    args = build_parser().parse_intermixed_args(argv)
    setup_script_logging(args.verbose)
    plain, tokens = script_positionals([args.data, *args.overrides], max_plain=1, plain_name="dataset root")
    args.data = Path(plain[0]) if plain else None
    tokens = [*legacy_overrides(args.fuser_set, option="--fuser-set", section="fuser"), *tokens]
    parsed = parse_overrides(tokens)
    fuser, detector = pop_section(parsed, "fuser"), pop_section(parsed, "detector")
    if detector and not args.detector:
        raise ConfigError(f"detector.{next(iter(detector))}=...: settings for a detector, but no --detector given")
    sections = ("fuser", "detector")
    schedule = [t for t in tokens if t.split("=", 1)[0].split(".")[0].strip() not in sections]  # ultralytics keys
    return args, schedule, fuser, detector


def main(argv: list[str] | None = None) -> int:
    args, overrides, fuser_settings, detector_settings = parse_args(argv)
    data = args.data
    if data is not None and not data.is_dir():
        raise ConfigError(f"{data}: no such dataset folder")
    for name, value in (("--max-train", args.max_train), ("--max-test", args.max_test)):
        if value is not None and value < 1:
            raise ConfigError(f"{name} must be at least 1, got {value}")
    layout_kwargs = {}
    if args.label_source:
        layout_kwargs["label_source"] = args.label_source
    if args.labels:
        layout_kwargs["labels"] = args.labels
    synthetic = dict(SYNTHETIC_DEFAULTS)
    if args.synthetic_size:
        synthetic.update(n_train=args.synthetic_size[0], n_test=args.synthetic_size[1])
    settings = DetEvalSettings(
        out=args.out,
        data=data,
        layout=args.layout,
        inputs=tuple(comma_list(args.inputs)),
        schedule=args.schedule,
        overrides=overrides,
        det_checkpoint=args.det_checkpoint,
        detector=args.detector,
        detector_kwargs=detector_settings,
        eval_split=args.eval_split,
        trust_checkpoint=args.trust_checkpoint,
        device=args.device,
        task=args.task,
        max_train=args.max_train,
        max_test=args.max_test,
        synthetic=synthetic,
        layout_kwargs=layout_kwargs,
        fuser_kwargs=fuser_settings,
        qualitative=args.qualitative,
        retrain=args.retrain,
        fused_format=args.fused_format,
    )
    rows = run_det_eval(settings)
    width = max(len(r["input"]) for r in rows)
    print(f"{'input':<{width}}  mAP50   mAP50-95  precision  recall  rec@1FPPI  miss_rate")
    for r in rows:
        print(f"{r['input']:<{width}}  {r['mAP50']:.4f}  {r['mAP50-95']:.4f}    {r['precision']:.4f}     "
              f"{r['recall']:.4f}  {r['recall_1fppi']:.4f}     {r['miss_rate']:.4f}")  # fmt: skip
    print(f"results: {settings.out / 'results.md'}")
    return 0


def cli() -> None:
    """The console command ``tcmoa-det-eval``."""
    run_cli(main)


if __name__ == "__main__":
    run_cli(main)
