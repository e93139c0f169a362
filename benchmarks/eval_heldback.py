"""The shipped ``tcmoa_tiny`` on its held-back pairs: the table of its model card and of the README.

    python benchmarks/eval_heldback.py --out runs/heldback

The held-back pairs are those the training config leaves out (``HOLDOUT`` in ``configs/fusion/tcmoa_tiny_cpu.py``,
plus m3fd's only pair); each is fused by ``average``, the first release ``tcmoa_tiny_v1`` and the shipped
``tcmoa_tiny`` with the fuser's defaults, and scored with the ``tang`` profile (EN, SD, AG, Qabf, SF, MI, VIF,
SSIM). Writes ``heldback.csv`` (per pair) and ``heldback.md`` (means per set and over all pairs).
"""

from __future__ import annotations

import argparse
import csv
import io
import os
import runpy
from collections import defaultdict
from pathlib import Path

import numpy as np

from fusion.errors import InputError
from fusion.utils.cli import run_cli
from fusion.utils.io import atomic_write_text
from fusion.utils.logging import get_logger, setup_script_logging

log = get_logger("eval_heldback")
ROOT = Path(__file__).resolve().parents[1]
METRICS = ["EN", "SD", "AG", "Qabf", "SF", "MI", "VIF", "SSIM"]
LAYOUTS = {"mef_mefb": ("mefb", "mef"), "mff_lytro": ("mfifb", "mff")}


def _parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", default=os.environ.get("TCMOA_SHARED_DATA", str(ROOT.parent / "shared" / "data")))
    p.add_argument("--out", required=True)
    p.add_argument("--methods", default="average,tcmoa_tiny_v1,tcmoa_tiny")
    return p.parse_args(argv)


def _heldback(data: Path) -> dict[str, list]:
    from fusion.data.layouts import list_pairs

    cfg = runpy.run_path(str(ROOT / "configs" / "fusion" / "tcmoa_tiny_cpu.py"))
    holdout = dict(cfg["HOLDOUT"])
    holdout["m3fd"] = None  # never trained on: every pair
    out = {}
    for name, names in holdout.items():
        layout, task = LAYOUTS.get(name, (None, "vif"))
        pairs = list_pairs(data / name, layout=layout, task=task)
        keep = [p for p in pairs if names is None or p.name.split("/")[-1] in names]
        if names is not None and len(keep) != len(names):
            raise InputError(f"{data / name}: held-back pairs {names} not all found")
        out[name] = keep
    return out


def _fuser(method: str):
    from fusion.fusers.base import create_fuser

    return create_fuser(method)


def main(argv: list[str] | None = None) -> int:
    args = _parse_args(argv)
    setup_script_logging()
    from tqdm import tqdm

    from fusion.data.pairs import load_pair
    from fusion.metrics import evaluate

    sets = _heldback(Path(args.data))
    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    fusers = {m: _fuser(m) for m in methods}
    rows = []
    for name, pairs in sets.items():
        for pair in tqdm(pairs, desc=name, leave=False):
            a, b = load_pair(pair)
            for m, fuser in fusers.items():
                fused = fuser.fuse(a, b, pair.task)
                # the profile's (ir, vis) are the sources (b, a), as eval_fusion's --ir/--vis
                scores = evaluate(fused, b, a, profile="tang", metrics=METRICS)
                rows.append({"set": name, "pair": pair.name, "method": m, **{k: scores[k] for k in METRICS}})
    out = Path(args.out)
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=["set", "pair", "method", *METRICS])
    writer.writeheader()
    writer.writerows(rows)
    atomic_write_text(out / "heldback.csv", buf.getvalue())
    groups: dict[tuple[str, str], list[dict]] = defaultdict(list)
    for r in rows:
        groups[(r["set"], r["method"])].append(r)
        groups[("all", r["method"])].append(r)
    lines = ["| set (pairs) | method | " + " | ".join(METRICS) + " |", "|" + "---|" * (len(METRICS) + 2)]
    for set_name in [*sets, "all"]:
        for m in methods:
            g = groups[(set_name, m)]
            vals = " | ".join(f"{np.mean([r[k] for r in g]):.3f}" for k in METRICS)
            label = f"**{m}**" if m == "tcmoa_tiny" else m
            lines.append(f"| {set_name} ({len(g)}) | {label} | {vals} |")
    md = "\n".join(lines) + "\n"
    atomic_write_text(out / "heldback.md", md)
    print(md)
    return 0


if __name__ == "__main__":
    run_cli(main)
