"""Untrusted files never run code, and every bad input gets one clear line (issue 14).

Hostile checkpoints are built here (``tests/_hostile.py``): unpickling one carelessly creates a marker file. Every
loader the project has is tried with each; the marker must never appear and the error must be one line that does not
advise switching safe loading off.
"""

from __future__ import annotations

import errno
import importlib.util
import json
import os
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from _hostile import write_hostile_checkpoint
from PIL import Image

from fusion.errors import CheckpointError, ConfigError, DatasetError, InputError, NumericalError, OutputError
from fusion.utils.cli import run_cli
from fusion.utils.safe_load import check_finite

ROOT = Path(__file__).resolve().parents[1]
KINDS = ("getattr", "system")


def _script(name: str):
    spec = importlib.util.spec_from_file_location(f"{name}_script", ROOT / "pipelines" / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _assert_refused(exc: BaseException, marker: Path) -> None:
    text = str(exc)
    assert not marker.exists(), "the payload ran"
    assert "\n" not in text and "weights_only=False" not in text, text
    assert "could run code" in text or "pickle that can run code" in text, text


# ------------------------------------------------------------------------------------------ code execution


def _load_fusion(path: Path) -> None:
    from fusion.models import read_checkpoint

    read_checkpoint(path)


def _load_fuser(path: Path) -> None:
    from fusion.fusers import create_fuser

    create_fuser(f"tcmoa_tiny:{path}")


def _load_training(path: Path) -> None:
    from fusion.training.checkpoint import load_training_checkpoint

    load_training_checkpoint(path)


def _load_e2e(path: Path) -> None:
    from downstream.e2e.checkpoint import load_e2e_checkpoint

    load_e2e_checkpoint(path)


def _load_segmenter(path: Path) -> None:
    from downstream.segmentation.checkpoint import read_segmenter_state

    read_segmenter_state(path)


def _load_mmengine(path: Path) -> None:
    from downstream._compat import prepare_mmseg

    prepare_mmseg()
    from mmengine.runner.checkpoint import CheckpointLoader

    CheckpointLoader.load_checkpoint(str(path), map_location="cpu")  # what Runner.resume / load_from use


def _load_stream_seg(path: Path) -> None:
    from downstream.segmentation.checkpoint import read_segmenter_checkpoint  # what SegmentationOverlay reads with

    read_segmenter_checkpoint(path)


def _load_detector(path: Path) -> None:
    from downstream.detection.yolo import load_detector

    load_detector(path)


def _load_detection_overlay(path: Path) -> None:
    from downstream.perception import DetectionOverlay

    DetectionOverlay(path)


def _load_mae_url(path: Path) -> None:
    from fusion.models.checkpoint import download_mae_weights

    download_mae_weights(path.as_uri(), cache_dir=path.parent / "cache")


LOADERS = {
    "fusion_checkpoint": _load_fusion,
    "fuser_spec": _load_fuser,
    "training_resume": _load_training,
    "e2e_resume": _load_e2e,
    "seg_checkpoint": _load_segmenter,
    "mmengine_loader": _load_mmengine,
    "stream_segment": _load_stream_seg,
    "det_checkpoint": _load_detector,
    "stream_detect": _load_detection_overlay,
    "mae_download": _load_mae_url,
}


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("loader", sorted(LOADERS))
def test_hostile_checkpoint_never_runs(tmp_path, loader, kind):
    marker = tmp_path / "PWNED"
    wrap = "model" if loader in ("fusion_checkpoint", "fuser_spec", "mae_download") else "state_dict"
    path = write_hostile_checkpoint(tmp_path / "evil.pt", marker, kind, wrap=wrap)
    with pytest.raises(CheckpointError) as info:
        LOADERS[loader](path)
    _assert_refused(info.value, marker)


def test_getattr_payload_is_real(tmp_path):
    """The payload does run code when ``getattr`` is allow-listed (the hole that was closed): the tests above mean
    something."""
    import builtins

    marker = tmp_path / "PWNED"
    path = write_hostile_checkpoint(tmp_path / "evil.pt", marker, "getattr")
    with torch.serialization.safe_globals([builtins.getattr]):
        try:
            torch.load(path, weights_only=True)
        except Exception:
            pass
    assert marker.exists()


@pytest.mark.parametrize("kind", KINDS)
def test_fuse_script_refuses_hostile_checkpoint_with_one_line(tmp_path, capsys, kind):
    marker = tmp_path / "PWNED"
    path = write_hostile_checkpoint(tmp_path / "evil.pth", marker, kind, wrap="model")
    for sub, mode in (("vi", "RGB"), ("ir", "L")):
        (tmp_path / sub).mkdir()
        Image.new(mode, (32, 24), 90).save(tmp_path / sub / "01.png")
    argv = ["--a", str(tmp_path / "vi"), "--b", str(tmp_path / "ir"), "--method", f"tcmoa_tiny:{path}",
            "--out", str(tmp_path / "out"), "--no-progress"]
    mod = _script("fuse")
    with pytest.raises(SystemExit) as info:
        run_cli(lambda: mod.main(argv))
    err = capsys.readouterr().err.strip()
    assert info.value.code == 2 and not marker.exists()
    assert err.count("\n") == 0 and "could run code" in err, err
    assert not (tmp_path / "out" / "01.png").exists()


def test_no_callable_is_ever_allow_listed():
    from downstream._compat import prepare_mmseg
    from downstream.detection.yolo import import_yolo

    prepare_mmseg()
    import_yolo()
    entries = [g[0] if isinstance(g, tuple) else g for g in torch.serialization.get_safe_globals()]
    # torch registers its own nested-tensor rebuild helper; nothing else may be a function.
    leaked = [g for g in entries if callable(g) and not isinstance(g, type)
              and not getattr(g, "__module__", "").startswith("torch.")]
    assert leaked == []


@pytest.mark.parametrize("payload", ["random", "pickle", "empty", "text"])
def test_garbage_checkpoints_are_one_line(tmp_path, payload):
    import pickle

    p = tmp_path / "bad.pth"
    data = {"random": os.urandom(4096), "pickle": pickle.dumps({"a": 1}), "empty": b"",
            "text": b"not a checkpoint\n"}[payload]
    p.write_bytes(data)
    with pytest.raises(CheckpointError) as info:
        _load_segmenter(p)
    msg = str(info.value)
    assert msg.startswith(str(p)) and "\n" not in msg and "weights_only=False" not in msg


# ------------------------------------------------------------------------------------------ non-finite weights


def _tiny_state() -> dict[str, torch.Tensor]:
    from fusion.models import create_model

    return create_model("tcmoa_tiny").state_dict()


@pytest.mark.parametrize("fmt", [".pth", ".safetensors"])
def test_nan_fusion_checkpoint_is_refused(tmp_path, fmt):
    from fusion.models import create_model, read_checkpoint, save_checkpoint

    model = create_model("tcmoa_tiny")
    name = next(k for k, v in model.state_dict().items() if v.is_floating_point() and "MoA" in k)
    with torch.no_grad():
        model.state_dict()[name].fill_(float("nan"))
    path = save_checkpoint(model, tmp_path / f"nan{fmt}")
    with pytest.raises(CheckpointError, match="non-finite weights.*" + name.replace(".", r"\.")):
        read_checkpoint(path)


def test_nan_output_stops_fusion():
    from fusion.models import create_model
    from fusion.models.inference import fuse_arrays

    model = create_model("tcmoa_tiny")
    with torch.no_grad():
        for p in model.parameters():
            p.fill_(float("nan"))
    a = np.full((48, 64, 3), 100, np.uint8)
    with pytest.raises(NumericalError, match="NaN or infinity"):
        fuse_arrays(model, a, a)


def test_check_finite_names_tensors():
    check_finite({"a": torch.ones(2), "i": torch.arange(3)}, "x")
    with pytest.raises(CheckpointError, match=r"x: non-finite weights \(NaN or infinity\) in b"):
        check_finite({"a": torch.ones(2), "b": torch.tensor([1.0, float("inf")])}, "x")


def test_nan_segmenter_and_detector_weights_are_refused(tmp_path):
    torch.save({"state_dict": {"w": torch.tensor([float("nan")])}}, tmp_path / "seg.pth")
    with pytest.raises(CheckpointError, match="non-finite"):
        _load_segmenter(tmp_path / "seg.pth")
    from downstream.detection.safe_weights import save_safe_detector
    from downstream.detection.yolo import import_yolo, load_detector

    det = import_yolo()("yolov8n.yaml", task="detect")
    with torch.no_grad():
        next(det.model.parameters()).fill_(float("nan"))
    save_safe_detector(det, tmp_path / "det.safe.pt")
    with pytest.raises(CheckpointError, match="non-finite"):
        load_detector(tmp_path / "det.safe.pt")


# ------------------------------------------------------------------------------------------ safe detector files


def test_safe_detector_roundtrip_and_trust(tmp_path):
    from downstream.detection.safe_weights import convert_trusted_detector
    from downstream.detection.yolo import import_yolo, load_detector

    det = import_yolo()("yolov8n.yaml", task="detect")
    det.save(str(tmp_path / "ul.pt"))
    with pytest.raises(CheckpointError, match="pickle that can run code"):
        load_detector(tmp_path / "ul.pt")
    trusted = load_detector(tmp_path / "ul.pt", trust=True)
    convert_trusted_detector(tmp_path / "ul.pt", tmp_path / "ul.safe.pt")
    safe = load_detector(tmp_path / "ul.safe.pt")
    x = np.random.default_rng(0).integers(0, 255, (96, 128, 3), dtype=np.uint8)
    a = trusted.predict(x, imgsz=128, conf=0.0, verbose=False)[0].boxes.xyxy
    b = safe.predict(x, imgsz=128, conf=0.0, verbose=False)[0].boxes.xyxy
    assert a.shape == b.shape and torch.allclose(a, b)


@pytest.mark.parametrize("field,value,match", [
    ("module", "check_requirements", "not a torch module class"),
    ("module", "__builtins__", "not a torch module class"),
    ("activation", "__import__('os').system('x')", "activation"),
    ("activation", "nn.SiLU(print)", "activation"),
])
def test_safe_detector_yaml_cannot_reach_code(tmp_path, field, value, match):
    from downstream.detection.safe_weights import install_safe_yolo_loading, validate_model_yaml

    install_safe_yolo_loading()
    d = {"nc": 1, "backbone": [[-1, 1, "Conv", [16, 3, 2]]], "head": [[-1, 1, "Conv", [16, 3, 1]]]}
    if field == "module":
        d["backbone"][0][2] = value
    else:
        d["activation"] = value
    with pytest.raises(CheckpointError, match=match):
        validate_model_yaml(d, "evil.pt")


# ------------------------------------------------------------------------------------------ images and outputs


def _bomb_png(path: Path, w: int = 20000, h: int = 20000) -> Path:
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    raw = zlib.compress(b"\x00" * 64)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 0, 0, 0, 0))
                     + chunk(b"IDAT", raw) + chunk(b"IEND", b""))
    return path


