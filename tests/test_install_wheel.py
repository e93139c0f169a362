"""A normal (non-editable) install works: build the wheel offline, install it into a fresh venv, and run the console
commands from a folder outside the checkout, with the dependencies of .venv visible but not the editable install.

Directories on PYTHONPATH do not process ``.pth`` files, so the editable finder of .venv is not active there: every
project module must come from the fresh venv (checked), and the shipped configs must be found in it.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
COMMANDS = ["tcmoa-fuse", "tcmoa-seg-eval", "tcmoa-det-eval", "tcmoa-eval-fusion", "tcmoa-train",
            "tcmoa-finetune-e2e", "tcmoa-stream", "tcmoa-explain"]
BUILD_INPUTS = ["fusion", "downstream", "pipelines", "configs", "pyproject.toml", "setup.py", "README.md", "LICENSE"]

PROBE = """
import json, fusion, downstream, pipelines, tcmoa_configs
from fusion.utils.config import config_path, shipped_config_root
from downstream.e2e.config import load_config
from downstream.detection.schedule import load_schedule
from fusion.training.config import DEFAULTS
from fusion.weights import SHIPPED_WEIGHTS
from downstream.segmentation.compare import default_config
from downstream.segmentation.engine import load_config as load_mmseg_config
e2e = load_config()
seg = load_mmseg_config(default_config(None))  # mmengine follows the _base_ files inside the installed configs
print(json.dumps({
    "seg_model": seg.model.type, "seg_config": str(default_config(None)),
    "modules": [m.__file__ for m in (fusion, downstream, pipelines, tcmoa_configs)],
    "configs": str(shipped_config_root()),
    "segmenter": e2e["segmenter"]["config"],
    "schedule": load_schedule("tiny_test")["model"],
    "schedule_by_path": load_schedule("configs/det/tiny_test.yaml")["model"],
    "train_defaults": DEFAULTS["model"]["name"],
    "weights": str(SHIPPED_WEIGHTS["tcmoa_tiny"]),
}))
"""


def _run(cmd: list[str], **kw) -> subprocess.CompletedProcess:
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, **kw)
    assert proc.returncode == 0, f"{cmd}: exit {proc.returncode}\n{proc.stdout[-2000:]}\n{proc.stderr[-3000:]}"
    return proc


@pytest.mark.slow  # ~12-20 s: a wheel build, a venv, a dozen interpreter starts
def test_wheel_install_runs_outside_the_checkout(tmp_path):
    # build from a copy, so that the checkout gets no build/ or egg-info and stale build files never leak in
    src = tmp_path / "src"
    src.mkdir()
    for name in BUILD_INPUTS:
        path = ROOT / name
        if path.is_dir():
            shutil.copytree(path, src / name, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        elif path.is_file():
            shutil.copy2(path, src / name)
    dist = tmp_path / "dist"
    _run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index", "-q",
          "-w", str(dist), str(src)], cwd=tmp_path)
    wheel = next(dist.glob("tcmoa_fusion-*.whl"))

    venv = tmp_path / "venv"
    _run([sys.executable, "-m", "venv", "--without-pip", str(venv)])
    py = venv / "bin" / "python"
    _run([sys.executable, "-m", "pip", "--python", str(py), "install", "--no-deps", "--no-index", "--no-compile",
          "-q", str(wheel)])

    work = tmp_path / "work"  # outside the checkout
    work.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "VIRTUAL_ENV"))}
    env.update(PYTHONPATH=sysconfig.get_paths()["purelib"],  # .venv's dependencies, without its .pth files
               PATH=f"{venv / 'bin'}{os.pathsep}{env.get('PATH', '')}", YOLO_OFFLINE="1",
               YOLO_CONFIG_DIR=str(tmp_path / "yolo"), OMP_NUM_THREADS="1")

    probe = json.loads(_run([str(py), "-c", PROBE], cwd=work, env=env).stdout)
    site = venv.resolve()
    for path in [*probe["modules"], probe["configs"], probe["segmenter"], probe["weights"], probe["seg_config"]]:
        assert Path(path).resolve().is_relative_to(site), f"{path} is not from the fresh install"
    assert Path(probe["segmenter"]).is_file() and Path(probe["weights"]).is_file()
    assert probe["schedule"] == probe["schedule_by_path"] and probe["train_defaults"] == "tcmoa_base"
    assert probe["seg_model"] == "EncoderDecoder"

    procs = {cmd: subprocess.Popen([str(venv / "bin" / cmd), "--help"], cwd=work, env=env, stdout=subprocess.PIPE,
                                   stderr=subprocess.PIPE, text=True) for cmd in COMMANDS}
    for cmd, proc in procs.items():
        out, err = proc.communicate(timeout=300)
        assert proc.returncode == 0, f"{cmd} --help: exit {proc.returncode}\n{err[-3000:]}"
        assert f"usage: {cmd}" in out

    rng = np.random.default_rng(0)
    y, x = np.mgrid[0:64, 0:80]
    Image.fromarray(np.stack([x * 3, y * 4, (x + y) * 2], -1).astype(np.uint8)).save(work / "A.png")
    Image.fromarray(rng.integers(0, 256, (64, 80), dtype=np.uint8)).save(work / "B.png")
    _run([str(venv / "bin" / "tcmoa-fuse"), "--a", "A.png", "--b", "B.png", "--method", "laplacian",
          "fuser.levels=1", "--out", str(tmp_path / "fused"), "--device", "cpu", "--no-progress"], cwd=work, env=env)
    fused = np.asarray(Image.open(tmp_path / "fused" / "A.png"))
    assert fused.shape == (64, 80, 3)

    cfg = json.loads(_run([str(venv / "bin" / "tcmoa-train"), "configs/fusion/tcmoa_tiny_cpu.py", "train.lr=1e-3",
                           "--print-config"], cwd=work, env=env).stdout)
    assert cfg["model"]["name"] == "tcmoa_tiny" and cfg["train"]["lr"] == 1e-3
