"""pipelines/eval_fusion.py and fusion.metrics.report: pairing, resuming, tables, plots, errors."""

from __future__ import annotations

import csv
import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from fusion.errors import ConfigError, DatasetError
from fusion.metrics import evaluate
from fusion.metrics.report import EvalConfig, discover_fused, pair_sources, run_evaluation
from fusion.utils.cli import run_cli
from fusion.utils.io import read_image, write_image

ROOT = Path(__file__).resolve().parents[1]
METRICS = ["EN", "SD", "SSIM"]


@pytest.fixture(autouse=True)
def _one_thread():
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


def _img(seed: int, color: bool) -> np.ndarray:
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:64, 0:72]
    base = 120 + 50 * np.sin(xx / (4.0 + seed)) + rng.normal(0, 6, (64, 72))
    g = np.clip(base, 0, 255).astype(np.uint8)
    return np.stack([g, g // 2 + 60, 255 - g], axis=2) if color else g


@pytest.fixture()
def dataset(tmp_path: Path) -> Path:
    for i, stem in enumerate(["a_1", "b_2", "c"]):
        write_image(tmp_path / "ir" / f"{stem}.png", _img(i, False))
        write_image(tmp_path / "vis" / f"{stem}.png", _img(i + 10, True))
        for m, shift in (("m1", 0), ("m2", 30)):
            fused = np.clip(_img(i + 20, True).astype(int) + shift, 0, 255).astype(np.uint8)
            write_image(tmp_path / "fused" / m / f"{stem}.png", fused)
            write_image(tmp_path / "flat" / f"{stem}_{m.upper()}.png", fused)
    write_image(tmp_path / "ir" / "lonely.png", _img(99, False))  # no visible partner: skipped
    return tmp_path


def _rows(path: Path) -> list[dict[str, str]]:
    with path.open() as fh:
        return list(csv.DictReader(fh))


def test_pairing_and_discovery(dataset: Path):
    pairs = pair_sources(dataset / "ir", dataset / "vis")
    assert [p[0] for p in pairs] == ["a_1", "b_2", "c"]
    stems = [p[0] for p in pairs]
    subs = discover_fused([str(dataset / "fused")], stems)
    assert [s.method for s in subs] == ["m1", "m2"] and len(subs[0].files) == 3
    named = discover_fused([f"ours={dataset / 'fused' / 'm2'}"], stems)
    assert named[0].method == "ours"
    flat = discover_fused([str(dataset / "flat")], stems, "{image}_{method}.png")
    assert {s.method: sorted(s.files) for s in flat} == {"M1": stems, "M2": stems}
    with pytest.raises(DatasetError, match="no such folder"):
        pair_sources(dataset / "nope", dataset / "vis")
    with pytest.raises(ConfigError, match="must contain"):
        discover_fused([str(dataset / "flat")], stems, "{image}.png")


def test_run_writes_csv_table_plots_and_resumes(dataset: Path):
    out = dataset / "out"
    cfg = EvalConfig(
        ir_dir=dataset / "ir", vis_dir=dataset / "vis", out_dir=out, profile="tang",
        fused=[str(dataset / "fused")], methods=["m2", "average"], metrics=METRICS,
    )
    res = run_evaluation(cfg)
    assert res.scored == 6 and res.skipped == 0
    rows = _rows(res.csv_path)
    assert [(r["method"], r["image"]) for r in rows] == [
        ("m2", "a_1"), ("m2", "b_2"), ("m2", "c"), ("average", "a_1"), ("average", "b_2"), ("average", "c")
    ]
    assert all(r["profile"] == "tang" for r in rows)
    # The CSV holds exactly what evaluate() gives for that triple.
    ir = read_image(dataset / "ir" / "b_2.png", "unchanged")
    vis = read_image(dataset / "vis" / "b_2.png", "unchanged")
    fused = read_image(dataset / "fused" / "m2" / "b_2.png", "unchanged")
    want = evaluate(fused, ir, vis, "tang", METRICS)
    assert float(rows[1]["SD"]) == pytest.approx(want["SD"], rel=1e-11)
    table = res.table_path.read_text()
    assert "Profile: **tang**" in table and "| m2 | 3 |" in table and "| average | 3 |" in table
    assert "SSIM ↑" in table
    assert sorted(p.name for p in res.plot_paths) == ["bar_tang.png", "box_tang.png"]
    assert all(p.stat().st_size > 1000 for p in res.plot_paths)

    cfg.plots = False
    again = run_evaluation(cfg)
    assert again.scored == 0 and again.skipped == 6
    # Drop one row: only that pair is recomputed.
    lines = res.csv_path.read_text().splitlines()
    res.csv_path.write_text("\n".join(lines[:-1]) + "\n")
    third = run_evaluation(cfg)
    assert third.scored == 1 and len(_rows(third.csv_path)) == 6


def test_output_inside_input_is_refused(dataset: Path):
    cfg = EvalConfig(
        ir_dir=dataset / "ir", vis_dir=dataset / "vis", out_dir=dataset / "fused" / "m1" / "eval",
        fused=[str(dataset / "fused")], metrics=["EN"], plots=False,
    )
    with pytest.raises(ConfigError, match="inside the input folder"):
        run_evaluation(cfg)
    bad = EvalConfig(ir_dir=dataset / "ir", vis_dir=dataset / "vis", out_dir=dataset / "o", methods=["nosuch"])
    with pytest.raises(ConfigError, match="neither a fused folder method nor a fuser"):
        run_evaluation(bad)


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(ROOT / "pipelines" / "eval_fusion.py"), *args],
        capture_output=True, text=True, timeout=300, cwd=ROOT,
    )


