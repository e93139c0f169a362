"""fusion.training.config and the shipped config files."""

from __future__ import annotations

import pytest

from fusion.errors import ConfigError
from fusion.training.config import DEFAULTS, load_config, merge_config
from fusion.utils.cli import parse_overrides


def test_defaults_are_the_shipped_defaults_file(repo_root):
    from fusion.utils.config import config_path, read_config_file

    shipped = config_path("fusion/defaults.py")
    assert shipped.samefile(repo_root / "configs" / "fusion" / "defaults.py")  # editable install: this checkout's
    assert DEFAULTS == read_config_file(shipped) and load_config(None) == DEFAULTS
    assert load_config("configs/fusion/tcmoa_base.py")["model"]["name"] == "tcmoa_base"  # a shipped name


@pytest.mark.parametrize("name", ["tcmoa_base.py", "tcmoa_large.py", "tcmoa_tiny_cpu.py"])
def test_shipped_configs_load(repo_root, name):
    cfg = load_config(repo_root / "configs" / "fusion" / name)
    assert cfg["model"]["name"] == name.split("_cpu")[0].removesuffix(".py")
    # the tiny CPU recipe trains the mef and mff routers only (its vif router is the analytic one, see the card)
    trained = ("mef", "mff") if name == "tcmoa_tiny_cpu.py" else ("vif", "mef", "mff")
    assert all(cfg["data"]["tasks"][t]["datasets"] for t in trained)


def test_tiny_recipe_holds_back_pairs(repo_root):
    cfg = load_config(repo_root / "configs" / "fusion" / "tcmoa_tiny_cpu.py")
    for task in ("vif", "mef", "mff"):
        for ds in cfg["data"]["tasks"][task]["datasets"]:
            assert len(ds["exclude"]) >= 2, ds["root"]
    assert cfg["model"]["init"] == "codec" and cfg["loss"]["warmup_epochs"] == 0
    assert not cfg["data"]["tasks"]["vif"]["datasets"]
    # everything the vif path reads is frozen: its experts, the routers' shared front end, fusion layers, alphas
    for pattern in (r"MoA\.experts\.[01]\.", r"dimReduction", r"FusionLayer\.", r"Alpha_"):
        assert pattern in cfg["train"]["freeze"]


def test_base_inheritance_and_overrides(tmp_path):
    base = tmp_path / "base.py"
    base.write_text("cfg = dict(train=dict(lr=1e-3), output_dir='x')\n")
    child = tmp_path / "child.yaml"
    child.write_text("_base_: base.py\ntrain:\n  epochs: 3\n  min_lr: 1e-6\n")
    cfg = load_config(child, parse_overrides(["train.seed=7", "data.tasks.vif.batch_size=2",
                                              "model.overrides.depth=4"]))
    assert cfg["train"]["lr"] == 1e-3 and cfg["train"]["epochs"] == 3 and cfg["train"]["seed"] == 7
    assert cfg["train"]["min_lr"] == 1e-6  # YAML 1.1 would read "1e-6" as a string
    assert cfg["data"]["tasks"]["vif"]["batch_size"] == 2 and cfg["output_dir"] == "x"
    assert cfg["model"]["overrides"] == {"depth": 4}  # free-form section accepts new keys
    assert cfg["train"]["betas"] == DEFAULTS["train"]["betas"]


@pytest.mark.parametrize(
    ("override", "match"),
    [
        ("train.lr=-1", "train.lr"),
        ("train.step_mode=both", "step_mode"),
        ("train.amp=fp8", "train.amp"),
        ("data.crop_size=100", "multiple of 112"),
        ("data.tasks.vif.crop_scale=[0.5,0.2]", "crop_scale"),
        ("trian.lr=1", "unknown config key 'trian'"),
        ("train.lrr=1", "unknown config key 'train.lrr'"),
        ("checkpoint.keep_last=0", "keep_last"),
        ("model.init=magic", "model.init"),
    ],
)
def test_invalid_values_are_config_errors(override, match):
    with pytest.raises(ConfigError, match=match):
        load_config(None, parse_overrides([override]))


def test_file_errors(tmp_path):
    with pytest.raises(ConfigError, match="no such config"):
        load_config(tmp_path / "missing.py")
    bad = tmp_path / "bad.py"
    bad.write_text("x = 1\n")
    with pytest.raises(ConfigError, match="must define a dict named 'cfg'"):
        load_config(bad)
    loop = tmp_path / "loop.py"
    loop.write_text("_base_ = 'loop.py'\ncfg = dict(_base_='loop.py')\n")
    with pytest.raises(ConfigError, match="deeper than 8"):
        load_config(loop)
    with pytest.raises(ConfigError, match="unknown config key"):
        merge_config({"a": 1}, {"b": 2})
