"""One command-line grammar in every script: positional ``key=value`` overrides (``fuser.<key>=<value>`` for fuser
settings), comma-separated lists, the old spellings as hidden deprecated aliases, and one-line errors (exit 2)."""

from __future__ import annotations

import importlib
import json
import logging
import sys
import tomllib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from fusion.errors import ConfigError
from fusion.utils.cli import (
    legacy_overrides,
    parse_overrides,
    run_cli,
    script_positionals,
    split_list_overrides,
)

ROOT = Path(__file__).resolve().parents[1]
SCRIPTS = {  # console command -> module (pyproject.toml [project.scripts])
    "tcmoa-fuse": "fuse",
    "tcmoa-seg-eval": "seg_eval",
    "tcmoa-det-eval": "det_eval",
    "tcmoa-eval-fusion": "eval_fusion",
    "tcmoa-train": "train_fusion",
    "tcmoa-finetune-e2e": "finetune_e2e",
    "tcmoa-stream": "stream_fuse",
    "tcmoa-explain": "explain",
}


def _script(name: str):
    return importlib.import_module(f"pipelines.{name}")


def _exit_2_one_line(main, argv: list[str], capsys) -> str:
    with pytest.raises(SystemExit) as exc:
        run_cli(lambda: main(argv))
    err = capsys.readouterr().err.strip()
    assert exc.value.code == 2, err
    assert err.startswith("error: ") and "\n" not in err, err
    return err


# ---------------------------------------------------------------------------------------------------- helpers
def test_script_positionals_split_plain_words_from_overrides(tmp_path):
    odd = tmp_path / "a=b"
    odd.mkdir()
    plain, over = script_positionals([None, "data/x", "fuser.levels=5", "epochs=3", str(odd)], max_plain=2,
                                     plain_name="roots")
    assert plain == ["data/x", str(odd)] and over == ["fuser.levels=5", "epochs=3"]
    with pytest.raises(ConfigError, match="unexpected argument 'b': expected at most 1 dataset root"):
        script_positionals(["a", "b"], max_plain=1, plain_name="dataset root")


def test_list_words_with_a_dotted_key_are_overrides():
    items, over = split_list_overrides(["ir,vis", "gff", "ours=folder:x", "fuser.device=cpu", "a.b=1"])
    assert items == ["ir", "vis", "gff", "ours=folder:x"] and over == ["fuser.device=cpu", "a.b=1"]


def test_legacy_overrides_warn_once_and_join_the_section(caplog):
    caplog.set_level(logging.WARNING, logger="fusion.utils.cli")
    assert legacy_overrides(["levels=5", "x=1"], option="--set", section="fuser") == ["fuser.levels=5", "fuser.x=1"]
    assert legacy_overrides([], option="--set", section="fuser") == []
    warnings = [r for r in caplog.records if "deprecated" in r.getMessage()]
    assert len(warnings) == 1 and "--set" in warnings[0].getMessage() and "fuser.levels=5" in warnings[0].getMessage()
    with pytest.raises(ConfigError, match="--set 'levels': expected KEY=VALUE"):
        legacy_overrides(["levels"], option="--set", section="fuser")


# ---------------------------------------------------------------------------------------------------- entry points
def test_console_commands_are_registered():
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    assert scripts == {cmd: f"pipelines.{mod}:cli" for cmd, mod in SCRIPTS.items()}
    for mod in SCRIPTS.values():
        if mod == "stream_fuse" and "def cli(" not in (ROOT / "pipelines" / "stream_fuse.py").read_text():
            continue  # provided by the stream change (issue #15); the entry point is registered already
        module = _script(mod)
        assert callable(module.cli) and callable(module.main)


@pytest.mark.parametrize("path", sorted([*(ROOT / "pipelines").glob("*.py"), *(ROOT / "benchmarks").glob("*.py")]),
                         ids=lambda p: f"{p.parent.name}/{p.name}")
def test_no_script_edits_sys_path(path):
    text = path.read_text()
    if path.name == "stream_fuse.py" and "def cli(" not in text:
        pytest.skip("pipelines/stream_fuse.py is converted by the stream change (issue #15)")
    assert "sys.path" not in text


# ---------------------------------------------------------------------------------------------------- fuse
@pytest.fixture()
def pair(tmp_path) -> tuple[Path, Path]:
    src = tmp_path / "src"
    src.mkdir()
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 256, (48, 64, 3), dtype=np.uint8)).save(src / "a.png")
    Image.fromarray(rng.integers(0, 256, (48, 64), dtype=np.uint8)).save(src / "b.png")
    return src / "a.png", src / "b.png"