def test_cli_success(dataset: Path):
    out = dataset / "cli"
    ok = _cli(
        "--ir", str(dataset / "ir"), "--vis", str(dataset / "vis"), "--fused", str(dataset / "flat"),
        "--fused-pattern", "{image}_{method}.png", "--profile", "vifb", "--metrics", "EN,SD",
        "--out", str(out), "--no-plots", "--threads", "1",
    )
    assert ok.returncode == 0, ok.stderr
    assert "summary table" in ok.stdout and (out / "metrics_vifb.csv").is_file()
    assert len(_rows(out / "metrics_vifb.csv")) == 6


def test_cli_errors_are_one_line_exit_2(dataset: Path, capsys):
    spec = importlib.util.spec_from_file_location("eval_fusion_script", ROOT / "pipelines" / "eval_fusion.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    base = ["--ir", str(dataset / "ir"), "--vis", str(dataset / "vis"), "--out", str(dataset / "o2")]
    for extra, msg in (
        (["--methods", "average", "--profile", "nope"], "error: unknown metric profile"),
        (["--fused", str(dataset / "missing")], "error: "),
        (["--methods", "average", "--metrics", "XYZ"], "error: metric 'XYZ' is not defined"),
    ):
        with pytest.raises(SystemExit) as exc:
            run_cli(lambda extra=extra: mod.main([*base, *extra]))
        err = capsys.readouterr().err
        assert exc.value.code == 2 and err.startswith(msg) and err.count("\n") == 1, err


def test_only_fusers_named_keeps_all_fused_methods(dataset: Path):
    cfg = EvalConfig(
        ir_dir=dataset / "ir", vis_dir=dataset / "vis", out_dir=dataset / "o3", fused=[str(dataset / "fused")],
        methods=["maximum"], metrics=["EN"], plots=False,
    )
    res = run_evaluation(cfg)
    assert [r["method"] for r in res.rows][::3] == ["maximum", "m1", "m2"]


def test_bad_result_file_is_skipped_not_fatal(dataset: Path):
    write_image(dataset / "fused" / "m1" / "c.png", np.zeros((20, 30, 3), np.uint8))  # wrong size
    cfg = EvalConfig(
        ir_dir=dataset / "ir", vis_dir=dataset / "vis", out_dir=dataset / "o4", fused=[str(dataset / "fused")],
        methods=["m1"], metrics=["EN"], plots=False,
    )
    res = run_evaluation(cfg)
    assert res.failed == ["m1/c"] and res.scored == 2
    assert [r["image"] for r in _rows(res.csv_path)] == ["a_1", "b_2"]


def test_fuser_settings_reach_the_on_the_fly_fusers(dataset: Path):
    runs = {}
    for levels in (1, 4):
        out = dataset / f"lap{levels}"
        run_evaluation(EvalConfig(ir_dir=dataset / "ir", vis_dir=dataset / "vis", out_dir=out, metrics=["EN"],
                                  methods=["laplacian"], fuser_settings={"levels": levels}, save_fused=True,
                                  plots=False))
        runs[levels] = read_image(out / "fused" / "laplacian" / "b_2.png", "unchanged")
    assert runs[1].shape == runs[4].shape and not np.array_equal(runs[1], runs[4])
    with pytest.raises(ConfigError, match="unknown setting"):
        run_evaluation(EvalConfig(ir_dir=dataset / "ir", vis_dir=dataset / "vis", out_dir=dataset / "bad",
                                  methods=["laplacian"], fuser_settings={"nope": 1}, plots=False))


def test_worker_processes_give_the_same_rows(dataset: Path):
    """--jobs 2 scores in two spawned processes (both cores); the CSV is the same, in the same order."""
    outs = {}
    for jobs in (1, 2):
        cfg = EvalConfig(ir_dir=dataset / "ir", vis_dir=dataset / "vis", out_dir=dataset / f"out{jobs}",
                         profile="tang", fused=[str(dataset / "fused")], methods=["m2", "average"],
                         metrics=METRICS, jobs=jobs, plots=False)
        res = run_evaluation(cfg)
        assert res.scored == 6 and not res.failed
        outs[jobs] = res.csv_path.read_text()
    assert outs[1] == outs[2]
    from fusion.metrics.report import _workers

    auto = EvalConfig(ir_dir=dataset, vis_dir=dataset, out_dir=dataset / "x", jobs=0)
    assert _workers(auto, 10) == 1 and _workers(auto, 200) == 1  # fused files: the metric threads, one process
    assert _workers(auto, 10, fusing=True) == 1 and _workers(auto, 200, fusing=True) == min(os.cpu_count() or 1, 6)
    assert _workers(EvalConfig(ir_dir=dataset, vis_dir=dataset, out_dir=dataset, jobs=2, device="cuda"), 100) == 1


def test_rank_methods_by_mean_rank_on_common_images():
    from fusion.metrics import get_profile
    from fusion.metrics.report import rank_methods, rank_table

    prof = get_profile("tang")  # SD: higher is better; MSE: lower is better
    rows = [
        {"method": "a", "image": "1", "SD": 10, "MSE": 5}, {"method": "a", "image": "2", "SD": 20, "MSE": 5},
        {"method": "b", "image": "1", "SD": 30, "MSE": 1}, {"method": "b", "image": "2", "SD": 30, "MSE": 1},
        {"method": "c", "image": "1", "SD": 15, "MSE": 1}, {"method": "c", "image": "2", "SD": 15, "MSE": 1},
        {"method": "c", "image": "3", "SD": 99, "MSE": 0},  # not scored for a and b: left out of the ranking
    ]
    ranked, common = rank_methods(rows, ["SD", "MSE"], prof)
    assert common == ["1", "2"]
    by = {r["method"]: r for r in ranked}
    assert by["b"]["rank_SD"] == 1 and by["a"]["rank_SD"] == 2.5 and by["c"]["rank_SD"] == 2.5  # 15 == 15: tie
    assert by["b"]["rank_MSE"] == 1.5 and by["c"]["rank_MSE"] == 1.5 and by["a"]["rank_MSE"] == 3
    assert [r["method"] for r in ranked] == ["b", "c", "a"] and [r["place"] for r in ranked] == [1, 2, 3]
    assert by["c"]["mean_rank"] == pytest.approx(2.0)
    md = rank_table(ranked, ["SD", "MSE"], prof, common, highlight=["c"])
    assert "| 2 | **c** | 2.00 | 2.5 | 1.5 |" in md and "on the 2 images" in md
    with pytest.raises(ConfigError, match="two methods"):
        rank_methods(rows[:2], ["SD"], prof)


def test_run_with_rank_writes_the_ranking(dataset: Path):
    cfg = EvalConfig(ir_dir=dataset / "ir", vis_dir=dataset / "vis", out_dir=dataset / "ranked", profile="tang",
                     fused=[str(dataset / "fused")], methods=["m2", "average"], metrics=METRICS, rank=True,
                     plots=False)
    run_evaluation(cfg)
    md = (dataset / "ranked" / "rank_tang.md").read_text()
    assert "| **average** |" in md and "| m2 |" in md
    assert (dataset / "ranked" / "rank_tang.csv").read_text().startswith("place,method,mean_rank")