@pytest.mark.parametrize("case", ["bomb", "empty", "truncated", "text", "missing"])
def test_bad_images_are_one_line(tmp_path, case):
    from fusion.utils.io import read_image

    p = tmp_path / "x.png"
    if case == "bomb":
        _bomb_png(p)
    elif case == "empty":
        p.write_bytes(b"")
    elif case == "truncated":
        Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64, 3), np.uint8)).save(p)
        p.write_bytes(p.read_bytes()[:200])
    elif case == "text":
        p.write_text("hello")
    with pytest.raises(InputError) as info:
        read_image(p)
    assert str(info.value).startswith(str(p)) and "\n" not in str(info.value)
    if case == "bomb":
        assert "TCMOA_MAX_IMAGE_PIXELS" in str(info.value)


@pytest.mark.parametrize("errcode", [errno.ENOSPC, errno.EROFS, errno.EACCES])
def test_full_or_read_only_disk_is_one_line(tmp_path, monkeypatch, errcode):
    from fusion.utils import io as fio

    def fail(*_a, **_k):
        raise OSError(errcode, os.strerror(errcode))

    monkeypatch.setattr(fio.os, "replace", fail)
    target = tmp_path / "out" / "a.png"
    with pytest.raises(OutputError, match=f"{target}: cannot write"):
        fio.write_image(target, np.zeros((8, 8, 3), np.uint8))
    assert list((tmp_path / "out").iterdir()) == []  # no partial file


