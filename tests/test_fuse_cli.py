"""pipelines/fuse.py: outputs, options, and bad input (one-line error, exit 2, nothing written, inputs untouched)."""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from fusion.data.color import split_luma_chroma
from fusion.data.layouts import list_pairs
from fusion.data.postprocess import official_bytescale
from fusion.fusers.base import create_fuser, list_fusers
from fusion.runners.dist import DistContext
from fusion.utils.cli import run_cli

ROOT = Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location("fuse_script", ROOT / "pipelines" / "fuse.py")
FUSE = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(FUSE)


@pytest.fixture(scope="module")
def average() -> None:
    if "average" not in list_fusers():
        pytest.skip("the 'average' baseline is not registered yet (fusion/fusers/baselines.py)")


def run(argv: list[str], capsys: pytest.CaptureFixture) -> tuple[int, str]:
    with pytest.raises(SystemExit) as exit_info:
        run_cli(lambda: FUSE.main([*argv, "--no-progress"]))
    return exit_info.value.code, capsys.readouterr().err


def make_image(path: Path, seed: int, size=(12, 8), gray: bool = False) -> np.ndarray:
    """Random image (size is W, H); returns what was written."""
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    arr = rng.integers(40, 200, (size[1], size[0]) if gray else (size[1], size[0], 3), dtype=np.uint8)
    Image.fromarray(arr).save(path)
    return arr


@pytest.fixture
def data(tmp_path: Path) -> Path:
    """A TNO-style tree: vi/ (colour) and ir/ (gray), pairs 01..03."""
    root = tmp_path / "data"
    for i, n in enumerate(("01", "02", "03")):
        make_image(root / "vi" / f"{n}.png", i)
        make_image(root / "ir" / f"{n}.png", 10 + i, gray=True)
    return root


def snapshot(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest() for p in root.rglob("*") if p.is_file()
    }


def expected_average(root: Path, name: str) -> np.ndarray:
    a = np.asarray(Image.open(root / "vi" / name).convert("RGB"))
    b = np.asarray(Image.open(root / "ir" / name).convert("RGB"))
    return create_fuser("average").fuse(a, b)


def read(path: Path) -> np.ndarray:
    return np.asarray(Image.open(path))


def test_fuses_a_dataset(data: Path, tmp_path: Path, capsys, average) -> None:
    out = tmp_path / "out"
    before = snapshot(data)
    code, err = run([str(data), "--method", "average", "--out", str(out)], capsys)
    assert code == 0, err
    assert sorted(p.name for p in out.iterdir()) == ["01.png", "02.png", "03.png", "fuse_summary.json"]
    for n in ("01.png", "02.png", "03.png"):
        assert np.array_equal(read(out / n), expected_average(data, n))
    summary = json.loads((out / "fuse_summary.json").read_text())
    assert (summary["method"], summary["layout"], summary["task"]) == ("average", "ir_vi", "vif")
    assert (summary["pairs"], summary["written"], summary["skipped_existing"]) == (3, 3, 0)
    assert snapshot(data) == before


# ------------------------------------------------------------------------------------------------------------------
# bad input: each case names the file, exits 2, writes nothing, leaves the inputs alone


def _missing_partner(data: Path, out: Path) -> str:
    (data / "ir" / "03.png").unlink()
    return str(data / "vi" / "03.png")


def _unreadable(data: Path, out: Path) -> str:
    (data / "ir" / "03.png").write_bytes(b"this is not a png")
    return str(data / "ir" / "03.png")


