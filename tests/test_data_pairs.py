"""Loading pairs: bit depths, channels, EXIF orientation, formats, sizes; PairDataset; the official saving stretch."""

from __future__ import annotations

import io
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from PIL import Image

from fusion.data.dataset import PairDataset, to_tensor
from fusion.data.pairs import Pair, load_pair, resize_image, strip_role_suffix
from fusion.data.postprocess import contact_sheet, official_bytescale, side_by_side
from fusion.errors import InputError


def ramp(h: int = 8, w: int = 12) -> np.ndarray:
    """A colour image whose channels all differ, so channel-order mistakes show."""
    y, x = np.mgrid[0:h, 0:w]
    return np.stack([x * 20 % 256, y * 30 % 256, (x + y) * 9 % 256], axis=-1).astype(np.uint8)


def test_gray_is_replicated_and_rgba_drops_alpha(tmp_path: Path) -> None:
    rgb = ramp()
    gray = rgb[..., 0].copy()
    Image.fromarray(gray, "L").save(tmp_path / "ir.png")
    Image.fromarray(np.dstack([rgb, np.full(gray.shape, 7, np.uint8)]), "RGBA").save(tmp_path / "vi.png")
    a, b = load_pair(Pair("p", tmp_path / "vi.png", tmp_path / "ir.png"))
    assert np.array_equal(a, rgb)
    assert b.shape == (8, 12, 3) and all(np.array_equal(b[..., c], gray) for c in range(3))


@pytest.mark.parametrize("ext", [".png", ".tif"])
def test_16_bit_gray(tmp_path: Path, ext: str) -> None:
    g16 = (np.arange(96).reshape(8, 12) * 680).astype(np.uint16)
    cv2.imwrite(str(tmp_path / f"ir{ext}"), g16)
    Image.fromarray(ramp()).save(tmp_path / "vi.png")
    _, b = load_pair(Pair("p", tmp_path / "vi.png", tmp_path / f"ir{ext}"))
    assert np.array_equal(b[..., 0], np.round(g16 / 257.0).astype(np.uint8))


@pytest.mark.parametrize("ext", [".jpg", ".bmp", ".tif", ".png"])
def test_formats(tmp_path: Path, ext: str) -> None:
    rgb = ramp()
    Image.fromarray(rgb).save(tmp_path / f"vi{ext}")
    Image.fromarray(rgb).save(tmp_path / f"ir{ext}")
    a, _ = load_pair(Pair("p", tmp_path / f"vi{ext}", tmp_path / f"ir{ext}"))
    tol = 40 if ext == ".jpg" else 0  # lossy
    assert a.shape == rgb.shape and np.abs(a.astype(int) - rgb).max() <= tol


def test_exif_orientation_is_applied(tmp_path: Path) -> None:
    rgb = ramp(8, 12)
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise to display
    Image.fromarray(rgb).save(tmp_path / "vi.jpg", exif=exif.tobytes(), quality=100)
    Image.fromarray(np.rot90(rgb, -1).copy()).save(tmp_path / "ir.png")
    a, b = load_pair(Pair("p", tmp_path / "vi.jpg", tmp_path / "ir.png"))
    assert a.shape == b.shape == (12, 8, 3)
    assert np.abs(a.astype(int) - b).mean() < 6


def test_size_mismatch_needs_a_policy(tmp_path: Path) -> None:
    Image.fromarray(ramp(8, 12)).save(tmp_path / "vi.png")
    Image.fromarray(ramp(4, 6)[..., 0], "L").save(tmp_path / "ir.png")
    pair = Pair("p", tmp_path / "vi.png", tmp_path / "ir.png")
    with pytest.raises(InputError) as err:
        load_pair(pair)
    assert "ir.png" in str(err.value) and "6x4" in str(err.value) and "12x8" in str(err.value)
    a, b = load_pair(pair, resize="b_to_a")
    assert a.shape == b.shape == (8, 12, 3)
    a, b = load_pair(pair, resize="a_to_b")
    assert a.shape == b.shape == (4, 6, 3)
    with pytest.raises(InputError, match="resize"):
        load_pair(pair, resize="crop")