def test_fuse_settings_new_and_old_spelling_give_the_same_image(pair, tmp_path, caplog):
    fuse = _script("fuse")
    a, b = pair
    base = ["--a", str(a), "--b", str(b), "--method", "laplacian", "--no-progress", "--device", "cpu"]
    args, settings = fuse.parse_args([*base, "fuser.levels=1", "--out", "x"])
    assert settings == {"levels": 1} and args.source is None
    assert fuse.main([*base, "fuser.levels=1", "--out", str(tmp_path / "new")]) == 0
    caplog.set_level(logging.WARNING, logger="fusion.utils.cli")
    assert fuse.main([*base, "--set", "levels=1", "--out", str(tmp_path / "old")]) == 0
    assert "--set KEY=VALUE is deprecated" in caplog.text
    assert fuse.main([*base, "--out", str(tmp_path / "default")]) == 0
    new, old, default = (np.asarray(Image.open(tmp_path / d / "a.png")) for d in ("new", "old", "default"))
    assert np.array_equal(new, old) and not np.array_equal(new, default)


@pytest.mark.parametrize("bad, message", [
    ("fuser=2", "expected fuser.<key>=<value>"),
    ("levels=2", "unknown option 'levels'"),
    ("fuser.bogus=2", "unknown setting"),
])
def test_fuse_malformed_override_exit_2(pair, tmp_path, capsys, bad, message):
    a, b = pair
    err = _exit_2_one_line(_script("fuse").main, ["--a", str(a), "--b", str(b), "--method", "laplacian", bad,
                                                  "--out", str(tmp_path / "o")], capsys)
    assert message in err and not (tmp_path / "o").exists()


# ---------------------------------------------------------------------------------------------------- seg_eval
def test_seg_eval_grammar(tmp_path, monkeypatch, caplog):
    seg_eval = _script("seg_eval")
    caplog.set_level(logging.WARNING, logger="fusion.utils.cli")
    args, cfg_options, fuser = seg_eval.parse_args([
        str(tmp_path), "--inputs", "ir,vis", "gff", "fuser.device=cpu", "train_cfg.max_iters=3", "--iters", "2",
        "--cfg-options", "a.b=1", "--fuser-set", "x=2", "--config", "configs/seg/fcn_r18-slim_mfnet-synthetic.py",
    ])
    assert args.data_root == str(tmp_path) and args.inputs == ["ir", "vis", "gff"] and args.iters == 2
    assert cfg_options == {"a": {"b": 1}, "train_cfg": {"max_iters": 3}}
    assert fuser == {"device": "cpu", "x": 2}
    assert Path(args.config).is_file()
    assert caplog.text.count("is deprecated") == 2
    # main hands them to the comparison (stubbed here)
    import downstream.segmentation.compare as compare

    seen = {}
    monkeypatch.setattr(compare, "run_seg_eval", lambda settings: seen.setdefault("settings", settings) and None)
    assert seg_eval.main(["--inputs", "ir", "vis,average", "--out", str(tmp_path / "o"), "fuser.device=cpu",
                          "model.decode_head.dropout_ratio=0.2"]) == 0
    s = seen["settings"]
    assert list(s.inputs) == ["ir", "vis", "average"] and s.fuser_settings == {"device": "cpu"}
    assert s.cfg_options == {"model": {"decode_head": {"dropout_ratio": 0.2}}} and s.data_root is None


@pytest.mark.parametrize("bad, message", [(["fuser=cpu"], "expected fuser.<key>=<value>"),
                                          (["root", "other"], "unexpected argument 'other'"),
                                          (["--fuser-set=device"], "expected KEY=VALUE")])
def test_seg_eval_malformed_override_exit_2(tmp_path, capsys, bad, message):
    err = _exit_2_one_line(_script("seg_eval").main, ["--out", str(tmp_path / "o"), *bad], capsys)
    assert message in err


# ---------------------------------------------------------------------------------------------------- det_eval
def test_det_eval_grammar(tmp_path, monkeypatch, caplog):
    det_eval = _script("det_eval")
    seen = {}

    def fake_run(settings):
        seen["settings"] = settings
        return [{"input": "ir", "mAP50": 0.0, "mAP50-95": 0.0, "precision": 0.0, "recall": 0.0, "recall_1fppi": 0.0,
                 "miss_rate": 1.0}]

    monkeypatch.setattr(det_eval, "run_det_eval", fake_run)
    caplog.set_level(logging.WARNING, logger="fusion.utils.cli")
    assert det_eval.main(["epochs=2", "--inputs", "ir,vis,laplacian", "fuser.levels=3", "--fuser-set", "x=1",
                          "--out", str(tmp_path / "o"), "imgsz=64"]) == 0
    s = seen["settings"]
    assert s.data is None and s.inputs == ("ir", "vis", "laplacian")
    assert list(s.overrides) == ["epochs=2", "imgsz=64"] and s.fuser_kwargs == {"x": 1, "levels": 3}
    assert "--fuser-set KEY=VALUE is deprecated" in caplog.text
    assert det_eval.main([str(tmp_path), "--out", str(tmp_path / "o2"), "--inputs", "ir, vis"]) == 0
    assert seen["settings"].data == tmp_path and seen["settings"].inputs == ("ir", "vis")