def _truncated(data: Path, out: Path) -> str:
    make_image(data / "ir" / "03.png", 3, size=(64, 48), gray=True)
    make_image(data / "vi" / "03.png", 4, size=(64, 48))
    raw = (data / "ir" / "03.png").read_bytes()
    (data / "ir" / "03.png").write_bytes(raw[: len(raw) // 2])
    return str(data / "ir" / "03.png")


def _sizes_differ(data: Path, out: Path) -> str:
    make_image(data / "ir" / "03.png", 5, size=(10, 8), gray=True)
    return str(data / "ir" / "03.png")


def _empty_folder(data: Path, out: Path) -> str:
    for p in [*data.glob("vi/*"), *data.glob("ir/*")]:
        p.unlink()
    return str(data / "vi")


def _out_inside_input(data: Path, out: Path) -> str:
    return str(data)


def _existing_output(data: Path, out: Path) -> str:
    out.mkdir()
    (out / "02.png").write_bytes(b"previous result")
    return str(out / "02.png")


BAD = {
    "missing_partner": _missing_partner,
    "unreadable": _unreadable,
    "truncated": _truncated,
    "sizes_differ": _sizes_differ,
    "empty_folder": _empty_folder,
    "out_inside_input": _out_inside_input,
    "existing_output": _existing_output,
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_input(data: Path, tmp_path: Path, capsys, average, case: str) -> None:
    out = data / "vi" / "fused" if case == "out_inside_input" else tmp_path / "out"
    named = BAD[case](data, out)
    before_in = snapshot(data)
    before_out = snapshot(out) if out.exists() else None
    code, err = run([str(data), "--method", "average", "--out", str(out)], capsys)
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and named in lines[0], err
    assert snapshot(data) == before_in  # inputs untouched, nothing added to them
    if before_out is None:
        assert not out.exists()  # not even the output folder
    else:
        assert snapshot(out) == before_out


def test_bad_pair_with_a_and_b(tmp_path: Path, capsys, average) -> None:
    a = make_image(tmp_path / "in" / "a.png", 0)
    make_image(tmp_path / "in" / "b.png", 1, size=(6, 6))
    argv = ["--a", str(tmp_path / "in/a.png"), "--b", str(tmp_path / "in/b.png"), "--method", "average", "--out"]
    code, err = run([*argv, str(tmp_path / "o")], capsys)
    assert code == 2 and "b.png" in err and not (tmp_path / "o").exists()
    code, err = run([*argv, str(tmp_path / "in" / "o")], capsys)
    assert code == 2 and "inside the input folder" in err
    code, err = run([*argv, str(tmp_path / "o"), "--resize", "b_to_a"], capsys)
    assert code == 0, err
    assert read(tmp_path / "o" / "a.png").shape == a.shape


@pytest.mark.parametrize(
    "argv",
    [
        ["--method", "average"],  # no source
        ["SRC", "--a", "x", "--b", "y", "--method", "average"],  # both
        ["--a", "SRC/vi", "--b", "SRC/ir", "--split", "test", "--method", "average"],
        ["SRC", "--method", "no_such_method"],
        ["SRC", "--method", "average", "--set", "bogus=1"],
        ["SRC", "--method", "average", "--layout", "nope"],
        ["SRC", "--method", "average", "--split", "train"],
        ["SRC", "--method", "average", "--device", "cuda:7"],
    ],
)
def test_bad_options(data: Path, tmp_path: Path, capsys, average, argv: list[str]) -> None:
    if "--device" in argv and __import__("torch").cuda.is_available():
        pytest.skip("CUDA is available here")
    argv = [x.replace("SRC", str(data)) for x in argv]
    code, err = run([*argv, "--out", str(tmp_path / "o")], capsys)
    assert code == 2 and len(err.strip().splitlines()) == 1 and err.startswith("error: ")
    assert not (tmp_path / "o").exists()


# ------------------------------------------------------------------------------------------------------------------
# options


def test_overwrite_and_skip_existing(data: Path, tmp_path: Path, capsys, average) -> None:
    out = tmp_path / "out"
    assert run([str(data), "--method", "average", "--out", str(out)], capsys)[0] == 0
    (out / "02.png").unlink()
    os.utime(out / "01.png", (1_000_000, 1_000_000))
    code, err = run([str(data), "--method", "average", "--out", str(out), "--skip-existing"], capsys)
    assert code == 0, err
    summary = json.loads((out / "fuse_summary.json").read_text())
    assert (summary["written"], summary["skipped_existing"]) == (1, 2)
    assert (out / "01.png").stat().st_mtime == 1_000_000 and np.array_equal(
        read(out / "02.png"), expected_average(data, "02.png")
    )
    (out / "01.png").write_bytes(b"stale")
    assert run([str(data), "--method", "average", "--out", str(out), "--overwrite"], capsys)[0] == 0
    assert np.array_equal(read(out / "01.png"), expected_average(data, "01.png"))
    code, err = run([str(data), "--method", "average", "--out", str(out), "--overwrite", "--skip-existing"], capsys)
    assert code == 2  # argparse: mutually exclusive


def test_compat_official_stretches(data: Path, tmp_path: Path, capsys, average) -> None:
    out = tmp_path / "out"
    assert run([str(data), "--method", "average", "--out", str(out), "--compat", "official"], capsys)[0] == 0
    got = read(out / "01.png")
    expected = official_bytescale(expected_average(data, "01.png"))
    assert np.array_equal(got, expected) and got.min() == 0 and got.max() == 255


def test_color_ycbcr_keeps_visible_chroma(data: Path, tmp_path: Path, capsys, average) -> None:
    out = tmp_path / "out"
    assert run([str(data), "--method", "average", "--out", str(out), "--color", "ycbcr"], capsys)[0] == 0
    fused = read(out / "01.png")
    vis = read(data / "vi" / "01.png")
    assert np.abs(split_luma_chroma(fused)[1] - split_luma_chroma(vis)[1]).mean() < 2.0
    summary = json.loads((out / "fuse_summary.json").read_text())
    assert summary["settings"]["color"] == "ycbcr"


def test_grid_batches_ext_and_task(data: Path, tmp_path: Path, capsys, average) -> None:
    out = tmp_path / "out"
    argv = [str(data), "--method", "average", "--out", str(out), "--grid", "--batch-size", "2", "--ext", "jpg"]
    code, err = run(argv, capsys)
    assert code == 0, err
    assert sorted(p.name for p in out.glob("*.jpg")) == ["01.jpg", "02.jpg", "03.jpg"]
    grid = out / "_grid"
    assert sorted(p.name for p in grid.iterdir()) == ["01.jpg", "02.jpg", "03.jpg", "contact_sheet.jpg"]
    assert read(grid / "01.jpg").shape[1] > 3 * 12  # a | b | fused side by side
    assert read(grid / "contact_sheet.jpg").shape[0] > 3 * 100
    # two folders, explicit task
    out2 = tmp_path / "out2"
    code, err = run(["--a", str(data / "vi"), "--b", str(data / "ir"), "--task", "mff", "--method", "average",
                     "--out", str(out2)], capsys)  # fmt: skip
    assert code == 0, err
    assert json.loads((out2 / "fuse_summary.json").read_text())["task"] == "mff"
    assert np.array_equal(read(out2 / "03.png"), expected_average(data, "03.png"))


def test_shard_and_env(monkeypatch) -> None:
    assert DistContext(rank=1, world_size=3).shard(list(range(8))) == [1, 4, 7]
    monkeypatch.setenv("RANK", "2")
    monkeypatch.setenv("WORLD_SIZE", "2")
    with pytest.raises(Exception, match="RANK"):
        DistContext.from_env()


# ------------------------------------------------------------------------------------------------------------------
# real samples


REAL_SETS = ["tno", "msrs", "llvip", "roadscene", "m3fd", "vifb", "mfnet", "mef_mefb", "mff_lytro", "medical_harvard"]


@pytest.mark.shared_data
@pytest.mark.parametrize("name", REAL_SETS)
def test_real_sample_sets(shared_data: Path, tmp_path: Path, capsys, average, name: str) -> None:
    root = shared_data / name
    if not root.is_dir():
        pytest.skip(f"{root} not in this copy of the shared data")
    out = tmp_path / "out"
    code, err = run([str(root), "--method", "average", "--out", str(out)], capsys)
    assert code == 0, err
    pairs = list_pairs(root)
    written = sorted(str(p.relative_to(out)) for p in out.rglob("*") if p.is_file() and p.name != "fuse_summary.json")
    assert written == sorted(p.output_name for p in pairs)
    for p in pairs[:1]:
        assert Path(p.output_name).name == p.a.name  # named after source a
        assert read(out / p.output_name).shape[:2] == read(p.a).shape[:2]


# ------------------------------------------------------------------------------------------------------------------
# torchrun


def _torchrun(args: list[str], timeout: float = 180) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           str(ROOT / "pipelines" / "fuse.py"), *args, "--device", "cpu", "--no-progress"]  # fmt: skip
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, 9)  # the workers too, not only the launcher
        proc.communicate()
        raise
    return subprocess.CompletedProcess(cmd, proc.returncode, out, err)


@pytest.mark.slow
def test_torchrun_two_processes(data: Path, tmp_path: Path, average) -> None:
    for i in range(4, 7):
        make_image(data / "vi" / f"0{i}.png", 20 + i)
        make_image(data / "ir" / f"0{i}.png", 30 + i, gray=True)
    out = tmp_path / "out"
    proc = _torchrun([str(data), "--method", "average", "--out", str(out)])
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert sorted(p.name for p in out.glob("*.png")) == [f"0{i}.png" for i in range(1, 7)]
    assert np.array_equal(read(out / "06.png"), expected_average(data, "06.png"))
    summary = json.loads((out / "fuse_summary.json").read_text())
    assert summary["world_size"] == 2 and summary["written"] == 6
    assert sorted(p["written"] for p in summary["per_rank"]) == [3, 3]

    # a bad file in one process's shard stops both before either writes
    (data / "ir" / "05.png").write_bytes(b"broken")
    out2 = tmp_path / "out2"
    proc = _torchrun([str(data), "--method", "average", "--out", str(out2)])
    assert proc.returncode != 0 and str(data / "ir" / "05.png") in proc.stderr
    assert not out2.exists()


@pytest.mark.slow
def test_tcmoa_checkpoint_spec(data: Path, tmp_path: Path, capsys) -> None:
    """``--method tcmoa_tiny:<checkpoint>`` with a randomly initialised checkpoint, colour and batching."""
    models = pytest.importorskip("fusion.models")
    if "tcmoa_tiny" not in list_fusers():
        pytest.skip("tcmoa_tiny is not registered")
    ckpt = models.save_checkpoint(models.create_model("tcmoa_tiny"), tmp_path / "tiny.safetensors")
    out = tmp_path / "out"
    argv = [str(data), "--method", f"tcmoa_tiny:{ckpt}", "--out", str(out), "--device", "cpu", "--color", "ycbcr",
            "--batch-size", "2"]  # fmt: skip
    code, err = run(argv, capsys)
    assert code == 0, err
    assert sorted(p.name for p in out.glob("*.png")) == ["01.png", "02.png", "03.png"]
    assert read(out / "01.png").shape == (8, 12, 3)
    settings = json.loads((out / "fuse_summary.json").read_text())["settings"]
    assert (settings["variant"], settings["device"], settings["color"]) == ("tcmoa_tiny", "cpu", "ycbcr")
