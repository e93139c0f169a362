"""The shipped configs: one way to find them (``fusion.utils.config.config_path``) from any folder, shipped names in
config values and on the command line, and the defaults read from their one file."""

from __future__ import annotations

from pathlib import Path

import pytest

from fusion.errors import ConfigError
from fusion.utils.config import config_path, resolve_config, shipped_config_root

ROOT = Path(__file__).resolve().parents[1]


def test_config_path_finds_shipped_files_and_folders():
    assert shipped_config_root().samefile(ROOT / "configs")  # the editable install maps this checkout's configs/
    seg = config_path("seg/fcn_r18-slim_mfnet-synthetic.py")
    assert seg.is_file() and seg == config_path("configs/seg/fcn_r18-slim_mfnet-synthetic.py")
    assert config_path("det").is_dir() and (config_path("det") / "tiny_test.yaml").is_file()
    with pytest.raises(ConfigError, match=r"seg/nope.py: no such shipped config \(shipped there: .*fcn_r18"):
        config_path("seg/nope.py")
    for bad in ("../pyproject.toml", "/etc/passwd"):
        with pytest.raises(ConfigError, match="no such shipped config"):
            config_path(bad)


def test_resolve_config_prefers_a_path_that_exists(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert resolve_config("configs/seg/fcn_r18-slim_mfnet-synthetic.py") == config_path(
        "seg/fcn_r18-slim_mfnet-synthetic.py")
    own = tmp_path / "configs" / "seg" / "fcn_r18-slim_mfnet-synthetic.py"
    own.parent.mkdir(parents=True)
    own.write_text("cfg = {}\n")
    assert resolve_config("configs/seg/fcn_r18-slim_mfnet-synthetic.py") == Path(
        "configs/seg/fcn_r18-slim_mfnet-synthetic.py")  # the user's file, as given
    assert resolve_config("missing/x.py") == Path("missing/x.py")  # its reader reports it


def test_shipped_names_load_from_any_folder(tmp_path, monkeypatch):
    from downstream.detection.schedule import list_schedules, load_schedule
    from downstream.e2e.config import load_config as load_e2e
    from fusion.training.config import load_config as load_train

    monkeypatch.chdir(tmp_path)
    cfg = load_e2e()  # the defaults name configs/seg/... relative to nothing in particular
    assert Path(cfg["segmenter"]["config"]).is_file()
    assert Path(cfg["segmenter"]["config"]).samefile(config_path("seg/fcn_r18-slim_mfnet-synthetic.py"))
    demo = load_e2e("configs/e2e/tcmoa-tiny_fcn-slim_mfnet-crossover.py")  # _base_ chain inside the shipped folder
    assert demo["train"]["iters"] == 1200 and demo["model"]["router_noise"] is False
    assert load_train("configs/fusion/tcmoa_large.py")["model"]["name"] == "tcmoa_large"
    assert {"llvip", "tiny_test"} <= set(list_schedules())
    assert load_schedule("configs/det/tiny_test.yaml") == load_schedule("tiny_test")
    with pytest.raises(ConfigError, match="no such config file"):
        load_train("configs/fusion/nope.py")


def test_shipped_config_files_are_package_data():
    """Every file under configs/ is matched by the package-data patterns (so a normal install ships it)."""
    import fnmatch
    import tomllib

    patterns = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]
    ours = [p.removeprefix("**/") for p in patterns["tcmoa_configs"]]
    for path in (ROOT / "configs").rglob("*"):
        if path.is_file() and "__pycache__" not in path.parts:
            assert any(fnmatch.fnmatch(path.name, p) for p in ours), f"{path} would not be installed"
