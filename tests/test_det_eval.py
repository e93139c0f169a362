"""End to end: pipelines/det_eval.py on a tiny LLVIP tree of the real samples and on synthetic scenes, offline.

Each run trains YOLOv8n for one epoch at 64 px (it learns nothing; the metrics are checked for range and shape).
A Python audit hook records every DNS lookup and socket connection while the pipeline runs; any is a failure.
"""

from __future__ import annotations

import csv
import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from fusion.errors import CheckpointError, ConfigError

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "pipelines" / "det_eval.py"
COLUMNS = ["input", "mAP50", "mAP50-95", "precision", "recall", "recall_1fppi", "miss_rate"]

_GUARD = {"on": False, "events": []}
_NET_EVENTS = {"socket.getaddrinfo", "socket.gethostbyname", "socket.gethostbyname_ex", "socket.gethostbyaddr",
               "urllib.Request", "http.client.connect"}  # fmt: skip


def _audit(event: str, args: tuple) -> None:
    if not _GUARD["on"]:
        return
    remote = event == "socket.connect" and isinstance(args[1], tuple)  # (host, port): not a Unix socket
    if event in _NET_EVENTS or remote:
        _GUARD["events"].append(f"{event} {args[1:]!r}"[:200])
        raise ConnectionRefusedError(f"test guard: network access attempted ({event})")


sys.addaudithook(_audit)  # hooks cannot be removed; this one acts only while _GUARD["on"]


@pytest.fixture()
def no_network():
    """Fail the test if anything resolves a host name or opens a network connection."""
    _GUARD["events"].clear()
    _GUARD["on"] = True
    try:
        yield _GUARD["events"]
    finally:
        _GUARD["on"] = False
    assert _GUARD["events"] == [], f"network access attempted: {_GUARD['events']}"


@pytest.fixture(scope="module", autouse=True)
def ultralytics_offline(tmp_path_factory):
    """Project rule: the offline setup before ultralytics is imported, settings in a temporary folder."""
    old = os.environ.get("YOLO_CONFIG_DIR")
    os.environ["YOLO_CONFIG_DIR"] = str(tmp_path_factory.mktemp("ultralytics_cfg"))
    from downstream._compat import setup_ultralytics_offline

    setup_ultralytics_offline()
    yield
    if old is None:
        os.environ.pop("YOLO_CONFIG_DIR", None)
    else:
        os.environ["YOLO_CONFIG_DIR"] = old


def _main(args: list[str]) -> int:
    sys.path.insert(0, str(ROOT / "pipelines"))
    try:
        import det_eval
    finally:
        sys.path.pop(0)
    return det_eval.main(args)


def _rows(out: Path) -> list[dict[str, str]]:
    with open(out / "results.csv", newline="") as f:
        reader = csv.DictReader(f)
        assert reader.fieldnames == COLUMNS
        return list(reader)


def test_guard_catches_lookups(no_network):
    with pytest.raises(ConnectionRefusedError):
        socket.getaddrinfo("localhost", 80)
    assert no_network and no_network[0].startswith("socket.getaddrinfo")
    no_network.clear()  # the deliberate lookup above is not a failure


