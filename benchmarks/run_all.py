"""Run every benchmark with its CPU-sized defaults and collect the Markdown reports in one place.

Each benchmark measures ratios against a baseline taken in the same run (speed targets are never timed tests).
Usage: ``python benchmarks/run_all.py [--out runs/bench]``.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--out", default="runs/bench", help="folder for all reports")
    args = ap.parse_args()
    out = Path(args.out)
    failed = []
    for script in sorted(HERE.glob("bench_*.py")):
        dest = out / script.stem.removeprefix("bench_")
        print(f"== {script.name} -> {dest}", flush=True)
        r = subprocess.run([sys.executable, str(script), "--out", str(dest)])
        if r.returncode:
            failed.append(script.name)
    if failed:
        print(f"failed: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