def test_resize_image_keeps_constant_images_constant() -> None:
    x = np.full((10, 10, 3), 77, np.uint8)
    assert np.all(resize_image(x, (5, 20)) == 77) and resize_image(x, (5, 20)).shape == (5, 20, 3)


@pytest.mark.parametrize("damage", ["truncated", "garbage", "empty"])
def test_bad_files_name_the_file(tmp_path: Path, damage: str) -> None:
    buf = io.BytesIO()
    Image.fromarray(ramp(64, 64)).save(buf, format="PNG")
    data = {"truncated": buf.getvalue()[: len(buf.getvalue()) // 2], "garbage": b"not an image", "empty": b""}[damage]
    (tmp_path / "ir.png").write_bytes(data)
    Image.fromarray(ramp(64, 64)).save(tmp_path / "vi.png")
    with pytest.raises(InputError) as err:
        load_pair(Pair("p", tmp_path / "vi.png", tmp_path / "ir.png"))
    assert str(tmp_path / "ir.png") in str(err.value) and "\n" not in str(err.value)


def test_strip_role_suffix() -> None:
    assert [strip_role_suffix(Path(n)) for n in ("lytro-01-A.jpg", "Arno_b.png", "x_c.png")] == [
        "lytro-01",
        "Arno",
        "x_c",
    ]


def test_pair_output_name() -> None:
    assert Pair("test/1", Path("/d/v/1.jpg"), Path("/d/i/1.jpg")).output_name == "test/1.jpg"
    assert Pair("Arno", Path("/d/Arno/Arno_B.png"), Path("/d/Arno/Arno_A.png")).output_name == "Arno_B.png"
    with pytest.raises(ValueError):
        Pair("x", Path("a"), Path("a"), extract="rgbd")


def test_pair_dataset(tmp_path: Path) -> None:
    rgb = ramp()
    Image.fromarray(rgb).save(tmp_path / "vi.png")
    Image.fromarray(rgb[..., 1], "L").save(tmp_path / "ir.png")
    pairs = [Pair("p", tmp_path / "vi.png", tmp_path / "ir.png", "vif")]
    item = PairDataset(pairs)[0]
    assert item["name"] == "p" and item["a"].dtype == np.uint8 and np.array_equal(item["a"], rgb)

    def flip(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return a[:, ::-1], b[:, ::-1]

    t = PairDataset(pairs, transform=flip, as_tensor=True)[0]
    assert t["a"].shape == (3, 8, 12) and t["a"].dtype == torch.float32
    assert torch.allclose(t["a"][:, 0, 0], torch.tensor(rgb[0, -1] / 255.0, dtype=torch.float32))
    assert torch.allclose(t["b"][0], t["b"][2])
    assert to_tensor(np.full((2, 2, 3), 255, np.uint8)).max().item() == 1.0


def test_official_bytescale_formula() -> None:
    x = np.array([[[10, 20, 200]], [[105, 106, 107]]], np.uint8)
    # floor((v - 10) * 255 / 190 + 0.5)
    expected = np.floor((x.astype(np.float64) - 10) * 255.0 / 190.0 + 0.5).astype(np.uint8)
    out = official_bytescale(x)
    assert out.dtype == np.uint8 and np.array_equal(out, expected)
    assert out.min() == 0 and out.max() == 255 and out[1, 0, 0] == 128  # 95 * 255/190 = 127.5 -> 128
    assert np.array_equal(official_bytescale(np.full((2, 2, 3), 0.7)), np.zeros((2, 2, 3), np.uint8))
    f = np.array([0.0104, 0.5, 0.9889])
    assert official_bytescale(f).tolist() == [0, 128, 255]


def test_side_by_side_and_contact_sheet() -> None:
    a = np.zeros((10, 20, 3), np.uint8)
    row = side_by_side([a, a, a], height=5, gap=2)
    assert row.shape == (5, 10 * 3 + 4, 3) and (row[:, 10:12] == 255).all()
    sheet = contact_sheet([row, row[:, :20]], gap=1)
    assert sheet.shape == (11, 34, 3) and (sheet[6:, 20:] == 255).all()
