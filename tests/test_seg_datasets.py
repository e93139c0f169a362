"""MFNet / FMB datasets in mmseg's registry, the LoadRGBTImage transform and the segmentation configs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import downstream.segmentation  # noqa: F401  (registers datasets, transform, metric, hook)
from downstream.segmentation.classes import FMB_CLASSES, MFNET_CLASSES
from fusion.errors import ConfigError, DatasetError

H, W = 16, 24


def _build(cfg: dict):
    from mmengine.registry import DefaultScope
    from mmseg.registry import DATASETS

    with DefaultScope.overwrite_default_scope("mmseg"):
        return DATASETS.build(cfg)


def _pipeline():
    return [dict(type="LoadRGBTImage"), dict(type="LoadAnnotations"), dict(type="PackSegInputs")]


@pytest.fixture(scope="module")
def mfnet_root(tmp_path_factory) -> Path:
    """A hand-made MFNet tree: 4-channel PNGs whose pixels encode the sample index, labels, split lists."""
    root = tmp_path_factory.mktemp("mfnet")
    (root / "images").mkdir()
    (root / "labels").mkdir()
    names = [f"{i:05d}{'D' if i % 2 else 'N'}" for i in range(1, 7)]
    for i, name in enumerate(names):
        rgbt = np.zeros((H, W, 4), np.uint8)
        rgbt[..., 0], rgbt[..., 1], rgbt[..., 2], rgbt[..., 3] = 10 + i, 100, 200, 50 + i
        Image.fromarray(rgbt, mode="RGBA").save(root / "images" / f"{name}.png")
        label = np.zeros((H, W), np.uint8)
        label[: H // 2, : W // 2] = i % 9
        Image.fromarray(label).save(root / "labels" / f"{name}.png")
    (root / "train.txt").write_text("\n".join(names[:3]) + "\n")
    (root / "val.txt").write_text(names[3] + "\n")
    (root / "test.txt").write_text("\n".join(n + ".png" for n in names[4:]) + "\n")  # extensions are tolerated
    return root


@pytest.fixture(scope="module")
def fmb_root(tmp_path_factory) -> Path:
    from fusion.data.synthetic import write_fmb

    root = tmp_path_factory.mktemp("fmb")
    write_fmb(root, n_train=6, n_test=3, height=48, width=64)
    return root


def test_mfnet_registered_and_reads_original_layout(mfnet_root):
    from mmseg.registry import DATASETS

    assert DATASETS.get("MFNetDataset") is downstream.segmentation.MFNetDataset
    train = _build(dict(type="MFNetDataset", data_root=str(mfnet_root), split="train", pipeline=_pipeline()))
    test = _build(dict(type="MFNetDataset", data_root=str(mfnet_root), split="test", pipeline=_pipeline()))
    assert len(train) == 3 and len(test) == 2
    assert train.metainfo["classes"] == MFNET_CLASSES
    assert test.get_data_info(0)["sample_name"] == "00005D"
    item = train[1]  # sample index 1: R=11, G=100, B=200, thermal=51
    img = item["inputs"].numpy()  # (3, H, W) in BGR order, as mmseg's LoadImageFromFile
    assert img.shape == (3, H, W)
    assert img[:, 0, 0].tolist() == [200, 100, 11]
    assert item["data_samples"].gt_sem_seg.data[0, 0, 0].item() == 1


def test_mfnet_modalities(mfnet_root, tmp_path):
    ir = _build(dict(type="MFNetDataset", data_root=str(mfnet_root), split="train", modality="ir",
                     pipeline=_pipeline()))
    assert ir[2]["inputs"][:, 0, 0].tolist() == [52, 52, 52]
    fused = _build(dict(type="MFNetDataset", data_root=str(mfnet_root), split="train", modality="fused",
                        fuser="average", pipeline=_pipeline()))
    # average of visible (R=10, G=100, B=200) and infrared (50) for sample 0, back in BGR
    assert fused[0]["inputs"][:, 0, 0].tolist() == [125, 75, 30]
    folder = tmp_path / "fused"
    (folder / "train").mkdir(parents=True)
    for name in ("00001D", "00002N", "00003D"):
        Image.fromarray(np.full((H, W, 3), 77, np.uint8)).save(folder / "train" / f"{name}.png")
    from_dir = _build(dict(type="MFNetDataset", data_root=str(mfnet_root), split="train", modality="fused",
                           fused_dir=str(folder), pipeline=_pipeline()))
    assert from_dir[1]["inputs"][:, 3, 3].tolist() == [77, 77, 77]
    with pytest.raises(DatasetError, match="no fused image for 2 of 2 'test'"):
        _build(dict(type="MFNetDataset", data_root=str(mfnet_root), split="test", modality="fused",
                    fused_dir=str(folder), pipeline=_pipeline()))


def test_bad_dataset_arguments(mfnet_root, tmp_path):
    with pytest.raises(ConfigError, match="modality"):
        _build(dict(type="MFNetDataset", data_root=str(mfnet_root), modality="thermal"))
    with pytest.raises(ConfigError, match="exactly one"):
        _build(dict(type="MFNetDataset", data_root=str(mfnet_root), modality="fused"))
    with pytest.raises(DatasetError, match="not found"):
        _build(dict(type="MFNetDataset", data_root=str(tmp_path / "nope")))
    (tmp_path / "images").mkdir()
    with pytest.raises(DatasetError, match="train.txt: split list not found"):
        _build(dict(type="MFNetDataset", data_root=str(tmp_path)))


def test_fmb_registered_splits_and_no_val(fmb_root):
    train = _build(dict(type="FMBDataset", data_root=str(fmb_root), split="train", pipeline=_pipeline()))
    test = _build(dict(type="FMBDataset", data_root=str(fmb_root), split="test", modality="ir",
                       pipeline=_pipeline()))
    assert len(train) == 6 and len(test) == 3
    assert train.metainfo["classes"] == FMB_CLASSES and len(FMB_CLASSES) == 15
    item = test[0]
    info = test.get_data_info(0)
    ir = np.asarray(Image.open(info["ir_path"]).convert("L"))
    assert item["inputs"].shape == (3, 48, 64)
    np.testing.assert_array_equal(item["inputs"][0].numpy(), ir)
    gt = np.asarray(Image.open(info["seg_map_path"]))
    np.testing.assert_array_equal(item["data_samples"].gt_sem_seg.data[0].numpy(), gt)
    assert gt.max() < 15
    with pytest.raises(ConfigError, match="no validation split"):
        _build(dict(type="FMBDataset", data_root=str(fmb_root), split="val"))
    held = _build(dict(type="FMBDataset", data_root=str(fmb_root), split="val", val_every=3))
    rest = _build(dict(type="FMBDataset", data_root=str(fmb_root), split="train", val_every=3))
    held_names = {held.get_data_info(i)["sample_name"] for i in range(len(held))}
    rest_names = {rest.get_data_info(i)["sample_name"] for i in range(len(rest))}
    assert len(held_names) == 2 and len(rest_names) == 4 and not held_names & rest_names


@pytest.mark.parametrize("name", ["segformer_mit-b0_mfnet", "segformer_mit-b0_fmb", "fcn_r18-d8_mfnet",
                                  "fcn_r18-d8_fmb", "fcn_r18-slim_mfnet-synthetic"])
def test_configs_build_model_and_datasets(name, repo_root, mfnet_root, fmb_root):
    import torch
    from mmengine.registry import DefaultScope
    from mmseg.registry import MODELS

    from downstream.segmentation.engine import load_config, set_data_root

    cfg = load_config(repo_root / "configs" / "seg" / f"{name}.py")
    is_fmb = "fmb" in name
    set_data_root(cfg, fmb_root if is_fmb else mfnet_root)
    assert cfg.model.decode_head.num_classes == (15 if is_fmb else 9)
    assert cfg.model.decode_head.norm_cfg.type == "BN"
    assert cfg.model.decode_head.loss_decode.type == "CrossEntropyLoss"
    with DefaultScope.overwrite_default_scope("mmseg"):
        model = MODELS.build(cfg.model)
    with torch.no_grad():
        out = model(torch.zeros(1, 3, 64, 64), mode="tensor")
    assert out.shape[1] == cfg.model.decode_head.num_classes
    ds = _build(cfg.test_dataloader.dataset)
    assert len(ds) == (3 if is_fmb else 2)