def test_det_eval_malformed_override_exit_2(tmp_path, capsys):
    err = _exit_2_one_line(_script("det_eval").main, ["--out", str(tmp_path / "o"), "fuser=3"], capsys)
    assert "expected fuser.<key>=<value>" in err


# ---------------------------------------------------------------------------------------------------- eval_fusion
def test_eval_fusion_grammar(tmp_path, capsys):
    eval_fusion = _script("eval_fusion")
    base = ["--ir", "i", "--vis", "v", "--out", str(tmp_path / "o")]
    args = eval_fusion.parse_args([*base, "--fused", "a=d1,b=d2", "c=d3", "--methods", "a,gff", "--metrics", "EN,SD"])
    assert args.fused == ["a=d1", "b=d2", "c=d3"] and args.methods == "a,gff"
    assert eval_fusion.parse_args([*base, "--methods", "laplacian", "fuser.levels=3"]).fuser_settings == {"levels": 3}
    assert "expected fuser.<key>=<value>" in _exit_2_one_line(eval_fusion.main, [*base, "fuser=3"], capsys)
    assert "unexpected argument" in _exit_2_one_line(eval_fusion.main, [*base, "stray"], capsys)


# ---------------------------------------------------------------------------------------------------- train_fusion
def test_train_fusion_grammar(tmp_path, capsys, caplog):
    train = _script("train_fusion")
    out = tmp_path / "run"
    assert train.main(["configs/fusion/tcmoa_tiny_cpu.py", "train.lr=1e-3", "data.crop_size=224", "--print-config",
                       "--device", "cpu", "--output-dir", str(out)]) == 0
    cfg = json.loads(capsys.readouterr().out)
    assert cfg["model"]["name"] == "tcmoa_tiny" and cfg["train"]["lr"] == 1e-3 and cfg["data"]["crop_size"] == 224
    assert cfg["train"]["device"] == "cpu" and cfg["output_dir"] == str(out)
    caplog.set_level(logging.WARNING, logger="fusion.utils.cli")
    assert train.main(["--config", "configs/fusion/tcmoa_base.py", "--cfg-options", "train.lr=2e-3",
                       "--print-config"]) == 0
    cfg = json.loads(capsys.readouterr().out)
    assert cfg["model"]["name"] == "tcmoa_base" and cfg["train"]["lr"] == 2e-3
    assert "--cfg-options KEY=VALUE is deprecated" in caplog.text
    assert "unknown config key 'fuser'" in _exit_2_one_line(train.main, ["fuser.x=1", "--print-config"], capsys)
    assert "unknown config key 'train.lrr'" in _exit_2_one_line(train.main, ["train.lrr=1"], capsys)
    assert "give the config once" in _exit_2_one_line(
        train.main, ["configs/fusion/tcmoa_base.py", "--config", "configs/fusion/tcmoa_base.py"], capsys)


# ---------------------------------------------------------------------------------------------------- finetune_e2e
def test_finetune_e2e_grammar(tmp_path, monkeypatch, capsys):
    finetune = _script("finetune_e2e")
    import downstream.e2e.trainer as trainer

    seen = {}
    monkeypatch.setattr(trainer, "finetune", lambda cfg, resume=None: seen.setdefault("cfg", cfg) and None)
    data = tmp_path / "data"
    data.mkdir()
    assert finetune.main([f"data.root={data}", "train.iters=40", "--out", str(tmp_path / "o"), "model.freeze=[]",
                          "--device", "cpu"]) == 0
    cfg = seen["cfg"]
    assert cfg["train"]["iters"] == 40 and cfg["train"]["device"] == "cpu" and cfg["model"]["freeze"] == []
    assert Path(cfg["segmenter"]["config"]).is_file()
    err = _exit_2_one_line(finetune.main, ["fuser.x=1", "--out", str(tmp_path / "o")], capsys)
    assert "unknown config key 'fuser'" in err
    err = _exit_2_one_line(finetune.main, ["configs/e2e/defaults.py", "train.iters", "--out", str(tmp_path)], capsys)
    assert "unexpected argument 'train.iters'" in err


def test_scripts_run_as_files_without_sys_path_edits(tmp_path):
    """``python pipelines/<script>.py`` still works (the package is installed, nothing edits sys.path)."""
    import subprocess

    proc = subprocess.run([sys.executable, str(ROOT / "pipelines" / "train_fusion.py"), "train.lr=5e-4",
                           "--print-config"], capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["train"]["lr"] == 5e-4


def test_parse_overrides_reads_literals():
    assert parse_overrides(["fuser.x=1", "a.b=[1, 2]", "c=none", "d=cpu"]) == {
        "fuser": {"x": 1}, "a": {"b": [1, 2]}, "c": None, "d": "cpu"}