@pytest.fixture(scope="module")
def llvip_run(llvip_link_tree, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("det_llvip")
    tree = llvip_link_tree(tmp / "LLVIP", ["010001", "010002", "010003", "010004"], ["010013", "010015"])
    out = tmp / "out"
    args = [str(tree), "--out", str(out), "--schedule", "tiny_test", "--device", "cpu", "--inputs", "ir,average,rgbt",
            "--qualitative", "2"]  # fmt: skip
    _GUARD["events"].clear()
    _GUARD["on"] = True
    try:
        assert _main(args) == 0
        first = json.loads((out / "run.json").read_text())
        assert _main(args) == 0  # a rerun reuses the trainings
    finally:
        _GUARD["on"] = False
    assert _GUARD["events"] == [], f"network access attempted: {_GUARD['events']}"
    return tree, out, first


@pytest.mark.slow
def test_det_eval_on_real_llvip_tree(llvip_run):
    tree, out, first = llvip_run
    rows = _rows(out)
    assert [r["input"] for r in rows] == ["ir", "average", "rgbt"]
    for r in rows:
        for c in COLUMNS[1:]:
            assert 0.0 <= float(r[c]) <= 1.0, (r, c)
    for name in ("results.md", "curves.png", "qualitative.png", "run.json"):
        assert (out / name).stat().st_size > 0
    assert (out / "curves.png").read_bytes()[:4] == b"\x89PNG"
    run = json.loads((out / "run.json").read_text())
    assert run["dataset"]["sizes"] == {"train": 4, "test": 2} and run["dataset"]["classes"] == ["person"]
    assert not any(t["reused_training"] for t in first["timings"].values())
    assert all(t["reused_training"] for t in run["timings"].values())
    metrics = json.loads((out / "metrics" / "ir.json").read_text())
    assert metrics["n_images"] == 2 and metrics["n_gt"] == 4  # 010013: 3 people, 010015: 1
    # Labels written once per input from the shared XML; the 4-channel input really trained a 4-channel model.
    assert (out / "datasets" / "ir" / "labels" / "train" / "010001.txt").read_text().count("\n") == 6
    assert "channels: 4" in (out / "datasets" / "rgbt" / "data.yaml").read_text()
    from downstream.detection.yolo import detector_info, load_detector

    assert detector_info(load_detector(out / "train" / "rgbt" / "weights" / "last.safe.pt"))["channels"] == 4
    # Nothing was written into the dataset tree.
    assert sorted(p.name for p in tree.iterdir()) == ["Annotations", "infrared", "visible"]


@pytest.mark.slow
def test_det_eval_given_checkpoint(llvip_run, tmp_path, no_network):
    tree, out, _ = llvip_run
    given = tmp_path / "given"
    weights = out / "train" / "ir" / "weights" / "last.safe.pt"
    assert _main([str(tree), "--out", str(given), "--det-checkpoint", str(weights), "--schedule", "tiny_test",
                  "--device", "cpu", "--inputs", "ir,vis", "--qualitative", "0"]) == 0  # fmt: skip
    assert [r["input"] for r in _rows(given)] == ["ir", "vis"]
    assert not (given / "train").exists() and not (given / "qualitative.png").exists()
    # The same weights on the same images give the same numbers as the training run's own evaluation.
    assert _rows(given)[0] == _rows(out)[0]
    # ultralytics' own pickle of the same weights: refused, unless the user vouches for it; then the same numbers.
    pickled = out / "train" / "ir" / "weights" / "last.pt"
    with pytest.raises(CheckpointError, match="pickle that can run code"):
        _main([str(tree), "--out", str(tmp_path / "refused"), "--det-checkpoint", str(pickled), "--device", "cpu",
               "--inputs", "ir"])  # fmt: skip
    trusted = tmp_path / "trusted"
    assert _main([str(tree), "--out", str(trusted), "--det-checkpoint", str(pickled), "--trust-checkpoint",
                  "--schedule", "tiny_test", "--device", "cpu", "--inputs", "ir", "--qualitative", "0"]) == 0
    assert _rows(trusted)[0] == _rows(out)[0]
    with pytest.raises(ConfigError, match="takes 3 channels, input 'rgbt' has 4"):
        _main([str(tree), "--out", str(given), "--det-checkpoint", str(weights), "--inputs", "ir,rgbt",
               "--device", "cpu"])  # fmt: skip


def test_det_eval_synthetic_offline(tmp_path, no_network):
    out = tmp_path / "syn"
    assert _main(["--out", str(out), "--schedule", "tiny_test", "--synthetic-size", "4", "2", "--device", "cpu",
                  "--inputs", "vis,maximum", "--qualitative", "1"]) == 0  # fmt: skip
    assert [r["input"] for r in _rows(out)] == ["vis", "maximum"]
    assert (out / "synthetic_llvip" / "Annotations").is_dir()
    assert len(list((out / "inputs").glob("maximum-*/test/*.png"))) == 2
    md = (out / "results.md").read_text()
    assert "| vis |" in md and "miss rate: log-average over FPPI in [1e-2, 1]" in md


def test_bad_arguments_fail_fast(tmp_path, no_network):
    with pytest.raises(ConfigError, match="not ir, vis, rgbt or a fusion method"):
        _main(["--out", str(tmp_path / "x"), "--inputs", "ir,nofuser"])
    with pytest.raises(CheckpointError, match="weights file not found"):
        _main(["--out", str(tmp_path / "x"), "--det-checkpoint", str(tmp_path / "yolov8n.pt")])
    with pytest.raises(ConfigError, match="unknown training argument 'bogus'"):
        _main(["--out", str(tmp_path / "x"), "bogus=1"])
    assert not (tmp_path / "x" / "synthetic_llvip").exists()  # refused before any slow step


def test_cli_missing_checkpoint_is_one_line(tmp_path):
    env = {**os.environ, "YOLO_CONFIG_DIR": str(tmp_path / "cfg")}
    r = subprocess.run([sys.executable, str(SCRIPT), "--out", str(tmp_path / "o"), "--det-checkpoint", "yolov8n.pt"],
                       capture_output=True, text=True, env=env, timeout=120)  # fmt: skip
    assert r.returncode == 2
    assert r.stderr.strip().splitlines() == [
        "error: yolov8n.pt: weights file not found (no download is attempted; give a local .pt or a .yaml)"
    ]


def test_synthetic_scenes_are_rewritten_when_the_generator_changes(tmp_path):
    from downstream.detection.evaluate import prepare_synthetic_llvip
    from fusion.data.synthetic import GENERATOR_VERSION as SYNTHETIC_GENERATOR_VERSION
    from fusion.errors import DatasetError

    sizes = {"n_train": 2, "n_test": 1, "height": 64, "width": 80}
    root = prepare_synthetic_llvip(tmp_path / "syn", **sizes)
    stamp = json.loads((root / "synthetic.json").read_text())
    assert stamp["generator"] == SYNTHETIC_GENERATOR_VERSION and stamp["n_train"] == 2
    marker = root / "visible" / "train" / "010001.jpg"
    os.utime(marker, (1, 1))
    assert prepare_synthetic_llvip(root, **sizes) == root and marker.stat().st_mtime == 1  # reused as it is
    # Scenes from an older generator (no version in the stamp) are replaced, not reused.
    (root / "synthetic.json").write_text(json.dumps({k: v for k, v in stamp.items() if k != "generator"}))
    prepare_synthetic_llvip(root, **sizes)
    assert marker.stat().st_mtime > 1
    assert json.loads((root / "synthetic.json").read_text())["generator"] == SYNTHETIC_GENERATOR_VERSION
    # A folder the writer did not make is never deleted.
    foreign = tmp_path / "mine"
    foreign.mkdir()
    (foreign / "keep.txt").write_text("x")
    with pytest.raises(DatasetError, match="not written by det_eval"):
        prepare_synthetic_llvip(foreign, **sizes)
    assert (foreign / "keep.txt").read_text() == "x"
