"""Image reading/writing helpers, device choice and CLI conventions."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from fusion.errors import ConfigError, FusionError, InputError
from fusion.utils.cli import apply_overrides, parse_overrides
from fusion.utils.device import resolve_device
from fusion.utils.io import atomic_path, is_within, read_image, to_uint8, write_image


def test_read_8bit_gray_rgb_rgba(tmp_path):
    gray = np.arange(48, dtype=np.uint8).reshape(6, 8)
    Image.fromarray(gray).save(tmp_path / "g.png")
    rgb = read_image(tmp_path / "g.png")
    assert rgb.shape == (6, 8, 3) and np.array_equal(rgb[..., 1], gray)
    assert read_image(tmp_path / "g.png", mode="gray").shape == (6, 8)
    rgba = np.dstack([np.full((6, 8, 3), 10, np.uint8), np.full((6, 8), 200, np.uint8)])
    Image.fromarray(rgba).save(tmp_path / "a.png")
    assert read_image(tmp_path / "a.png", mode="unchanged").shape == (6, 8, 4)
    assert read_image(tmp_path / "a.png").shape == (6, 8, 3)


def test_read_16bit_scales_to_8bit(tmp_path):
    arr = np.array([[0, 65535], [257, 32896]], dtype=np.uint16)
    Image.fromarray(arr).save(tmp_path / "d.png")
    out = read_image(tmp_path / "d.png", mode="gray")
    assert out.tolist() == [[0, 255], [1, 128]]


def test_exif_orientation_applied(tmp_path):
    arr = np.zeros((4, 6, 3), np.uint8)
    arr[0, 0] = 255  # marker at top-left
    im = Image.fromarray(arr)
    exif = im.getexif()
    exif[0x0112] = 6  # rotate 90 CW on display
    im.save(tmp_path / "r.jpg", exif=exif, quality=100)
    out = read_image(tmp_path / "r.jpg")
    assert out.shape == (6, 4, 3)
    assert out[0, -1].mean() > 200  # top-left moved to top-right


@pytest.mark.parametrize(
    "content, match",
    [(None, "no such file"), (b"", "empty file"), (b"not an image at all", "cannot decode")],
)
def test_bad_files_name_the_file(tmp_path, content, match):
    p = tmp_path / "bad.png"
    if content is not None:
        p.write_bytes(content)
    with pytest.raises(InputError, match=match) as ei:
        read_image(p)
    assert str(p) in str(ei.value) and "\n" not in str(ei.value)


def test_truncated_png_is_an_input_error(tmp_path):
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8)).save(tmp_path / "t.png")
    data = (tmp_path / "t.png").read_bytes()
    (tmp_path / "t.png").write_bytes(data[: len(data) // 2])
    with pytest.raises(InputError, match="t.png"):
        read_image(tmp_path / "t.png")


def test_write_image_roundtrip_and_atomicity(tmp_path):
    img = np.random.default_rng(1).integers(0, 256, (5, 7, 3), dtype=np.uint8)
    out = write_image(tmp_path / "sub" / "x.png", img)
    assert np.array_equal(read_image(out), img)
    assert [p.name for p in (tmp_path / "sub").iterdir()] == ["x.png"]  # no temp files left
    with pytest.raises(InputError, match="extension"):
        write_image(tmp_path / "x.gif", img)
    # A failure inside atomic_path leaves the old target untouched and no temporary file.
    with pytest.raises(RuntimeError), atomic_path(out) as tmp:
        tmp.write_bytes(b"partial")
        raise RuntimeError("boom")
    assert np.array_equal(read_image(out), img)
    assert len(list((tmp_path / "sub").iterdir())) == 1


def test_to_uint8_float_and_errors():
    assert to_uint8(np.array([0.0, 0.5, 1.2, -1.0])).tolist() == [0, 128, 255, 0]
    with pytest.raises(InputError):
        to_uint8(np.array(["a"]))


def test_is_within(tmp_path):
    assert is_within(tmp_path / "a" / "b", tmp_path)
    assert is_within(tmp_path, tmp_path)
    assert not is_within(tmp_path.parent, tmp_path)


def test_errors_hierarchy():
    assert issubclass(InputError, FusionError) and issubclass(ConfigError, FusionError)


def test_resolve_device():
    assert resolve_device("cpu").type == "cpu"
    assert resolve_device("auto").type in ("cpu", "cuda")
    with pytest.raises(ConfigError, match="expected one of"):
        resolve_device("tpu")
    import torch

    if not torch.cuda.is_available():
        with pytest.raises(ConfigError, match="CUDA is not available"):
            resolve_device("cuda")


def test_overrides():
    o = parse_overrides(["a.b=1", "name=x", "lr=3e-4", "flag=true", "size=(1, 2)", "none=None"])
    assert o == {"a": {"b": 1}, "name": "x", "lr": 3e-4, "flag": True, "size": (1, 2), "none": None}
    cfg = {"a": {"b": 0, "c": 2}, "name": "y", "lr": 1.0, "flag": False, "size": None, "none": 1}
    apply_overrides(cfg, o)
    assert cfg["a"] == {"b": 1, "c": 2} and cfg["lr"] == 3e-4
    with pytest.raises(ConfigError, match="unknown option 'zz'"):
        apply_overrides(cfg, {"zz": 1})
    with pytest.raises(ConfigError, match="key=value"):
        parse_overrides(["novalue"])


def test_run_cli_exit_status_2_one_line(tmp_path):
    code = (
        "from fusion.utils.cli import run_cli\n"
        "from fusion.errors import InputError\n"
        "def main():\n    raise InputError('/x/y.png: cannot decode image')\n"
        "run_cli(main)\n"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert r.returncode == 2
    assert r.stderr.strip() == "error: /x/y.png: cannot decode image"
