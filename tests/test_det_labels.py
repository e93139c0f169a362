"""Label converters and dataset readers for detection, on the real LLVIP, MSRS and M3FD labels in shared/data."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest

from downstream.detection.datasets import detect_layout, load_llvip, load_m3fd, load_msrs
from downstream.detection.labels import (
    M3FD_CLASSES,
    ImageLabels,
    read_class_names,
    read_coco_json,
    read_voc_xml,
    read_yolo_txt,
    write_yolo_txt,
    yolo_lines,
)
from fusion.errors import DatasetError

LLVIP_COUNTS = {"010001": 6, "010002": 4, "010003": 5, "010004": 7, "010005": 3, "010006": 5, "010007": 4,
                "010008": 4, "010009": 7, "010010": 7, "010011": 4, "010012": 3, "010013": 3, "010014": 3,
                "010015": 1}  # fmt: skip


def test_llvip_xml_counts_and_coordinates(shared_data):
    xml = shared_data / "llvip" / "label" / "010001.xml"
    assert b"\r\n" in xml.read_bytes()  # the stored files use CRLF line endings
    lab = read_voc_xml(xml)
    assert (lab.width, lab.height) == (1280, 1024)
    assert len(lab) == 6
    np.testing.assert_array_equal(lab.boxes[0], [287, 428, 351, 662])
    np.testing.assert_array_equal(lab.boxes[1], [351, 391, 424, 642])
    assert lab.classes.tolist() == [0] * 6 and not lab.ignore.any()
    counts = {p.stem: len(read_voc_xml(p)) for p in sorted((shared_data / "llvip" / "label").glob("*.xml"))}
    assert counts == LLVIP_COUNTS
    assert sum(counts.values()) == 66


def test_llvip_to_yolo_lines_exact(shared_data, tmp_path):
    lab = read_voc_xml(shared_data / "llvip" / "label" / "010001.xml")
    lines = yolo_lines(lab)
    # LLVIP's own xml2txt_yolov5.py: cx = (xmin + xmax) / 2 / W, w = (xmax - xmin) / W.
    assert lines[0] == "0 0.249219 0.532227 0.050000 0.228516"
    assert lines[0] == f"0 {319 / 1280:.6f} {545 / 1024:.6f} {64 / 1280:.6f} {234 / 1024:.6f}"
    out = write_yolo_txt(tmp_path / "010001.txt", lab)
    raw = out.read_bytes()
    assert b"\r" not in raw and raw.count(b"\n") == 6
    back = read_yolo_txt(out, 1280, 1024)
    np.testing.assert_allclose(back.boxes, lab.boxes, atol=0.001 * 1280)


def test_voc_one_based_and_missing_fields(tmp_path):
    xml = tmp_path / "a.xml"
    xml.write_text("<annotation><size><width>100</width><height>50</height></size><object><name>Car</name>"
                   "<difficult>1</difficult><bndbox><xmin>1</xmin><ymin>2</ymin><xmax>10</xmax><ymax>20</ymax>"
                   "</bndbox></object></annotation>")  # fmt: skip
    lab = read_voc_xml(xml, M3FD_CLASSES, one_based=True)
    np.testing.assert_array_equal(lab.boxes, [[0, 1, 10, 20]])
    assert lab.classes.tolist() == [1] and lab.ignore.tolist() == [True]
    assert yolo_lines(lab) == []  # ignored boxes are not training targets
    with pytest.raises(DatasetError, match="unknown class 'Car'"):
        read_voc_xml(xml, ("person",))
    bad = tmp_path / "b.xml"
    bad.write_text("<annotation><size><width>100</width><height>50</height></size><object><name>person</name>"
                   "<bndbox><xmin>1</xmin><ymin>2</ymin><xmax>10</xmax></bndbox></object></annotation>")  # fmt: skip
    with pytest.raises(DatasetError, match=r"b\.xml: <ymax> missing"):
        read_voc_xml(bad)
    with pytest.raises(DatasetError, match="cannot read VOC XML"):
        read_voc_xml(tmp_path / "none.xml")


def test_load_llvip_tree(llvip_link_tree, tmp_path):
    root = llvip_link_tree(tmp_path / "LLVIP", ["010001", "010002", "010003"], ["010004"])
    assert detect_layout(root) == "llvip"
    ds = load_llvip(root)
    assert [s.ident for s in ds.split("train")] == ["010001", "010002", "010003"]
    assert [len(s.labels) for s in ds.split("train")] == [6, 4, 5]
    test = ds.split("test")[0]
    assert test.vis.parent.name == "test" and test.ir.parent.parent.name == "infrared" and len(test.labels) == 7
    os.unlink(root / "Annotations" / "010002.xml")
    with pytest.raises(DatasetError, match=r"010002\.xml: annotation missing"):
        load_llvip(root)
    os.unlink(root / "infrared" / "test" / "010004.jpg")
    with pytest.raises(DatasetError, match="without a partner"):
        load_llvip(root, splits=("test",))


def test_msrs_yolo_labels(shared_data):
    det = shared_data / "msrs" / "label_det"
    assert read_class_names(det / "classes.txt") == ("person", "bicycle", "car")
    fused = read_yolo_txt(det / "fusion" / "00004N.txt", 640, 480)  # double spaces, no final newline
    assert len(fused) == 5 and fused.classes.tolist() == [0] * 5
    cx, cy, w, h = 0.8360721982758621, 0.5727370689655172, 0.08216594827586218, 0.3035201149425288
    np.testing.assert_allclose(fused.boxes[0], [(cx - w / 2) * 640, (cy - h / 2) * 480, (cx + w / 2) * 640,
                                                (cy + h / 2) * 480], rtol=0, atol=1e-9)  # fmt: skip
    assert yolo_lines(fused)[0] == "0 0.836072 0.572737 0.082166 0.303520"
    ir = read_yolo_txt(det / "infrared" / "00004N.txt", 640, 480)
    assert len(ir) == 11
    assert len(read_yolo_txt(det / "visible" / "00790N.txt", 640, 480)) == 0
    counts = {p.stem: len(read_yolo_txt(p, 640, 480, num_classes=3)) for p in sorted((det / "infrared").glob("*.txt"))}
    assert counts == {"00004N": 11, "00016N": 11, "00233D": 14, "00283D": 13, "00537D": 6, "00730N": 12,
                      "00790N": 13, "01258N": 12, "01352N": 12, "01486D": 11}  # fmt: skip


def test_load_msrs_shared_tree(shared_data):
    ds = load_msrs(shared_data / "msrs", label_source="visible")
    assert ds.classes == ("person", "bicycle", "car")
    test = {s.ident: s for s in ds.split("test")}
    assert len(test) == 10 and test["00004N"].labels.width == 640 and test["00004N"].labels.height == 480
    assert len(test["00004N"].labels) == 2 and len(test["01258N"].labels) == 0
    with pytest.raises(DatasetError, match="label_source"):
        load_msrs(shared_data / "msrs", label_source="both")


def test_bad_yolo_line(tmp_path):
    p = tmp_path / "x.txt"
    p.write_text("0 0.5 0.5 0.1\n")
    with pytest.raises(DatasetError, match=r"x\.txt:1: expected 'class cx cy w h'"):
        read_yolo_txt(p, 10, 10)
    p.write_text("3 0.5 0.5 0.1 0.1\r\n")
    with pytest.raises(DatasetError, match="class 3 outside 0..2"):
        read_yolo_txt(p, 10, 10, num_classes=3)


def test_m3fd_coco_labels(shared_data, tmp_path):
    js = shared_data / "m3fd" / "label" / "00471_coco.json"
    labs = read_coco_json(js, M3FD_CLASSES)
    assert list(labs) == ["00471"]
    lab = labs["00471"]
    assert (lab.width, lab.height) == (1024, 768) and len(lab) == 8
    assert lab.classes.tolist() == [1, 1, 1, 1, 1, 1, 5, 1]  # 7 Car, 1 Lamp
    np.testing.assert_array_equal(lab.boxes[0], [0, 379, 350, 578])
    np.testing.assert_array_equal(lab.boxes[6], [607, 431, 617, 447])
    assert lab.boxes[:, 2].max() == 1024  # box 6 reaches the right border: continuous coordinates, not inclusive
    assert yolo_lines(lab)[0] == f"1 {175 / 1024:.6f} {478.5 / 768:.6f} {350 / 1024:.6f} {199 / 768:.6f}"
    # voc2coco wrote x = xmin - 1, w = xmax - (xmin - 1) from the 1-based XML: reading that XML one-based agrees.
    data = json.loads(js.read_text())
    objs = "".join(
        f"<object><name>{M3FD_CLASSES[a['category_id'] - 1]}</name><bndbox><xmin>{a['bbox'][0] + 1}</xmin>"
        f"<ymin>{a['bbox'][1] + 1}</ymin><xmax>{a['bbox'][0] + a['bbox'][2]}</xmax>"
        f"<ymax>{a['bbox'][1] + a['bbox'][3]}</ymax></bndbox></object>"
        for a in data["annotations"]
    )
    xml = tmp_path / "00471.xml"
    xml.write_text(f"<annotation><size><width>1024</width><height>768</height></size>{objs}</annotation>")
    from_xml = read_voc_xml(xml, M3FD_CLASSES, one_based=True)
    np.testing.assert_array_equal(from_xml.boxes, lab.boxes)
    np.testing.assert_array_equal(from_xml.classes, lab.classes)


def test_load_m3fd_tree(shared_data, tmp_path):
    root = tmp_path / "M3FD"
    for mod, src in (("ir", "ir"), ("vi", "vis")):
        (root / mod).mkdir(parents=True)
        os.symlink(shared_data / "m3fd" / src / "M3FD_00471.png", root / mod / "M3FD_00471.png")
    os.symlink(shared_data / "m3fd" / "label" / "00471_coco.json", root / "labels.json")
    (root / "train.txt").write_text("")
    (root / "test.txt").write_text("00471\n")
    ds = load_m3fd(root)
    assert ds.classes == M3FD_CLASSES and ds.splits["train"] == []
    s = ds.split("test")[0]
    assert s.ident == "00471" and len(s.labels) == 8 and s.vis.name == "M3FD_00471.png"


def test_scaled_and_clipped():
    lab = ImageLabels(np.array([[-5.0, 0, 10, 10], [20, 20, 30, 30]]), [0, 0], 20, 20)
    assert yolo_lines(lab) == ["0 0.250000 0.250000 0.500000 0.500000"]  # clipped; the second lies outside
    np.testing.assert_array_equal(lab.scaled(40, 10).boxes[1], [40, 10, 60, 15])
