"""Perception overlays on fused frames: a tiny random YOLO (ultralytics) and a tiny mmseg model, both offline."""

from __future__ import annotations

import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest

from downstream.perception import DetectionOverlay, SegmentationOverlay
from fusion.errors import CheckpointError, InputError
from fusion.stream import IteratorSource, Perceiver, StreamConfig, StreamPipeline
from fusion.stream.perceive import create_perceiver

_TINY_SEG_CONFIG = """
norm_cfg = dict(type="BN", requires_grad=True)
model = dict(
    type="EncoderDecoder",
    data_preprocessor=dict(type="SegDataPreProcessor", mean=[123.675, 116.28, 103.53], std=[58.395, 57.12, 57.375],
                           bgr_to_rgb=True, pad_val=0, seg_pad_val=255),
    backbone=dict(type="UNet", in_channels=3, base_channels=4, num_stages=2, strides=(1, 1), enc_num_convs=(1, 1),
                  dec_num_convs=(1,), downsamples=(True,), enc_dilations=(1, 1), dec_dilations=(1,),
                  norm_cfg=norm_cfg, upsample_cfg=dict(type="InterpConv")),
    decode_head=dict(type="FCNHead", in_channels=4, in_index=-1, channels=4, num_convs=1, concat_input=False,
                     num_classes=3, norm_cfg=norm_cfg, align_corners=False,
                     loss_decode=dict(type="CrossEntropyLoss", use_sigmoid=False, loss_weight=1.0)),
    train_cfg=dict(),
    test_cfg=dict(mode="whole"),
)
test_pipeline = [dict(type="LoadImageFromFile"), dict(type="PackSegInputs")]
"""


def _frames(n: int, w: int = 64, h: int = 48) -> list[np.ndarray]:
    rng = np.random.default_rng(0)
    return [rng.integers(0, 256, (h, w, 3), dtype=np.uint8) for _ in range(n)]


@pytest.fixture
def yolo_offline(tmp_path, monkeypatch):
    """Ultralytics without network: YOLO_OFFLINE=1 and a config dir holding a local font."""
    import matplotlib

    cfg = tmp_path / "yolo_cfg"
    (cfg / "Ultralytics").mkdir(parents=True)
    shutil.copyfile(Path(matplotlib.get_data_path()) / "fonts" / "ttf" / "DejaVuSans.ttf",
                    cfg / "Ultralytics" / "Arial.ttf")
    monkeypatch.setenv("YOLO_OFFLINE", "1")
    monkeypatch.setenv("YOLO_CONFIG_DIR", str(cfg))
    return cfg


def test_detection_overlay_draws_boxes_in_the_pipeline(yolo_offline, tmp_path):
    # Random weights give near-zero scores; a tiny threshold makes the model report (random) boxes to draw.
    det = DetectionOverlay("yolov8n.yaml", device="cpu", conf=1e-9, imgsz=64)
    assert isinstance(det, Perceiver)
    frame = _frames(1)[0]
    out = det(frame)
    assert out.shape == frame.shape and out.dtype == np.uint8
    assert det.last_count > 0 and not np.array_equal(out, frame)

    vis, ir = _frames(3), _frames(3)[::-1]
    pipe = StreamPipeline(IteratorSource(vis, "vis"), IteratorSource(ir, "ir"), _avg_fuser(),
                          config=StreamConfig(progress=False, temporal=False), outputs=[tmp_path / "det"],
                          perceiver=det)
    stats = pipe.run()
    assert stats["frames_out"] == 3 and stats["stages_ms"]["perceive"]["count"] == 3
    written = cv2.cvtColor(cv2.imread(str(tmp_path / "det" / "frame_000000.png")), cv2.COLOR_BGR2RGB)
    plain = ((vis[0].astype(np.uint16) + ir[0]) // 2).astype(np.uint8)
    assert written.shape == plain.shape and not np.array_equal(written, plain)  # boxes drawn on the output


def test_run_stream_builds_the_overlay_from_options(yolo_offline, tmp_path):
    """``stream_fuse.py --detect`` passes these options; run_stream builds the overlay for its device."""
    from fusion.stream import run_stream

    vis, ir = _frames(2), _frames(2)[::-1]
    stats = run_stream(IteratorSource(vis, "vis"), IteratorSource(ir, "ir"), _avg_fuser(), out=tmp_path / "det",
                       device="cpu", progress=False, temporal=False,
                       perceiver={"detect": "yolov8n.yaml", "conf": 1e-9, "imgsz": 64})
    assert stats["frames_out"] == 2 and stats["stages_ms"]["perceive"]["count"] == 2


def test_detection_overlay_refuses_missing_weights(tmp_path):
    with pytest.raises(InputError, match="missing.pt"):
        create_perceiver(detect=str(tmp_path / "missing.pt"))


def test_segmentation_overlay_tiny_mmseg_model(tmp_path):
    pytest.importorskip("downstream._compat")
    import torch

    cfg = tmp_path / "tiny_seg.py"
    cfg.write_text(_TINY_SEG_CONFIG)
    seg = SegmentationOverlay(cfg, device="cpu", alpha=0.5)
    frame = _frames(1)[0]
    out = seg(frame)
    labels = seg.last_labels
    assert out.shape == frame.shape and labels.shape == frame.shape[:2] and labels.max() < 3
    ckpt = tmp_path / "tiny.pth"
    palette = [[255, 0, 0], [0, 255, 0], [0, 0, 255]]
    torch.save({"state_dict": seg.model.state_dict(), "meta": {"dataset_meta": {"classes": ["a", "b", "c"],
                                                                                "palette": palette}}}, ckpt)
    seg2 = SegmentationOverlay(cfg, ckpt, device="cpu", alpha=0.5)
    out2 = seg2(frame)
    assert np.array_equal(seg2.last_labels, labels)  # same weights, same classes
    expect = cv2.addWeighted(frame, 0.5, np.asarray(palette, np.uint8)[labels], 0.5, 0.0)
    assert np.array_equal(out2, expect)  # colours from the checkpoint's palette, blended at alpha
    torch.save({"state_dict": {"backbone.nothing": torch.zeros(1)}}, tmp_path / "wrong.pth")
    with pytest.raises(CheckpointError, match="wrong.pth"):
        SegmentationOverlay(cfg, tmp_path / "wrong.pth", device="cpu")


def _avg_fuser():
    from fusion.fusers import Fuser

    class _Avg(Fuser):
        name = "avg"

        def fuse(self, a, b, task="vif"):
            return ((a.astype(np.uint16) + b) // 2).astype(np.uint8)

    return _Avg()
