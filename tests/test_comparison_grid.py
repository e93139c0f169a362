"""benchmarks/comparison_grid.py: a picture of sources, fusers and published results; bad specs exit 2."""

from __future__ import annotations

import subprocess
import sys

import numpy as np

from fusion.utils.io import read_image, write_image


def _data(root):
    rng = np.random.default_rng(0)
    for folder in ("vis", "ir"):
        write_image(root / "set" / folder / "x.png", rng.integers(0, 256, (60, 80, 3), dtype=np.uint8))
    write_image(root / "set" / "fused" / "x_Pub.png", rng.integers(0, 256, (60, 80, 3), dtype=np.uint8))


def test_grid_rows_and_errors(repo_root, tmp_path):
    _data(tmp_path)
    out = tmp_path / "grid.png"
    cmd = [sys.executable, str(repo_root / "benchmarks" / "comparison_grid.py"), "--data", str(tmp_path),
           "--methods", "average", "--published", "Pub", "--height", "40"]
    ok = subprocess.run([*cmd, "--pairs", "set:x@0.5/0.5/0.5", "--out", str(out)], capture_output=True, text=True,
                        timeout=300, check=False)
    assert ok.returncode == 0, ok.stderr[-2000:]
    grid = read_image(out)
    # whole images (40 rows) over the zooms (a 30 x 40 window, 30 rows at x1), 4 px apart; 4 panels per row
    assert grid.shape[0] == 40 + 4 + 30
    assert grid.shape[1] == 4 * round(80 * 40 / 60)
    for bad, msg in (("set", "SET:IMAGE"), ("set:x@1/2", "CY/CX"), ("set:nope", "no image named nope")):
        proc = subprocess.run([*cmd, "--pairs", bad, "--out", str(tmp_path / "bad.png")], capture_output=True,
                              text=True, timeout=300, check=False)
        assert proc.returncode == 2 and msg in proc.stderr and "Traceback" not in proc.stderr, proc.stderr
    assert not (tmp_path / "bad.png").exists()
