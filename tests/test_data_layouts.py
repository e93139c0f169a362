"""Dataset layouts: detection and listing on small trees built here, and on the real samples in ../shared/data."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from fusion.data.layouts import LAYOUTS, detect_layout, list_folder_pairs, list_pairs, resolve_layout_name
from fusion.data.pairs import load_pair
from fusion.errors import ConfigError, DatasetError, InputError


def img(path: Path, value: int = 100, size: tuple[int, int] = (6, 4), mode: str = "RGB") -> Path:
    """Write a small constant image (size is W, H)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    bands = len(mode)
    arr = np.full((size[1], size[0], bands), value, np.uint8)
    if bands == 1:
        arr = arr[:, :, 0]
    Image.fromarray(arr, mode).save(path)
    return path


def two_folders(root: Path, a: str, b: str, names=("01.png", "02.png")) -> None:
    for n in names:
        img(root / a / n, 200)
        img(root / b / n, 50, mode="L")


# Each builder makes a tree; expected: (layout, task, number of pairs, (a folder name, b folder name) of the first pair)
def build_llvip(r: Path) -> None:
    for s in ("train", "test"):
        two_folders(r, f"visible/{s}", f"infrared/{s}", (f"{s}1.jpg", f"{s}2.jpg"))


def build_msrs(r: Path) -> None:
    two_folders(r, "train/vi", "train/ir")
    two_folders(r, "test/vi", "test/ir", ("00004N.png",))


def build_msrs_legacy(r: Path) -> None:
    two_folders(r, "Visible/train/MSRS", "Infrared/train/MSRS")


def build_fmb(r: Path) -> None:
    two_folders(r, "train/Visible", "train/Infrared")
    img(r / "train/Label/01.png", 1, mode="L")


def build_roadscene(r: Path) -> None:
    two_folders(r, "crop_LR_visible", "cropinfrared", ("FLIR_00006.jpg", "FLIR_00497.jpg", "FLIR_01274.jpg"))


def build_tno(r: Path) -> None:
    two_folders(r, "vi", "ir")


def build_ir_vis(r: Path) -> None:
    two_folders(r, "vis", "ir")
    img(r / "label" / "x.png")  # extra folders of the shared samples are ignored


def build_vifb(r: Path) -> None:
    two_folders(r, "input/VI", "input/IR")


def build_mfnet(r: Path) -> None:
    for n in ("00001D", "00002N", "00003D"):
        img(r / "images" / f"{n}.png", 90, mode="RGBA")
        img(r / "labels" / f"{n}.png", 0, mode="L")
    (r / "train.txt").write_text("00001D\n00003D\n")
    (r / "test.txt").write_text("00002N\n")


def build_mefb(r: Path) -> None:
    for scene in ("Arno", "Lighthouse"):
        img(r / "input" / scene / f"{scene}_A.png", 30)
        img(r / "input" / scene / f"{scene}_{'b' if scene == 'Arno' else 'B'}.png", 220)


def build_mfifb(r: Path) -> None:
    for scene in ("lytro_01", "lytro_02"):
        img(r / "input" / scene / f"{scene}_A.jpg", 30)
        img(r / "input" / scene / f"{scene}_B.jpg", 220)


def build_lytro(r: Path) -> None:
    for n in ("lytro-01", "lytro-02"):
        img(r / "AA" / f"{n}-A.jpg", 30)
        img(r / "BB" / f"{n}-B.jpg", 220)


def build_lytro_flat(r: Path) -> None:
    for n in ("lytro-01", "lytro-02", "lytro-03"):
        img(r / f"{n}-A.jpg", 30)
        img(r / f"{n}-B.jpg", 220)


def build_sice(r: Path) -> None:
    two_folders(r, "oe", "ue")


def build_realmff(r: Path) -> None:
    for n in ("001", "002"):
        img(r / "imageA" / f"{n}_A.png", 30)
        img(r / "imageB" / f"{n}_B.png", 220)


def build_mfi_whu(r: Path) -> None:
    two_folders(r, "source_2", "source_1")


def build_harvard(r: Path) -> None:
    for other in ("CT", "PET"):
        two_folders(r, f"MRI_{other}/{other}", f"MRI_{other}/MRI", ("11.png", "12.png"))


