"""Do fused images keep the thermal targets salient? Local contrast of every annotated person, fused vs infrared.

For each labelled person box (LLVIP, MSRS, M3FD layouts, read by ``downstream.detection``) the BT.601 luma contrast
``mean(box) - mean(ring)`` is measured, the ring being the box grown by half its size on every side (clipped to the
image) minus the box. A method's **kept infrared contrast** is ``sum(c_fused * sign(c_ir)) / sum(|c_ir|)`` over all
boxes: 1.0 keeps the people exactly as salient as in infrared, 0 loses them, above 1 makes them stand out more.
Also reported: the share of boxes whose contrast keeps the infrared's sign and at least half its size.

    python benchmarks/thermal_salience.py ../shared/data/llvip ../shared/data/msrs \\
        --methods average,maximum,laplacian,gff,tcmoa_tiny --out runs/thermal_salience
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from PIL import Image
from tqdm import tqdm

from downstream.detection.datasets import load_detection_dataset
from downstream.detection.labels import person_class
from downstream.detection.salience import box_contrasts, kept_contrast
from fusion.data.color import split_luma_chroma
from fusion.errors import DatasetError
from fusion.fusers.spec import FuserSpec
from fusion.utils.cli import run_cli
from fusion.utils.io import atomic_write_text


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("roots", nargs="+", help="detection dataset folders (llvip, msrs or m3fd layout)")
    p.add_argument("--methods", default="average,maximum,laplacian,gff,tcmoa_tiny",
                   help="comma list of fuser specs (name or name:checkpoint)")
    p.add_argument("--out", default="runs/thermal_salience", help="output folder (results.csv, results.md)")
    args = p.parse_args(argv)
    specs = [FuserSpec.parse(m) for m in args.methods.split(",") if m]
    fusers = {str(s): s.build() for s in specs}
    rows = []
    for root in args.roots:
        ds = load_detection_dataset(root)
        person = person_class(ds.classes)
        if person is None:
            raise DatasetError(f"{root}: no person class in {ds.classes}")
        # a sample can sit in several splits (flat layouts): each pair once
        samples = list({s.ident: s for split in ds.splits.values() for s in split}.values())
        contrasts: dict[str, list[np.ndarray]] = {k: [] for k in ["ir", "vis", *fusers]}
        for s in tqdm(samples, desc=Path(root).name):
            lab = s.labels.only_class(person)
            keep = ~lab.ignore
            if not keep.any():
                continue
            vis = np.asarray(Image.open(s.vis).convert("RGB"))
            ir = np.asarray(Image.open(s.ir).convert("RGB"))
            if ir.shape != vis.shape:
                ir = np.asarray(Image.fromarray(ir).resize(vis.shape[1::-1], Image.BICUBIC))
            boxes = lab.scaled(vis.shape[1], vis.shape[0]).boxes[keep]
            for name, image in (("ir", ir), ("vis", vis), *((n, f.fuse(vis, ir, "vif")) for n, f in fusers.items())):
                contrasts[name].append(box_contrasts(split_luma_chroma(image)[0].astype(np.float64), boxes))
        if not contrasts["ir"]:
            raise DatasetError(f"{root}: no labelled person")
        ref = np.concatenate(contrasts["ir"])
        for name, values in contrasts.items():
            kept, share = kept_contrast(np.concatenate(values), ref)
            rows.append((Path(root).name, name, int(np.isfinite(ref).sum()), kept, share))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    csv = ["set,input,people,kept_ir_contrast,share_kept_half"]
    csv += [f"{s},{n},{k},{c:.4f},{h:.4f}" for s, n, k, c, h in rows]
    md = ["| set | input | people | kept infrared contrast | people kept at >= half contrast |",
          "|---|---|---|---|---|"]
    md += [f"| {s} | {n} | {k} | {c:.3f} | {h:.3f} |" for s, n, k, c, h in rows]
    atomic_write_text(out / "results.csv", "\n".join(csv) + "\n")
    atomic_write_text(out / "results.md", "\n".join(md) + "\n")
    print("\n".join(md))
    return 0


if __name__ == "__main__":
    run_cli(main)
