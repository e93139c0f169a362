"""The synthetic scene generator: determinism, labels consistent with what is drawn, each layout readable."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET

import numpy as np
import pytest

from fusion.data.synthetic import (
    FMB_CLASSES,
    MFNET_CLASSES,
    llvip_illumination,
    render_scene,
    write_fmb,
    write_llvip,
    write_mfnet,
)
from fusion.utils.io import read_image


def test_same_seed_same_pixels_other_seed_differs():
    a, b = render_scene(3, seed=1), render_scene(3, seed=1)
    assert a.name == b.name
    np.testing.assert_array_equal(a.vis, b.vis)
    np.testing.assert_array_equal(a.ir, b.ir)
    np.testing.assert_array_equal(a.mfnet_label, b.mfnet_label)
    c = render_scene(3, seed=2)
    assert not np.array_equal(a.vis, c.vis)


def test_shapes_dtypes_and_class_ranges():
    s = render_scene(0, height=120, width=160)
    assert s.vis.shape == (120, 160, 3) and s.vis.dtype == np.uint8
    assert s.ir.shape == (120, 160) and s.ir.dtype == np.uint8
    assert s.mfnet_label.max() < len(MFNET_CLASSES)
    assert s.fmb_label.max() < len(FMB_CLASSES)
    with pytest.raises(ValueError, match="at least"):
        render_scene(0, height=20, width=20)


def test_person_boxes_enclose_person_pixels_and_people_are_warm():
    for i in range(12):
        s = render_scene(i, height=240, width=320)
        person = s.mfnet_label == MFNET_CLASSES.index("person")
        assert person.sum() > 0 and s.boxes
        inside = np.zeros_like(person)
        for b in s.boxes:
            assert b.cls == "person" and 0 <= b.x1 < b.x2 <= 320 and 0 <= b.y1 < b.y2 <= 240
            inside[int(b.y1) : int(b.y2), int(b.x1) : int(b.x2)] = True
        # Every visible person pixel lies in some box (people may occlude each other, never escape their boxes).
        assert np.all(inside[person])
        # Pedestrians are the hottest class in infrared.
        assert s.ir[person].mean() > s.ir[~person].mean() + 60


def test_fusion_matters_by_design():
    """Night people are faint in visible light; lane marks are invisible in infrared."""
    contrast_vis, contrast_ir, lane_ir, lane_vis = [], [], [], []
    for i in range(16):
        s = render_scene(i)
        gray = s.vis.astype(float).mean(axis=2)
        person = s.mfnet_label == MFNET_CLASSES.index("person")
        road = s.fmb_label == FMB_CLASSES.index("road")
        lane = s.mfnet_label == MFNET_CLASSES.index("curve")
        plain_road = road & ~lane & (s.mfnet_label == 0)
        if s.illumination < 0.5 and person.any():
            contrast_vis.append(abs(gray[person].mean() - gray[plain_road].mean()))
            contrast_ir.append(abs(float(s.ir[person].mean()) - s.ir[plain_road].mean()))
        if lane.any():
            lane_ir.append(abs(float(s.ir[lane].mean()) - s.ir[plain_road].mean()))
            lane_vis.append(abs(gray[lane].mean() - gray[plain_road].mean()))
    assert np.median(contrast_ir) > 3 * np.median(contrast_vis)
    assert np.mean(lane_vis) > 4 * np.mean(lane_ir)


def test_mfnet_layout(tmp_path):
    root = write_mfnet(tmp_path / "mfnet", n=10, height=96, width=128)
    splits = {p: (root / f"{p}.txt").read_text().split() for p in ("train", "val", "test")}
    assert sum(len(v) for v in splits.values()) == 10 and len(splits["train"]) == 6
    name = splits["test"][0]
    rgbt = read_image(root / "images" / f"{name}.png", mode="unchanged")
    assert rgbt.shape == (96, 128, 4)
    scene = render_scene(int(name[:5]) - 1, 0, 96, 128)
    np.testing.assert_array_equal(rgbt[..., :3], scene.vis)
    np.testing.assert_array_equal(rgbt[..., 3], scene.ir)
    label = read_image(root / "labels" / f"{name}.png", mode="unchanged")
    np.testing.assert_array_equal(label, scene.mfnet_label)


def test_fmb_layout(tmp_path):
    root = write_fmb(tmp_path / "fmb", n_train=3, n_test=2, height=96, width=128)
    for part, n in (("train", 3), ("test", 2)):
        for sub in ("Visible", "Infrared", "Label"):
            assert len(list((root / part / sub).glob("*.png"))) == n
    assert read_image(root / "test" / "Infrared" / "00003.png", mode="unchanged").ndim == 2
    assert read_image(root / "test" / "Label" / "00003.png", mode="unchanged").max() < len(FMB_CLASSES)


def test_llvip_layout_boxes_match_scene(tmp_path):
    root = write_llvip(tmp_path / "llvip", n_train=4, n_test=2, height=96, width=128)
    assert sorted(p.name for p in (root / "visible" / "test").iterdir()) == ["190005.jpg", "190006.jpg"]
    ir = read_image(root / "infrared" / "train" / "010001.jpg", mode="unchanged")
    assert ir.shape == (96, 128, 3)
    assert np.abs(ir[..., 0].astype(int) - ir[..., 2].astype(int)).max() <= 2  # gray stored as RGB
    tree = ET.parse(root / "Annotations" / "010001.xml")
    objs = tree.findall("object")
    scene = render_scene(0, 0, 96, 128, illumination=0.05)
    assert len(objs) == len(scene.boxes)
    first = objs[0].find("bndbox")
    assert int(first.find("xmin").text) == int(scene.boxes[0].x1)
    assert tree.find("size/width").text == "128"


def test_hundreds_of_pairs_quickly():
    import time

    t = time.perf_counter()
    for i in range(100):
        render_scene(i, height=120, width=160)
    assert time.perf_counter() - t < 20  # generous: a few hundred pairs in seconds


def _ring_contrast(img: np.ndarray, person: np.ndarray, box, pad: int = 4) -> float:
    """|mean over the person's pixels − mean over a ``pad``-pixel ring around its box|."""
    h, w = img.shape[:2]
    x1, y1, x2, y2 = (int(v) for v in (box.x1, box.y1, box.x2, box.y2))
    X1, Y1, X2, Y2 = max(0, x1 - pad), max(0, y1 - pad), min(w, x2 + pad), min(h, y2 + pad)
    ring = np.zeros((h, w), bool)
    ring[Y1:Y2, X1:X2] = True
    ring[y1:y2, x1:x2] = False
    inside = np.zeros((h, w), bool)
    inside[y1:y2, x1:x2] = person[y1:y2, x1:x2]
    return abs(float(img[inside].mean()) - float(img[ring].mean()))


