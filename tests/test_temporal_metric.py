"""The temporal-consistency measures: both sources' motion, the occlusion mask, fidelity, offline video scoring."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from fusion.stream.temporal import score_videos, temporal_consistency


def _texture(h: int, w: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return cv2.GaussianBlur(rng.integers(0, 256, (h, w), dtype=np.uint8), (0, 0), 2.0)


def _moving(base: np.ndarray, i: int, step: int = 2) -> np.ndarray:
    return np.roll(base, step * i, axis=1)


def test_content_from_infrared_is_judged_by_the_infrared_motion():
    """Visible static, infrared moving: a fused video that shows the infrared content must not count as inconsistent
    (with the visible flow only, it did)."""
    vis_base, ir_base = _texture(72, 96, 1), _texture(72, 96, 2)
    vis = [vis_base] * 8
    ir = [_moving(ir_base, i) for i in range(8)]
    res = temporal_consistency(ir, vis, ir, max_side=None)
    assert res["warp_error_excess"] < 0.5  # per pixel the better-fitting flow is taken, and the floor with it
    vis_only = temporal_consistency(ir, vis, max_side=None)  # only the visible flow available
    assert vis_only["warp_error_excess"] > 5


def test_occlusions_are_masked_and_reported():
    """A textured square moving 8 px per frame over a static background uncovers an 8x24 strip per transition
    (2.8% of the frame): the forward-backward check excludes about that much more than in a static scene."""
    rng = np.random.default_rng(3)
    bg = _texture(72, 96, 7)
    fg = cv2.GaussianBlur(rng.integers(0, 256, (24, 24), dtype=np.uint8), (0, 0), 1)

    def frame(i: int) -> np.ndarray:
        f = bg.copy()
        f[20:44, 10 + 8 * i : 34 + 8 * i] = fg
        return f

    frames = [frame(i) for i in range(6)]
    static = temporal_consistency([bg] * 6, [bg] * 6, max_side=None)
    moving = temporal_consistency(frames, frames, max_side=None)
    assert 0 <= static["occluded_share"] < 0.05
    assert moving["occluded_share"] > static["occluded_share"] + 0.015
    assert moving["warp_error_excess"] == pytest.approx(0.0, abs=1e-6)  # the output is the source: its floor


def test_a_frozen_output_loses_fidelity():
    base = _texture(72, 96, 5)
    vis = [_moving(base, i, step=4) for i in range(10)]
    ir = [_moving(255 - base, i, step=4) for i in range(10)]
    following = temporal_consistency(vis, vis, ir, max_side=None)
    frozen = temporal_consistency([vis[0]] * 10, vis, ir, max_side=None)
    assert frozen["flicker_ratio"] == 0.0  # doing nothing is perfectly "consistent" ...
    assert frozen["fidelity"] < following["fidelity"] - 0.2  # ... but no longer shows the scene
    assert following["fidelity"] == pytest.approx(1.0, abs=1e-6)


def _write(path: Path, frames: list[np.ndarray]) -> Path:
    wr = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10.0, (frames[0].shape[1], frames[0].shape[0]))
    for f in frames:
        wr.write(cv2.cvtColor(f, cv2.COLOR_GRAY2BGR) if f.ndim == 2 else f)
    wr.release()
    return path


@pytest.fixture()
def clips(tmp_path):
    base = _texture(64, 80, 6)
    vis = [_moving(base, i) for i in range(9)]
    ir = [_moving(255 - base, i) for i in range(9)]
    flicker = [np.clip(f.astype(int) + (30 if i % 2 else -30), 0, 255).astype(np.uint8) for i, f in enumerate(vis)]
    src = tmp_path / "src"
    src.mkdir()
    return {"vis": _write(src / "vis.avi", vis), "ir": _write(src / "ir.avi", ir),
            "good": _write(src / "good.avi", vis), "flicker": _write(src / "flicker.avi", flicker)}


def test_score_videos_measures_every_transition(clips):
    rows = score_videos(clips["vis"], clips["ir"], {"good": clips["good"], "flicker": clips["flicker"]})
    by = {r["method"]: r for r in rows}
    assert list(by) == ["vis", "ir", "good", "flicker"]
    assert all(r["transitions"] == 8 and r["skipped_transitions"] == 0 for r in rows)
    assert by["flicker"]["flicker_ratio"] > 3 * by["good"]["flicker_ratio"]
    assert by["flicker"]["warp_error_excess"] > by["good"]["warp_error_excess"] + 10


def test_eval_fusion_video_cli(clips, tmp_path, repo_root):
    out = tmp_path / "out"
    proc = subprocess.run([sys.executable, str(repo_root / "pipelines" / "eval_fusion.py"), "--video",
                           "--vis", str(clips["vis"]), "--ir", str(clips["ir"]),
                           "--fused", f"good={clips['good']},flicker={clips['flicker']}", "--out", str(out)],
                          capture_output=True, text=True, timeout=300, check=False)
    assert proc.returncode == 0, proc.stderr[-2000:]
    md = (out / "temporal_video.md").read_text()
    assert "| flicker |" in md and "| vis |" in md and "fidelity" in md
    assert (out / "temporal_video.csv").read_text().count("\n") == 5
    bad = subprocess.run([sys.executable, str(repo_root / "pipelines" / "eval_fusion.py"), "--video",
                          "--vis", str(tmp_path / "none.mp4"), "--ir", str(clips["ir"]), "--fused",
                          f"x={clips['good']}", "--out", str(out)], capture_output=True, text=True, timeout=120,
                         check=False)
    assert bad.returncode == 2 and "none.mp4" in bad.stderr and "Traceback" not in bad.stderr


def test_every_row_uses_the_same_frames(clips, tmp_path):
    cap = cv2.VideoCapture(str(clips["good"]))
    frames = []
    while len(frames) < 5:
        ok, f = cap.read()
        frames.append(f)
    cap.release()
    short = tmp_path / "short.avi"
    wr = cv2.VideoWriter(str(short), cv2.VideoWriter_fourcc(*"MJPG"), 10.0, (80, 64))
    for f in frames:
        wr.write(f)
    wr.release()
    rows = score_videos(clips["vis"], clips["ir"], {"good": clips["good"], "short": short})
    assert {r["transitions"] for r in rows} == {4}
