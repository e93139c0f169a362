"""A picture comparing fusion methods on real pairs: sources, fusers run here, and published results.

Each pair gives a row of whole images and a row of nearest-neighbour zooms (so that 8x8 block artefacts and lost
colour show). Published results are read from the shared data's result folders (VIFB ``fused/<image>_<Method>.jpg``,
TNO ``fused/<Method>/<image>.png``).

    python benchmarks/comparison_grid.py --pairs vifb:walking@0.72/0.55/0.15,tno:05@0.3/0.55/0.15 \\
        --methods tcmoa_tiny,tcmoa_tiny_v1,laplacian --published IFCNN,SeAFusion --out docs/images/fusion_comparison.jpg
"""

from __future__ import annotations

import argparse
from pathlib import Path

import cv2
import numpy as np

from fusion.data.postprocess import contact_sheet
from fusion.errors import InputError
from fusion.fusers.spec import FuserSpec
from fusion.stream.overlay import side_by_side
from fusion.utils.cli import run_cli
from fusion.utils.io import read_image, write_image


def _find(folder: Path, stem: str) -> Path:
    hits = sorted(p for p in folder.glob(f"{stem}.*") if p.suffix.lower() in (".png", ".jpg", ".jpeg", ".bmp"))
    if not hits:
        raise InputError(f"{folder}: no image named {stem}.*")
    return hits[0]


def _published(root: Path, image: str, method: str) -> Path:
    flat = sorted(root.glob(f"fused/{image}_{method}.*"))
    if flat:
        return flat[0]
    return _find(root / "fused" / method, image)


def _zoom(img: np.ndarray, box: tuple[float, float, float], height: int) -> np.ndarray:
    """The ``(cy, cx, size)`` window (centre as fractions of the height/width, size a fraction of the height, 4:3),
    enlarged with nearest neighbours to ``height`` rows so that single pixels and 8-pixel blocks stay visible."""
    h, w = img.shape[:2]
    side = min(h, w * 3 // 4, max(8, int(box[2] * h)))
    y0 = int(np.clip(box[0] * h - side / 2, 0, h - side))
    x0 = int(np.clip(box[1] * w - side * 2 / 3, 0, w - side * 4 // 3))
    crop = img[y0 : y0 + side, x0 : x0 + side * 4 // 3]
    factor = max(1, round(height / crop.shape[0]))
    return cv2.resize(crop, (crop.shape[1] * factor, crop.shape[0] * factor), interpolation=cv2.INTER_NEAREST)


def _parse_pair(item: str) -> tuple[str, str, tuple[float, float, float]]:
    """``SET:IMAGE[@CY/CX/SIZE]`` -> (set, image, zoom window); one-line errors for anything else."""
    ref, _, zoom = item.partition("@")
    set_name, _, image = ref.partition(":")
    if not set_name or not image:
        raise InputError(f"--pairs: {item!r} is not SET:IMAGE[@CY/CX/SIZE]")
    if not zoom:
        return set_name, image, (0.5, 0.5, 0.15)
    try:
        box = tuple(float(x) for x in zoom.split("/"))
    except ValueError:
        raise InputError(f"--pairs: zoom window {zoom!r} of {item!r} is not three numbers CY/CX/SIZE") from None
    if len(box) != 3 or not (0 <= box[0] <= 1 and 0 <= box[1] <= 1 and 0 < box[2] <= 1):
        raise InputError(f"--pairs: zoom window {zoom!r} of {item!r}: expected CY/CX in [0, 1] and SIZE in (0, 1]")
    return set_name, image, box  # type: ignore[return-value]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", default="../shared/data", help="folder holding vifb/ and tno/")
    p.add_argument("--pairs", default="vifb:walking@0.72/0.55/0.15,vifb:carShadow@0.45/0.28/0.15,tno:05@0.3/0.55/0.15",
                   help="comma list of SET:IMAGE[@CY/CX/SIZE] (zoom window as fractions, default the centre)")
    p.add_argument("--methods", default="tcmoa_tiny,tcmoa_tiny_v1,laplacian", help="fusers run here (specs)")
    p.add_argument("--published", default="IFCNN,SeAFusion", help="published methods read from the sets' folders")
    p.add_argument("--height", type=int, default=180, help="row height in pixels")
    p.add_argument("--out", default="docs/images/fusion_comparison.jpg")
    args = p.parse_args(argv)
    fusers = {m: FuserSpec.parse(m).build() for m in args.methods.split(",") if m}
    published = [m for m in args.published.split(",") if m]
    rows = []
    if args.height < 16:
        raise InputError(f"--height {args.height}: expected at least 16 pixels")
    for item in args.pairs.split(","):
        set_name, image, box = _parse_pair(item)
        root = Path(args.data) / set_name
        vis = read_image(_find(root / "vis", image))
        ir = read_image(_find(root / "ir", image))
        panels = {"visible": vis, "infrared": ir}
        panels.update({name: f.fuse(vis, ir, "vif") for name, f in fusers.items()})
        for m in published:
            panels[f"{m} (published)"] = read_image(_published(root, image, m))
        scale = args.height / vis.shape[0]
        whole = [cv2.resize(x, (round(x.shape[1] * scale), args.height), interpolation=cv2.INTER_AREA)
                 for x in panels.values()]
        rows.append(side_by_side(whole, [f"{set_name}/{image}"] + list(panels)[1:], max_width=10**5))
        zooms = [_zoom(x, box, args.height) for x in panels.values()]
        rows.append(side_by_side(zooms, [f"zoom x{zooms[0].shape[0] * 100 // (box[2] * vis.shape[0]) / 100:g}"],
                                 max_width=10**5))
    sheet = contact_sheet(rows)
    if sheet.shape[1] > 2400:
        s = 2400 / sheet.shape[1]
        sheet = cv2.resize(sheet, (2400, round(sheet.shape[0] * s)), interpolation=cv2.INTER_AREA)
    write_image(Path(args.out), sheet)
    print(f"wrote {args.out} ({sheet.shape[1]}x{sheet.shape[0]})")
    return 0


if __name__ == "__main__":
    run_cli(main)