CASES = {
    # builder: (root name, layout, task, n pairs, a's folder, b's folder, first pair name)
    "llvip": (build_llvip, "LLVIP", "llvip", "vif", 4, "test", "test", "test/test1"),
    "msrs": (build_msrs, "MSRS", "msrs", "vif", 3, "vi", "ir", "test/00004N"),
    "msrs_legacy": (build_msrs_legacy, "MSRS", "msrs_legacy", "vif", 2, "MSRS", "MSRS", "01"),
    "fmb": (build_fmb, "FMB", "fmb", "vif", 2, "Visible", "Infrared", "01"),
    "roadscene": (build_roadscene, "RoadScene", "roadscene", "vif", 3, "crop_LR_visible", "cropinfrared", "FLIR_00006"),
    "tno": (build_tno, "TNO", "ir_vi", "vif", 2, "vi", "ir", "01"),
    "ir_vis": (build_ir_vis, "anything", "ir_vi", "vif", 2, "vis", "ir", "01"),
    "vifb": (build_vifb, "VIFB", "vifb", "vif", 2, "VI", "IR", "01"),
    "mfnet": (build_mfnet, "MFNet", "mfnet", "vif", 3, "images", "images", "00001D"),
    "mefb": (build_mefb, "MEFB", "mefb", "mef", 2, "Arno", "Arno", "Arno"),
    "mfifb": (build_mfifb, "MFIFB", "mfifb", "mff", 2, "lytro_01", "lytro_01", "lytro_01"),
    "lytro": (build_lytro, "Lytro", "lytro", "mff", 2, "BB", "AA", "lytro-01"),
    "lytro_flat": (build_lytro_flat, "Lytro", "lytro", "mff", 3, "Lytro", "Lytro", "lytro-01"),
    "sice": (build_sice, "SICE", "sice", "mef", 2, "oe", "ue", "01"),
    "realmff": (build_realmff, "RealMFF", "realmff", "mff", 2, "imageB", "imageA", "001"),
    "mfi_whu": (build_mfi_whu, "MFI-WHU", "mfi_whu", "mff", 2, "source_2", "source_1", "01"),
    "harvard": (build_harvard, "Harvard", "harvard", "vif", 4, "CT", "MRI", "MRI_CT/11"),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_layout_detected_and_listed(tmp_path: Path, case: str) -> None:
    build, root_name, layout, task, n, a_dir, b_dir, first = CASES[case]
    root = tmp_path / root_name
    build(root)
    assert detect_layout(root) == layout
    pairs = list_pairs(root)
    assert len(pairs) == n
    assert pairs == sorted(pairs, key=lambda p: p.name)
    p = pairs[0]
    assert (p.name, p.task, p.a.parent.name, p.b.parent.name) == (first, task, a_dir, b_dir)
    assert len({q.output_name for q in pairs}) == n  # outputs never collide
    # the same listing through the explicit layout name
    assert list_pairs(root, layout=layout) == pairs


def test_roles_for_suffixed_files(tmp_path: Path) -> None:
    """Official roles: _B / -B is source a (over-exposed, far focus); _A / -A is b."""
    build_mefb(tmp_path / "MEFB")
    pairs = list_pairs(tmp_path / "MEFB")
    assert [(p.a.name, p.b.name) for p in pairs] == [
        ("Arno_b.png", "Arno_A.png"),
        ("Lighthouse_B.png", "Lighthouse_A.png"),
    ]
    assert [p.output_name for p in pairs] == ["Arno_b.png", "Lighthouse_B.png"]
    build_lytro(tmp_path / "Lytro")
    assert [(p.a.name, p.b.name) for p in list_pairs(tmp_path / "Lytro")][0] == ("lytro-01-B.jpg", "lytro-01-A.jpg")


def test_harvard_colour_source_is_a(tmp_path: Path) -> None:
    build_harvard(tmp_path / "h")
    pairs = list_pairs(tmp_path / "h", split="MRI_PET")
    assert [(p.name, p.a.parent.name, p.b.parent.name) for p in pairs] == [("11", "PET", "MRI"), ("12", "PET", "MRI")]
    # one subset given as the root
    assert len(list_pairs(tmp_path / "h" / "MRI_CT")) == 2


def test_splits(tmp_path: Path) -> None:
    build_llvip(tmp_path)
    assert [p.name for p in list_pairs(tmp_path, split="test")] == ["test1", "test2"]
    assert [p.output_name for p in list_pairs(tmp_path)][:2] == ["test/test1.jpg", "test/test2.jpg"]
    with pytest.raises(DatasetError, match="no split 'val'"):
        list_pairs(tmp_path, split="val")


def test_mfnet_split_files_and_rgbt_loading(tmp_path: Path) -> None:
    build_mfnet(tmp_path)
    train = list_pairs(tmp_path, split="train")
    assert [p.name for p in train] == ["00001D", "00003D"]
    assert all(p.extract == "rgbt" and p.a == p.b for p in train)
    rgba = np.zeros((4, 6, 4), np.uint8)
    rgba[..., 0], rgba[..., 1], rgba[..., 2], rgba[..., 3] = 10, 20, 30, 240
    Image.fromarray(rgba, "RGBA").save(train[0].a)
    a, b = load_pair(train[0])
    assert a.shape == b.shape == (4, 6, 3)
    assert a[0, 0].tolist() == [10, 20, 30] and b[0, 0].tolist() == [240, 240, 240]
    (tmp_path / "val.txt").write_text("00009X\n")
    with pytest.raises(DatasetError, match="00009X"):
        list_pairs(tmp_path, split="val")


def test_mfnet_needs_four_channels(tmp_path: Path) -> None:
    build_mfnet(tmp_path)
    pair = list_pairs(tmp_path)[0]
    img(pair.a, 5, mode="RGB")
    with pytest.raises(InputError, match="4-channel"):
        load_pair(pair)


def test_unpaired_files_are_listed(tmp_path: Path) -> None:
    two_folders(tmp_path, "vi", "ir", ("01.png", "02.png", "03.png"))
    (tmp_path / "ir" / "02.png").unlink()
    img(tmp_path / "ir" / "04.png")
    with pytest.raises(DatasetError) as err:
        list_pairs(tmp_path)
    msg = str(err.value)
    assert "\n" not in msg and "2 file(s) without a partner" in msg
    assert str(tmp_path / "vi" / "02.png") in msg and str(tmp_path / "ir" / "04.png") in msg


def test_non_images_and_hidden_files_are_ignored(tmp_path: Path) -> None:
    two_folders(tmp_path, "vi", "ir")
    (tmp_path / "vi" / "Thumbs.db").write_bytes(b"x")
    (tmp_path / "ir" / "._01.png").write_bytes(b"junk")
    (tmp_path / "ir" / "notes.txt").write_text("x")
    assert [p.name for p in list_pairs(tmp_path)] == ["01", "02"]


def test_same_stem_twice_is_an_error(tmp_path: Path) -> None:
    two_folders(tmp_path, "vi", "ir")
    img(tmp_path / "vi" / "01.jpg")
    with pytest.raises(DatasetError, match="01.jpg"):
        list_pairs(tmp_path)


def test_pairs_by_stem_across_extensions(tmp_path: Path) -> None:
    img(tmp_path / "vi" / "05.png")
    img(tmp_path / "ir" / "05.bmp", mode="L")
    (pair,) = list_pairs(tmp_path)
    assert (pair.a.name, pair.b.name, pair.output_name) == ("05.png", "05.bmp", "05.png")


def test_empty_and_unknown(tmp_path: Path) -> None:
    (tmp_path / "vi").mkdir()
    (tmp_path / "ir").mkdir()
    with pytest.raises(DatasetError, match="no images found"):
        list_pairs(tmp_path)
    (tmp_path / "other").mkdir()
    with pytest.raises(DatasetError, match="unknown dataset layout"):
        detect_layout(tmp_path / "other")
    with pytest.raises(DatasetError, match="no such folder"):
        list_pairs(tmp_path / "missing")
    with pytest.raises(ConfigError, match="unknown layout"):
        list_pairs(tmp_path, layout="nope")


def test_scene_layout_ambiguity(tmp_path: Path) -> None:
    root = tmp_path / "scenes"
    for s in ("s1", "s2"):
        img(root / "input" / s / f"{s}_A.png")
        img(root / "input" / s / f"{s}_B.png")
    with pytest.raises(DatasetError, match="--layout mefb or mfifb"):
        detect_layout(root)
    assert detect_layout(root, task="mff") == "mfifb"
    assert {p.task for p in list_pairs(root, layout="mefb")} == {"mef"}
    assert {p.task for p in list_pairs(root, task="mff")} == {"mff"}


def test_scene_missing_partner(tmp_path: Path) -> None:
    build_mefb(tmp_path / "MEFB")
    (tmp_path / "MEFB/input/Arno/Arno_b.png").unlink()
    with pytest.raises(DatasetError, match="Arno"):
        list_pairs(tmp_path / "MEFB")


def test_aliases_and_task_override(tmp_path: Path) -> None:
    assert resolve_layout_name("TNO") == "ir_vi" and resolve_layout_name("medical") == "harvard"
    build_tno(tmp_path)
    assert {p.task for p in list_pairs(tmp_path, layout="m3fd", task="mef")} == {"mef"}
    with pytest.raises(ConfigError):
        list_pairs(tmp_path, task="fusion")


def test_folder_pairs(tmp_path: Path) -> None:
    two_folders(tmp_path, "x", "y")
    assert [p.name for p in list_folder_pairs(tmp_path / "x", tmp_path / "y", task="mff")] == ["01", "02"]
    (pair,) = list_folder_pairs(tmp_path / "x/01.png", tmp_path / "y/02.png")
    assert (pair.name, pair.b.name) == ("01", "02.png")
    with pytest.raises(ConfigError):
        list_folder_pairs(tmp_path / "x", tmp_path / "y/01.png")


def test_every_layout_has_a_case() -> None:
    assert set(LAYOUTS) <= {c[2] for c in CASES.values()}


# ------------------------------------------------------------------------------------------------------------------
# real samples


REAL = {
    # folder: (layout, task, pairs)
    "tno": ("ir_vi", "vif", 6),
    "msrs": ("ir_vi", "vif", 10),
    "llvip": ("ir_vi", "vif", 17),
    "roadscene": ("ir_vi", "vif", 20),
    "m3fd": ("ir_vi", "vif", 1),
    "vifb": ("ir_vi", "vif", 14),
    "mfnet": ("mfnet", "vif", 1),
    "mef_mefb": ("mefb", "mef", 10),
    "mff_lytro": ("mfifb", "mff", 13),
    "medical_harvard": ("harvard", "vif", 21),
    "piafusion_official/TNO": ("ir_vi", "vif", 3),
}


@pytest.mark.shared_data
@pytest.mark.parametrize("name", sorted(REAL))
def test_real_samples(shared_data: Path, name: str) -> None:
    layout, task, n = REAL[name]
    root = shared_data / name
    if not root.is_dir():
        pytest.skip(f"{root} not in this copy of the shared data")
    assert detect_layout(root) == layout
    pairs = list_pairs(root)
    assert len(pairs) == n and {p.task for p in pairs} == {task}
    a, b = load_pair(pairs[0])
    assert a.dtype == b.dtype == np.uint8 and a.shape == b.shape and a.shape[2] == 3


@pytest.mark.shared_data
def test_real_mefb_roles(shared_data: Path) -> None:
    """MEFB: _A is the darker image, so a (= _B, over-exposed) must be brighter than b for every scene."""
    root = shared_data / "mef_mefb"
    if not root.is_dir():
        pytest.skip(f"{root} not in this copy of the shared data")
    for pair in list_pairs(root):
        a, b = load_pair(pair)
        assert a.mean() > b.mean(), pair.name


@pytest.mark.shared_data
def test_real_mfnet_thermal_is_fourth_channel(shared_data: Path) -> None:
    root = shared_data / "mfnet"
    if not root.is_dir():
        pytest.skip(f"{root} not in this copy of the shared data")
    (pair,) = list_pairs(root)
    raw = np.asarray(Image.open(pair.a))
    a, b = load_pair(pair)
    assert np.array_equal(a, raw[..., :3]) and np.array_equal(b[..., 1], raw[..., 3])