def test_unwritable_folder_is_one_line(tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    from fusion.utils.io import atomic_write_text

    with pytest.raises(SystemExit) as info:
        run_cli(lambda: atomic_write_text(blocker / "sub" / "a.txt", "x"))
    err = capsys.readouterr().err
    assert info.value.code == 2 and err.count("\n") == 1 and "a.txt" in err


def _fuse(argv, capsys):
    mod = _script("fuse")
    with pytest.raises(SystemExit) as info:
        run_cli(lambda: mod.main([*argv, "--no-progress"]))
    return info.value.code, capsys.readouterr().err


def _tno(root: Path, n: int = 2) -> Path:
    rng = np.random.default_rng(0)
    for i in range(n):
        for sub in ("vi", "ir"):
            (root / sub).mkdir(parents=True, exist_ok=True)
            Image.fromarray(rng.integers(0, 255, (24, 32, 3), np.uint8)).save(root / sub / f"0{i}.png")
    return root


def test_same_folder_twice_is_refused(tmp_path, capsys):
    root = _tno(tmp_path / "d")
    code, err = _fuse(["--a", str(root / "vi"), "--b", str(root / "vi"), "--method", "average",
                       "--out", str(tmp_path / "o")], capsys)
    assert code == 2 and "given as both sources" in err and not (tmp_path / "o").exists()


@pytest.mark.parametrize("damage", ["empty", "truncated"])
def test_skip_existing_refuses_broken_outputs(tmp_path, capsys, damage):
    root = _tno(tmp_path / "d")
    out = tmp_path / "o"
    argv = ["--a", str(root / "vi"), "--b", str(root / "ir"), "--method", "average", "--out", str(out)]
    assert _fuse(argv, capsys)[0] == 0
    good = (out / "01.png").read_bytes()
    broken = out / "00.png"
    whole = broken.read_bytes()
    broken.write_bytes(b"" if damage == "empty" else whole[: len(whole) // 2])
    assert _fuse([*argv, "--skip-existing"], capsys)[0] == 0
    assert broken.read_bytes() == whole and (out / "01.png").read_bytes() == good
    summary = json.loads((out / "fuse_summary.json").read_text())
    assert summary["written"] == 1 and summary["skipped_existing"] == 1


def test_stale_partial_checkpoints_are_removed(tmp_path):
    from fusion.training.checkpoint import remove_stale_temporaries

    (tmp_path / ".iter_00000200.abc123.tmp.pth").write_bytes(b"partial")
    (tmp_path / "iter_00000100.pth").write_bytes(b"kept")
    (tmp_path / ".other.tmp.pth").write_bytes(b"not ours")
    removed = remove_stale_temporaries(tmp_path)
    assert [p.name for p in removed] == [".iter_00000200.abc123.tmp.pth"]
    assert sorted(p.name for p in tmp_path.iterdir()) == [".other.tmp.pth", "iter_00000100.pth"]


# ------------------------------------------------------------------------------------------ evaluation


def test_eval_out_inside_fused_folder_is_refused(tmp_path):
    from fusion.metrics.report import EvalConfig, run_evaluation

    root = _tno(tmp_path / "d")
    fused = tmp_path / "fused"
    (fused / "m").mkdir(parents=True)
    for i in range(2):
        Image.fromarray(np.zeros((24, 32, 3), np.uint8)).save(fused / "m" / f"0{i}.png")
    cfg = EvalConfig(ir_dir=root / "ir", vis_dir=root / "vi", fused=[str(fused)], out_dir=fused / "eval")
    with pytest.raises(ConfigError, match="inside the input folder"):
        run_evaluation(cfg)
    assert not (fused / "eval").exists()


def test_incomplete_method_is_never_bold():
    from fusion.metrics.registry import get_profile
    from fusion.metrics.report import markdown_table

    summary = {"full": {"EN": (5.0, 0.1, 3)}, "partial": {"EN": (9.0, 0.0, 1)}}
    table = markdown_table(summary, ["EN"], get_profile("tang"))
    assert "| partial (incomplete) | 1 | 9.0000 ± 0.0000 |" in table
    assert "| full | 3 | **5.0000 ± 0.1000** |" in table


@pytest.mark.parametrize("alpha,ok", [(255, True), (0, False)])
def test_evaluate_alpha_channel(alpha, ok):
    from fusion.metrics.evaluate import evaluate

    rng = np.random.default_rng(0)
    a, b = (rng.integers(0, 255, (48, 48, 3), np.uint8) for _ in range(2))
    f = np.dstack([a, np.full((48, 48), alpha, np.uint8)])
    if ok:
        assert evaluate(f, a, b, metrics=["EN"]) == evaluate(a, a, b, metrics=["EN"])
    else:
        with pytest.raises(InputError, match="transparent alpha"):
            evaluate(f, a, b, metrics=["EN"])


@pytest.mark.parametrize("profile,metric,side,ok", [
    ("tang", "VIF", 40, False), ("tang", "VIF", 41, True), ("tang", "EN", 16, True),
    ("mefb", "MEF_SSIM", 32, False), ("vifb", "SSIM", 16, True),
])
def test_evaluate_minimum_sizes(profile, metric, side, ok):
    from fusion.metrics.evaluate import evaluate

    rng = np.random.default_rng(1)
    f, a, b = (rng.integers(0, 255, (side, side + 5), np.uint8) for _ in range(3))
    if ok:
        assert np.isfinite(evaluate(f, a, b, profile=profile, metrics=[metric])[metric])
    else:
        with pytest.raises(InputError, match=f"too small for {metric}.*at least 41"):
            evaluate(f, a, b, profile=profile, metrics=[metric])


def test_unknown_fuser_setting_is_config_error():
    from fusion.fusers import create_fuser

    with pytest.raises(ConfigError, match="'average': unknown setting.*levels"):
        create_fuser("average", levels=3)
    with pytest.raises(ConfigError, match="accepted: .*r1"):
        create_fuser("gff", radius=3)
    assert create_fuser("laplacian", levels=3).name == "laplacian"


# ------------------------------------------------------------------------------------------ detection labels


@pytest.mark.parametrize("box,count", [
    ((10, 10, 50, 50), 0), ((-1, 0, 101, 80), 0), ((-30, 10, 50, 50), 1), ((120, 10, 150, 50), 1),
    ((10, 10, 50, 200), 1),
])
def test_boxes_outside_the_image_are_counted(box, count):
    from downstream.detection.labels import ImageLabels, count_boxes_outside

    labels = ImageLabels(np.array([box], dtype=np.float64), [0], 100, 80)
    assert count_boxes_outside(labels) == count


# ------------------------------------------------------------------------------------------ segmentation data


def _fmb(root: Path, label_fn) -> Path:
    rng = np.random.default_rng(0)
    for i in range(2):
        for sub, mode in (("Visible", 3), ("Infrared", 1)):
            (root / "train" / sub).mkdir(parents=True, exist_ok=True)
            shape = (24, 32, 3) if mode == 3 else (24, 32)
            Image.fromarray(rng.integers(0, 255, shape, np.uint8)).save(root / "train" / sub / f"{i:02d}.png")
        (root / "train" / "Label").mkdir(parents=True, exist_ok=True)
        label_fn(root / "train" / "Label" / f"{i:02d}.png", i)
    return root


def _good_label(path: Path, _i: int) -> None:
    Image.fromarray(np.random.default_rng(0).integers(0, 15, (24, 32), np.uint8)).save(path)


@pytest.mark.parametrize("problem", ["size", "truncated", "value", "channels", "ok"])
def test_segmentation_split_checked_before_training(tmp_path, problem):
    from downstream._compat import prepare_mmseg

    prepare_mmseg()
    from downstream.segmentation.datasets import FMBDataset, check_split_files

    def label(path: Path, i: int) -> None:
        _good_label(path, i)
        if i != 1 or problem == "ok":
            return
        if problem == "size":
            Image.fromarray(np.zeros((20, 32), np.uint8)).save(path)
        elif problem == "truncated":
            path.write_bytes(path.read_bytes()[:60])
        elif problem == "value":
            Image.fromarray(np.full((24, 32), 40, np.uint8)).save(path)
        elif problem == "channels":
            Image.fromarray(np.zeros((24, 32, 3), np.uint8)).save(path)

    root = _fmb(tmp_path / "fmb", label)
    ds = FMBDataset(str(root), split="train", lazy_init=True, pipeline=[])
    if problem == "ok":
        assert check_split_files(ds) == 2
        return
    with pytest.raises(DatasetError) as info:
        check_split_files(ds)
    msg = str(info.value)
    assert "01.png" in msg and "\n" not in msg
    assert {"size": "its label", "truncated": "cannot decode", "value": "label value 40",
            "channels": "one channel"}[problem] in msg
