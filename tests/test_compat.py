"""The runtime fixes in downstream._compat: mmcv-lite shim, mmengine checkpoints, ultralytics offline."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest
import torch

from fusion.errors import CheckpointError


def test_shim_builds_segformer_and_runs_one_training_step():
    from downstream._compat import prepare_mmseg

    prepare_mmseg()
    import mmcv.ops
    from mmengine.config import Config
    from mmseg.registry import MODELS

    assert hasattr(mmcv.ops, "point_sample")
    with pytest.raises(ModuleNotFoundError, match="full mmcv"):
        mmcv.ops.DeformConv2d  # noqa: B018 - compiled op, must fail clearly
    norm = dict(type="BN", requires_grad=True)
    cfg = Config(
        dict(
            type="EncoderDecoder",
            data_preprocessor=dict(
                type="SegDataPreProcessor", mean=[123.675, 116.28, 103.53], std=[58.395, 57.12, 57.375],
                bgr_to_rgb=True, pad_val=0, seg_pad_val=255, size=(64, 64),
            ),
            backbone=dict(
                type="MixVisionTransformer", in_channels=3, embed_dims=16, num_stages=4, num_layers=[1, 1, 1, 1],
                num_heads=[1, 1, 1, 1], patch_sizes=[7, 3, 3, 3], sr_ratios=[8, 4, 2, 1], out_indices=(0, 1, 2, 3),
                mlp_ratio=4, qkv_bias=True,
            ),
            decode_head=dict(
                type="SegformerHead", in_channels=[16, 16, 16, 16], in_index=[0, 1, 2, 3], channels=32,
                dropout_ratio=0.1, num_classes=9, norm_cfg=norm, align_corners=False,
                loss_decode=dict(type="CrossEntropyLoss", use_sigmoid=False, loss_weight=1.0),
            ),
            train_cfg=dict(), test_cfg=dict(mode="whole"),
        )
    )
    torch.manual_seed(0)
    model = MODELS.build(cfg)
    from mmengine.optim import OptimWrapper
    from mmengine.structures import PixelData
    from mmseg.structures import SegDataSample

    optim = OptimWrapper(torch.optim.SGD(model.parameters(), lr=0.01))
    samples = []
    for _ in range(2):
        s = SegDataSample()
        s.gt_sem_seg = PixelData(data=torch.randint(0, 9, (1, 64, 64)))
        s.set_metainfo(dict(img_shape=(64, 64), ori_shape=(64, 64), pad_shape=(64, 64)))
        samples.append(s)
    data = dict(inputs=[torch.randint(0, 255, (3, 64, 64), dtype=torch.uint8) for _ in range(2)],
                data_samples=samples)
    before = [p.detach().clone() for p in model.parameters()]
    losses = model.train_step(data, optim)
    assert np.isfinite(float(losses["decode.loss_ce"]))
    assert any(not torch.equal(a, b) for a, b in zip(before, model.parameters()))


def test_mmengine_checkpoint_loads_safely_through_mmengine(tmp_path):
    from mmengine.logging.history_buffer import HistoryBuffer
    from mmengine.runner.checkpoint import CheckpointLoader

    from downstream._compat import install_safe_mmengine_loading

    ckpt = {"state_dict": {"w": torch.ones(2)}, "message_hub": {"loss": HistoryBuffer([1.0, 2.0], [1, 1])},
            "meta": {"arr": np.arange(3), "f": np.float64(1.5)}}
    torch.save(ckpt, tmp_path / "c.pth")
    install_safe_mmengine_loading()
    registry = dict(HistoryBuffer._statistics_methods)
    loaded = CheckpointLoader.load_checkpoint(str(tmp_path / "c.pth"), map_location="cpu")
    # The file's pickled statistics methods never reach the class-wide registry (HistoryBuffer.__setstate__ would).
    assert HistoryBuffer._statistics_methods == registry
    assert torch.equal(loaded["state_dict"]["w"], torch.ones(2))
    buf = loaded["message_hub"]["loss"]
    assert isinstance(buf, HistoryBuffer) and buf.mean() == 1.5 and buf.current() == 2.0
    np.testing.assert_array_equal(loaded["meta"]["arr"], np.arange(3))
    assert loaded["meta"]["f"] == np.float64(1.5) and isinstance(loaded["meta"]["f"], np.float64)
    # An arbitrary object is still refused, and no global allow-list was widened for other loads.
    torch.save({"x": _Evil()}, tmp_path / "evil.pth")
    with pytest.raises(Exception, match="could run code"):
        CheckpointLoader.load_checkpoint(str(tmp_path / "evil.pth"), map_location="cpu")
    assert not any(getattr(g, "__name__", "") == "getattr" for g in torch.serialization.get_safe_globals())
    with pytest.raises(Exception, match="(?i)unsupported global|weights_only"):
        torch.load(tmp_path / "c.pth", weights_only=True)  # plain torch.load stays strict


class _Evil:
    pass


def test_ultralytics_offline_setup_is_local(tmp_path):
    code = (
        "import os\n"
        "os.environ['YOLO_CONFIG_DIR'] = os.environ['T_CFG']\n"
        "from downstream._compat import setup_ultralytics_offline\n"
        "cfg = setup_ultralytics_offline()\n"
        "import ultralytics\n"
        "from ultralytics.utils import SETTINGS_FILE, ONLINE\n"
        "print(cfg, SETTINGS_FILE, ONLINE, os.environ['YOLO_OFFLINE'])\n"
    )
    env = dict(os.environ, T_CFG=str(tmp_path / "ucfg"))
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert r.returncode == 0, r.stderr
    cfg, settings, online, flag = r.stdout.split()[-4:]
    assert settings.startswith(str(tmp_path)) and online == "False" and flag == "1"
    assert (tmp_path / "ucfg" / "Ultralytics" / "Arial.ttf").stat().st_size > 1000


def test_missing_pt_is_refused_fast(tmp_path):
    from downstream._compat import check_local_weights

    with pytest.raises(CheckpointError, match="yolov8n.pt: weights file not found"):
        check_local_weights(tmp_path / "yolov8n.pt")
    assert check_local_weights("yolov8n.yaml").name == "yolov8n.yaml"


def test_class_weighted_cross_entropy_ignores_void_pixels():
    """mmseg 1.2.2 indexes the class weights with the ignore label; the patched loss averages over valid pixels."""
    from downstream._compat import prepare_mmseg

    prepare_mmseg()
    from mmseg.models.losses import CrossEntropyLoss

    torch.manual_seed(0)
    weights = [1.0, 2.0, 3.0]
    loss = CrossEntropyLoss(class_weight=weights)
    logits = torch.randn(2, 3, 4, 5)
    labels = torch.randint(0, 3, (2, 4, 5))
    labels[:, :2] = 255
    got = loss(logits, labels, ignore_index=255)
    expected = torch.nn.functional.cross_entropy(logits, labels, weight=torch.tensor(weights), ignore_index=255)
    assert torch.allclose(got, expected, atol=1e-6)
    full = torch.randint(0, 3, (2, 4, 5))  # no void pixel: the value mmseg computed before the patch
    w = torch.tensor(weights)
    per_pixel = torch.nn.functional.cross_entropy(logits, full, weight=w, reduction="none")
    assert torch.allclose(loss(logits, full, ignore_index=255), per_pixel.sum() / w[full].sum(), atol=1e-6)