def test_thermal_crossover_people_are_seen_in_visible_light_only():
    ir_c, vis_c, warm_ir = [], [], []
    for i in range(24):
        s = render_scene(i, illumination=0.9, thermal_crossover=0.75)
        gray = s.vis.astype(float).mean(axis=2)
        person = s.mfnet_label == MFNET_CLASSES.index("person")
        for b in s.boxes:
            if b.visible_in == "vis":
                ir_c.append(_ring_contrast(s.ir.astype(float), person, b))
                vis_c.append(_ring_contrast(gray, person, b))
            else:
                assert b.visible_in == "both"  # daytime, warm
                warm_ir.append(_ring_contrast(s.ir.astype(float), person, b))
    assert len(ir_c) >= 15 and len(warm_ir) >= 3  # about three in four daytime people
    assert np.median(vis_c) > 4 * np.median(ir_c)
    assert np.median(warm_ir) > 5 * np.median(ir_c)
    # Night scenes are never at crossover, and the default draws exactly the old scenes.
    night = render_scene(5, illumination=0.1, thermal_crossover=1.0)
    assert all(b.visible_in == "ir" for b in night.boxes)
    np.testing.assert_array_equal(render_scene(5, illumination=0.1).ir, night.ir)
    np.testing.assert_array_equal(render_scene(7, thermal_crossover=0.0).vis, render_scene(7).vis)


def test_llvip_has_pedestrians_each_modality_misses(tmp_path):
    root = write_llvip(tmp_path / "llvip", n_train=12, n_test=0, height=96, width=128)
    seen = {"ir": 0, "vis": 0, "both": 0}
    for i in range(12):
        ident = f"{10000 + i + 1:06d}"
        day = i % 2 == 1  # every other scene is daytime
        assert (llvip_illumination(i) > 0.5) == day
        scene = render_scene(i, 0, 96, 128, illumination=llvip_illumination(i), thermal_crossover=0.75)
        objs = ET.parse(root / "Annotations" / f"{ident}.xml").findall("object")
        assert [int(o.find("bndbox/xmin").text) for o in objs] == [int(b.x1) for b in scene.boxes]
        ir = read_image(root / "infrared" / "train" / f"{ident}.jpg", mode="unchanged")[..., 0]
        assert np.abs(ir.astype(int) - scene.ir).mean() < 3  # JPEG of the same pixels
        for b in scene.boxes:
            if not day:
                assert b.visible_in == "ir"
            seen[b.visible_in] += 1
    assert seen["ir"] > 0 and seen["vis"] > 0


def test_mfnet_and_fmb_writers_pass_thermal_crossover(tmp_path):
    root = write_mfnet(tmp_path / "mfnet", n=4, height=96, width=128, thermal_crossover=1.0)
    name = sorted(p.stem for p in (root / "images").glob("*D.png"))[0]  # a daytime scene
    scene = render_scene(int(name[:5]) - 1, 0, 96, 128, thermal_crossover=1.0)
    assert scene.boxes and all(b.visible_in == "vis" for b in scene.boxes)
    rgbt = read_image(root / "images" / f"{name}.png", mode="unchanged")
    np.testing.assert_array_equal(rgbt[..., 3], scene.ir)
    fmb = write_fmb(tmp_path / "fmb", n_train=1, n_test=0, height=96, width=128, thermal_crossover=1.0)
    first = render_scene(0, 0, 96, 128, thermal_crossover=1.0)
    np.testing.assert_array_equal(read_image(fmb / "train" / "Infrared" / "00000.png", mode="unchanged"), first.ir)


def test_write_synthetic_once_rejects_unknown_layout_and_reuses(tmp_path):
    from fusion.data.synthetic import GENERATOR_VERSION, write_synthetic_once

    with pytest.raises(ValueError, match="layout must be one of mfnet, fmb, llvip"):
        write_synthetic_once(tmp_path / "x", "kitti", n=2)
    assert not (tmp_path / "x").exists()
    root = write_synthetic_once(tmp_path / "fmb", "fmb", n_train=1, n_test=1, height=64, width=80)
    assert json.loads((root / "synthetic.json").read_text()) == {
        "n_train": 1, "n_test": 1, "height": 64, "width": 80, "layout": "fmb", "generator": GENERATOR_VERSION}
    assert not (tmp_path / "fmb.partial").exists() and len(list((root / "test" / "Label").glob("*.png"))) == 1
