"""Per-input YOLO dataset folders, schedules, model names and devices for the detection pipeline (no training)."""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch
import yaml

from downstream.detection.datasets import DetSample
from downstream.detection.inputs import input_images, input_slug
from downstream.detection.labels import ImageLabels
from downstream.detection.schedule import list_schedules, load_schedule
from downstream.detection.yolo import check_model_spec, class_mapping, ultralytics_device
from downstream.detection.yolo_data import read_fingerprint, write_yolo_dataset
from fusion.errors import CheckpointError, ConfigError, DatasetError
from fusion.utils.io import read_image, write_image


@pytest.fixture()
def pairs(tmp_path):
    rng = np.random.default_rng(0)
    src = tmp_path / "src"
    out = {}
    for split, ids in (("train", ["a1", "a2"]), ("test", ["b1"])):
        items = []
        for i in ids:
            vis, ir = src / "vis" / f"{i}.jpg", src / "ir" / f"{i}.png"
            write_image(vis, rng.integers(0, 255, (24, 32, 3), dtype=np.uint8))
            write_image(ir, rng.integers(0, 255, (24, 32), dtype=np.uint8))
            lab = ImageLabels(np.array([[4.0, 2, 12, 20]]), [0], 32, 24)
            items.append(DetSample(i, vis, ir, lab))
        out[split] = items
    return out


def test_yolo_dataset_folder_and_yaml(pairs, tmp_path):
    images = {sp: input_images("vis", items, sp, tmp_path / "cache") for sp, items in pairs.items()}
    yml = write_yolo_dataset(tmp_path / "ds" / "vis", pairs, images, ("person",))
    data = yaml.safe_load(yml.read_text())
    assert data["train"] == "images/train" and data["val"] == "images/test" and data["test"] == "images/test"
    assert data["names"] == {0: "person"} and data["nc"] == 1 and "channels" not in data
    link = tmp_path / "ds" / "vis" / "images" / "train" / "a1.jpg"
    assert link.is_symlink() and link.resolve() == pairs["train"][0].vis.resolve()
    label = (tmp_path / "ds" / "vis" / "labels" / "train" / "a1.txt").read_text()
    assert label == "0 0.250000 0.458333 0.250000 0.750000\n"
    fp = read_fingerprint(tmp_path / "ds" / "vis")
    assert len(fp) == 64
    # Rewriting the same content gives the same fingerprint; a changed label changes it.
    write_yolo_dataset(tmp_path / "ds" / "vis", pairs, images, ("person",))
    assert read_fingerprint(tmp_path / "ds" / "vis") == fp
    pairs["test"][0].labels.boxes[0, 0] = 5.0
    write_yolo_dataset(tmp_path / "ds" / "vis", pairs, images, ("person",))
    assert read_fingerprint(tmp_path / "ds" / "vis") != fp
    (tmp_path / "foreign").mkdir()
    with pytest.raises(DatasetError, match="not a dataset folder written by det_eval"):
        write_yolo_dataset(tmp_path / "foreign", pairs, images, ("person",))


def test_rgbt_and_fused_inputs_are_cached(pairs, tmp_path):
    cache = tmp_path / "cache"
    rgbt = input_images("rgbt", pairs["test"], "test", cache)
    img = read_image(rgbt["b1"], "unchanged")
    assert img.shape == (24, 32, 4)
    np.testing.assert_array_equal(img[..., :3], read_image(pairs["test"][0].vis, "rgb"))
    np.testing.assert_array_equal(img[..., 3], read_image(pairs["test"][0].ir, "gray"))
    yml = write_yolo_dataset(tmp_path / "ds" / "rgbt", {"test": pairs["test"]}, {"test": rgbt}, ("person",),
                             channels=4)  # fmt: skip
    assert yaml.safe_load(yml.read_text())["channels"] == 4

    fused = input_images("maximum", pairs["train"], "train", cache)
    p = fused["a1"]
    assert p.parent.parent.parent == cache and p.parent.name == "train"
    assert p.parent.parent.name.startswith("maximum-")  # the fused-image cache's <slug>-<key> folder
    a, b = read_image(pairs["train"][0].vis, "rgb"), read_image(pairs["train"][0].ir, "rgb")
    np.testing.assert_array_equal(read_image(p, "rgb"), np.maximum(a, b))
    stamp = p.stat().st_mtime_ns
    assert input_images("maximum", pairs["train"], "train", cache)["a1"].stat().st_mtime_ns == stamp  # reused
    other = input_images("maximum", pairs["train"], "train", cache, task="mef")["a1"]  # another task: another key
    assert other != p and other.is_file() and p.stat().st_mtime_ns == stamp
    os.utime(pairs["train"][0].ir, ns=(stamp + 10**9, stamp + 10**9))  # a source newer than its fused image
    assert input_images("maximum", pairs["train"], "train", cache)["a1"].stat().st_mtime_ns != stamp
    small = input_images("maximum", pairs["train"], "train", cache, fused_format="jpg")["a1"]
    assert small.suffix == ".jpg" and np.abs(read_image(small).astype(int) - np.maximum(a, b)).mean() < 8


def test_input_slug():
    assert input_slug("average") == "average"
    s = input_slug("tcmoa_base:/x/ckpt.pth")
    assert s.startswith("tcmoa_base-") and len(s) == len("tcmoa_base-") + 8
    assert input_slug("tcmoa_base:/y/ckpt.pth") != s


def test_schedules():
    assert {"llvip", "synthetic_cpu", "tiny_test"} <= set(list_schedules())
    s = load_schedule("synthetic_cpu", ["epochs=3", "model=yolo11n.yaml", "lr0=0.02"])
    assert s["epochs"] == 3 and s["model"] == "yolo11n.yaml" and s["lr0"] == 0.02 and s["imgsz"] == 192
    assert s["amp"] is False and s["val"] is False
    with pytest.raises(ConfigError, match="unknown training argument 'epochz'"):
        load_schedule("synthetic_cpu", ["epochz=3"])
    with pytest.raises(ConfigError, match="'data' cannot be set here"):
        load_schedule("synthetic_cpu", ["data=x.yaml"])
    with pytest.raises(ConfigError, match="epochs=0 must be a positive integer"):
        load_schedule("synthetic_cpu", ["epochs=0"])
    with pytest.raises(ConfigError, match="schedule 'nope' not found"):
        load_schedule("nope")


def test_model_specs(tmp_path):
    assert check_model_spec("yolov8n.yaml") == "yolov8n.yaml"
    assert check_model_spec("yolo11s.yaml") == "yolo11s.yaml"
    with pytest.raises(CheckpointError, match="weights file not found"):
        check_model_spec("yolov8n.pt")  # would be a download: refused
    with pytest.raises(ConfigError, match="no such model YAML"):
        check_model_spec("yolov99n.yaml")
    with pytest.raises(ConfigError, match="expected a model .yaml"):
        check_model_spec("resnet50")


def test_devices_and_class_mapping():
    assert ultralytics_device("cpu") == "cpu"
    if not torch.cuda.is_available():
        assert ultralytics_device("auto") == "cpu"
        with pytest.raises(ConfigError, match="CUDA is not available"):
            ultralytics_device("0,1")
    with pytest.raises(ConfigError, match="expected cpu, auto"):
        ultralytics_device("gpu0")
    coco_like = ["person", "bicycle", "car", "motorcycle"]
    assert class_mapping(coco_like, ("People", "Car", "Motorcycle")) == {0: 0, 2: 1, 3: 2}
    with pytest.raises(ConfigError, match="share no name"):
        class_mapping(["cat", "dog"], ("person",))
