"""Streaming fusion: pairing policies, robustness, outputs, HTTP view, registration, temporal measures, CLI."""

from __future__ import annotations

import http.client
import importlib.util
import json
import logging
import threading
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from fusion.errors import ConfigError, InputError
from fusion.fusers import Fuser, create_fuser, register_fuser
from fusion.stream import (
    CORRUPT,
    IteratorSource,
    MjpegServer,
    StreamConfig,
    StreamPipeline,
    TemporalConsistency,
    build_stream_fuser,
    estimate_homography,
    load_homography,
    open_sink,
    open_source,
    run_stream,
    save_homography,
    temporal_consistency,
    warp_to,
)

ROOT = Path(__file__).resolve().parents[1]
W, H = 64, 48


# --------------------------------------------------------------------------------------------------- test fusers
@register_fuser("_test_stream_avg")
class _Avg(Fuser):
    """Exact average (floor), independent of the baselines module."""

    name = "_test_stream_avg"

    def fuse(self, a, b, task="vif"):
        return ((a.astype(np.uint16) + b) // 2).astype(np.uint8)


@register_fuser("_test_stream_slow")
class _Slow(_Avg):
    """Average that takes ``delay`` seconds per call (a fuser slower than the cameras)."""

    name = "_test_stream_slow"

    def __init__(self, delay: float = 0.1):
        self.delay = float(delay)

    def fuse(self, a, b, task="vif"):
        time.sleep(self.delay)
        return super().fuse(a, b, task)


@register_fuser("_test_stream_levels")
class _Levels(_Avg):
    """Average with a setting, to see settings reach the fuser from the command line."""

    name = "_test_stream_levels"

    def __init__(self, levels: int = 2):
        self.levels = levels

    def settings(self):
        return {"levels": self.levels}


@register_fuser("_test_stream_dev")
class _DevAware(_Avg):
    name = "_test_stream_dev"

    def __init__(self, device: str = "cpu", amp_dtype: str | None = None):
        self.device, self.amp_dtype = device, amp_dtype

    def settings(self):
        return {"device": self.device, "amp_dtype": self.amp_dtype}


# --------------------------------------------------------------------------------------------------- helpers
def _frame(i: int, w: int = W, h: int = H, *, invert: bool = False) -> np.ndarray:
    """A textured background with a bright square moving right by 2 px per frame."""
    yy, xx = np.mgrid[0:h, 0:w]
    img = ((xx * 3 + yy * 2) % 96 + 40).astype(np.uint8)
    x0 = (4 + 2 * i) % (w - 12)
    img[h // 3 : h // 3 + 10, x0 : x0 + 10] = 230
    if invert:
        img = 255 - img
    return np.repeat(img[:, :, None], 3, axis=2)


def _write_video(path: Path, frames: list[np.ndarray], fps: float = 10.0) -> Path:
    fourcc = "MJPG" if path.suffix == ".avi" else "mp4v"
    wr = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*fourcc), fps, (frames[0].shape[1], frames[0].shape[0]))
    assert wr.isOpened()
    for f in frames:
        wr.write(cv2.cvtColor(f, cv2.COLOR_RGB2BGR))
    wr.release()
    return path


def _read_video(path: Path) -> list[np.ndarray]:
    cap = cv2.VideoCapture(str(path))
    out = []
    while True:
        ok, f = cap.read()
        if not ok:
            break
        out.append(cv2.cvtColor(f, cv2.COLOR_BGR2RGB))
    cap.release()
    return out


def _write_folder(folder: Path, frames: list[np.ndarray]) -> Path:
    folder.mkdir(parents=True)
    for i, f in enumerate(frames):
        cv2.imwrite(str(folder / f"{i}.png"), cv2.cvtColor(f, cv2.COLOR_RGB2BGR))
    return folder


def _avg(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return ((a.astype(np.uint16) + b) // 2).astype(np.uint8)


def _cfg(**kw) -> StreamConfig:
    kw.setdefault("progress", False)
    kw.setdefault("temporal", False)
    return StreamConfig(**kw)


class _LiveCamera:
    """A synthetic camera: frame ``i`` is produced at ``i / fps`` after start; ``stall_after`` blocks it."""

    def __init__(self, fps: float, name: str = "cam", *, invert: bool = False, stall_after: int | None = None):
        self.i = 0
        self.invert = invert
        self.stall_after = stall_after
        self.release = threading.Event()
        self.source = IteratorSource(self._next, name, live=True, fps=fps)

    def _next(self):
        if self.stall_after is not None and self.i >= self.stall_after:
            self.release.wait(30)  # a hung camera; the test releases it at the end
            return None
        self.i += 1
        return _frame(self.i, invert=self.invert)


# --------------------------------------------------------------------------------------------------- file sources
def test_video_files_every_frame_in_order(tmp_path):
    n = 12
    (tmp_path / "in").mkdir()
    vis = _write_video(tmp_path / "in" / "vis.avi", [_frame(i) for i in range(n)])
    # the infrared clip is smaller: it must be resized onto the visible frame
    ir = _write_video(tmp_path / "in" / "ir.avi", [_frame(i, 32, 24, invert=True) for i in range(n)])
    out = tmp_path / "out" / "fused.mp4"
    stats = run_stream(str(vis), str(ir), "_test_stream_avg", out=out, device="cpu", progress=False, temporal=True,
                       batch=4)
    assert stats["frames_out"] == n and stats["pairs"] == n and stats["pairing"] == "index" and stats["batch"] == 4
    assert stats["sources"]["vis"]["dropped"] == 0 and stats["sources"]["ir"]["dropped"] == 0
    assert stats["ended_first"] is None
    for key in ("read_vis", "read_ir", "register", "fuse", "write"):
        assert stats["stages_ms"][key]["count"] == n
    lat = stats["latency_ms"]
    assert lat["count"] == n and 0 < lat["p50_ms"] <= lat["p90_ms"] <= lat["p99_ms"] <= lat["max_ms"]
    assert stats["temporal"]["frames"] == n and stats["temporal"]["warp_error"] is not None
    frames = _read_video(out)
    assert len(frames) == n and frames[0].shape == (H, W, 3)
    # content: the fused frame is the average of the visible frame and the resized infrared frame (codec loss aside)
    vis_frames, ir_frames = _read_video(vis), _read_video(ir)
    for k in (0, n - 1):
        ir_k = cv2.resize(ir_frames[k], (W, H), interpolation=cv2.INTER_LINEAR)
        assert np.abs(frames[k].astype(int) - _avg(vis_frames[k], ir_k)).mean() < 6
    # frames stay in order: the moving square of the last frame is where frame n-1 has it, not frame 0
    assert np.abs(frames[-1].astype(int) - frames[0]).mean() > 3
    assert oct(out.stat().st_mode & 0o777) != oct(0o600)  # a finished video, not a private temp file


def test_image_folders_corrupt_frame_keeps_alignment(tmp_path):
    n = 8
    vis = _write_folder(tmp_path / "vis", [_frame(i) for i in range(n)])
    ir = _write_folder(tmp_path / "ir", [_frame(i, invert=True) for i in range(n)])
    (vis / "3.png").write_bytes(b"not a png at all")
    out = tmp_path / "seq"
    fuser = create_fuser("_test_stream_avg")
    pipe = StreamPipeline(str(vis), str(ir), fuser, config=_cfg(), outputs=[out])
    stats = pipe.run()
    assert stats["frames_out"] == n - 1 and stats["dropped_corrupt_pairs"] == 1
    assert stats["sources"]["vis"]["corrupt"] == 1 and stats["sources"]["ir"]["dropped"] == 1
    files = sorted(out.glob("frame_*.png"))
    assert len(files) == n - 1
    # PNG is lossless: every output equals the exact average of the frames with the same index (3 skipped)
    for k, idx in enumerate([0, 1, 2, 4, 5, 6, 7]):
        got = cv2.cvtColor(cv2.imread(str(files[k])), cv2.COLOR_BGR2RGB)
        assert np.array_equal(got, _avg(_frame(idx), _frame(idx, invert=True))), idx


def test_source_ending_early_and_max_frames(tmp_path):
    vis = _write_folder(tmp_path / "vis", [_frame(i) for i in range(10)])
    ir = _write_folder(tmp_path / "ir", [_frame(i, invert=True) for i in range(6)])
    fuser = create_fuser("_test_stream_avg")
    stats = StreamPipeline(str(vis), str(ir), fuser, config=_cfg(), outputs=[tmp_path / "o1.avi"]).run()
    assert stats["frames_out"] == 6 and stats["ended_first"] == "ir"
    stats = StreamPipeline(str(vis), str(ir), fuser, config=_cfg(max_frames=4, batch=3),
                           outputs=[tmp_path / "o2.avi"]).run()
    assert stats["frames_out"] == 4 and len(_read_video(tmp_path / "o2.avi")) == 4


def test_stalled_and_failing_sources_end_cleanly(tmp_path):
    fuser = create_fuser("_test_stream_avg")
    cam = _LiveCamera(100.0, stall_after=3)
    frames = [_frame(i) for i in range(50)]
    vis = IteratorSource(frames, "vis", live=False)
    try:
        t0 = time.monotonic()
        stats = StreamPipeline(vis, cam.source, fuser, config=_cfg(pairing="index", stall_timeout_s=0.5),
                               outputs=[tmp_path / "stall.avi"]).run()
        assert time.monotonic() - t0 < 10
    finally:
        cam.release.set()
    assert stats["frames_out"] == 3 and stats["sources"]["cam"]["stalled"] is True
    assert len(_read_video(tmp_path / "stall.avi")) == 3

    def broken():
        broken.n += 1
        if broken.n > 2:
            raise OSError("device unplugged")
        return _frame(broken.n)

    broken.n = 0
    stats = StreamPipeline(IteratorSource(frames, "vis"), IteratorSource(broken, "ir"), fuser, config=_cfg(),
                           outputs=[tmp_path / "broken.avi"]).run()
    assert stats["frames_out"] == 2 and "device unplugged" in stats["sources"]["ir"]["error"]
    # a source yielding a malformed frame counts it as corrupt and goes on
    bad = [_frame(0), np.zeros((H, W), np.float32), CORRUPT, _frame(3)]
    stats = StreamPipeline(IteratorSource(frames[:4], "vis"), IteratorSource(bad, "ir"), fuser, config=_cfg(),
                           outputs=[tmp_path / "bad.avi"]).run()
    assert stats["frames_out"] == 2 and stats["sources"]["ir"]["corrupt"] == 2


# --------------------------------------------------------------------------------------------------- live sources
def test_live_sources_keep_latency_bounded(tmp_path):
    """Cameras at 40 FPS, fusion at about 8 FPS: the newest-pair policy keeps the latency near one fusion time."""
    vis_cam, ir_cam = _LiveCamera(40.0, "vis"), _LiveCamera(40.0, "ir", invert=True)
    fuser = create_fuser("_test_stream_slow", delay=0.12)
    pipe = StreamPipeline(vis_cam.source, ir_cam.source, fuser,
                          config=_cfg(max_frames=12, tolerance_s=0.03, temporal=True), outputs=[tmp_path / "live.avi"])
    stats = pipe.run()
    assert stats["pairing"] == "timestamp" and stats["live"] is True and stats["frames_out"] == 12
    lat = pipe.timers.latency.values()
    # Fusing every frame would make frame k wait ~k * (0.12 - 0.025) s: 1 s by the 12th. Bounded: ~0.12-0.2 s.
    assert lat.max() < 0.6, lat
    assert lat[-4:].mean() < lat[:4].mean() + 0.15, lat  # no growth over time
    # both cameras produced ~40 frames/s, only ~8/s were fused: the rest were dropped and counted
    dropped = [src["dropped"] for src in stats["sources"].values()]
    assert sum(dropped) > 12, stats["sources"]
    assert len(_read_video(tmp_path / "live.avi")) == 12


def test_timestamp_pairing_respects_tolerance():
    """A fast and a slow camera: every pair's frames arrived within the tolerance of each other."""
    from fusion.stream.pairing import Pairer
    from fusion.stream.reader import SourceReader

    cond = threading.Condition()
    fast, slow = _LiveCamera(50.0, "vis"), _LiveCamera(10.0, "ir", invert=True)
    rv = SourceReader(fast.source, capacity=4, notify=cond)
    ri = SourceReader(slow.source, capacity=4, notify=cond)
    pairer = Pairer(rv, ri, mode="timestamp", tolerance_s=0.015, stall_timeout_s=2.0)
    rv.start()
    ri.start()
    try:
        pairs = [pairer.next_pair() for _ in range(5)]
    finally:
        rv.stop()
        ri.stop()
    assert all(p is not None for p in pairs)
    assert all(abs(p.vis.t - p.ir.t) <= 0.015 for p in pairs)
    assert [p.seq for p in pairs] == list(range(5))
    assert all(b.vis.t > a.vis.t for a, b in zip(pairs, pairs[1:]))
    assert pairer.counters.stale["vis"] + pairer.counters.unmatched["vis"] > 0  # the fast camera's extra frames


def test_http_view_serves_frames_to_a_client(tmp_path):
    vis_cam, ir_cam = _LiveCamera(30.0, "vis"), _LiveCamera(30.0, "ir", invert=True)
    server = MjpegServer(0)
    pipe = StreamPipeline(vis_cam.source, ir_cam.source, create_fuser("_test_stream_avg"), config=_cfg(),
                          server=server)
    result: dict = {}
    runner = threading.Thread(target=lambda: result.update(pipe.run()), daemon=True)
    runner.start()
    try:
        deadline = time.monotonic() + 20
        while not server.running and time.monotonic() < deadline:
            time.sleep(0.02)
        port = server.port
        assert port > 0
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        conn.request("GET", "/")
        page = conn.getresponse()
        assert page.status == 200 and b"/stream.mjpg" in page.read()
        conn.close()

        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        conn.request("GET", "/stream.mjpg")
        resp = conn.getresponse()
        assert resp.status == 200 and resp.getheader("Content-Type").startswith("multipart/x-mixed-replace")
        jpegs = []
        for _ in range(2):  # two consecutive parts of the stream
            length = None
            while True:
                line = resp.fp.readline().strip()
                if line.lower().startswith(b"content-length:"):
                    length = int(line.split(b":")[1])
                elif line == b"" and length is not None:
                    break
            jpegs.append(resp.fp.read(length))
            resp.fp.readline()
        conn.close()
        for data in jpegs:
            img = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
            assert img is not None and img.shape == (H, 3 * W, 3)  # infrared | visible | fused
        # the middle panel is the visible frame: its textured background is not the inverted infrared one
        assert img[:, W : 2 * W].mean() < img[:, :W].mean()

        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        conn.request("GET", "/stats.json")
        status = json.loads(conn.getresponse().read())
        assert status["frames_out"] >= 1 and "FPS" in status["status"]
        conn.close()
    finally:
        pipe.request_stop()
        runner.join(timeout=20)
    assert not runner.is_alive() and result["frames_out"] >= 2
    with pytest.raises(OSError):  # the server is closed after the run
        http.client.HTTPConnection("127.0.0.1", port, timeout=2).request("GET", "/")


# --------------------------------------------------------------------------------------------------- registration
def _texture(h: int = 240, w: int = 320, seed: int = 1) -> np.ndarray:
    rng = np.random.default_rng(seed)
    img = np.zeros((h, w), np.uint8)
    for _ in range(60):
        x, y = int(rng.integers(0, w - 30)), int(rng.integers(0, h - 30))
        cv2.rectangle(img, (x, y), (x + int(rng.integers(8, 40)), y + int(rng.integers(8, 40))),
                      int(rng.integers(60, 255)), -1)
        cv2.circle(img, (int(rng.integers(0, w)), int(rng.integers(0, h))), int(rng.integers(4, 15)),
                   int(rng.integers(0, 200)), -1)
    return cv2.cvtColor(img, cv2.COLOR_GRAY2RGB)


def test_registration_recovers_a_known_homography():
    vis = _texture()
    # ground truth infrared -> visible mapping (the infrared camera also has half the resolution)
    h_true = np.array([[2.0 * 0.98, -0.04, 10.0], [0.03, 2.0 * 1.01, -6.0], [0.0, 0.0, 1.0]])
    ir_small = cv2.warpPerspective(255 - vis, np.linalg.inv(h_true), (160, 120))  # inverted contrast, like thermal
    reg = estimate_homography([ir_small], [vis])
    assert reg.method in ("orb", "ecc") and reg.homography is not None, reg.detail
    corners = np.float64([[[10, 10], [150, 10], [150, 110], [10, 110]]])
    err = np.abs(cv2.perspectiveTransform(corners, reg.homography) - cv2.perspectiveTransform(corners, h_true))
    assert err.max() < 2.0, (err.max(), reg.detail)
    aligned = reg.apply(ir_small, vis.shape)
    inner = (slice(30, 210), slice(40, 280))
    assert np.abs((255 - aligned[inner]).astype(int) - vis[inner]).mean() < 12


def test_registration_falls_back_to_identity(caplog):
    rng = np.random.default_rng(0)
    noise_a = rng.integers(0, 256, (60, 80, 3), dtype=np.uint8)
    flat = np.full((60, 80, 3), 128, np.uint8)
    with caplog.at_level(logging.WARNING):
        reg = estimate_homography([flat], [noise_a])
    assert reg.method == "identity" and reg.homography is None
    assert any("using identity" in r.message for r in caplog.records)
    assert reg.apply(flat[:30, :40], (60, 80, 3)).shape == (60, 80, 3)


def test_homography_files(tmp_path):
    h = np.array([[1.0, 0.0, 5.0], [0.0, 1.0, -3.0], [0.0, 0.0, 1.0]])
    save_homography(tmp_path / "h.json", h, note="test")
    assert np.allclose(load_homography(tmp_path / "h.json"), h)
    (tmp_path / "plain.json").write_text(json.dumps((2 * h).tolist()))
    assert np.allclose(load_homography(tmp_path / "plain.json"), h)  # normalised so that H[2, 2] = 1
    np.save(tmp_path / "h.npy", h)
    assert np.allclose(load_homography(tmp_path / "h.npy"), h)
    (tmp_path / "bad.json").write_text("[[1, 2], [3, 4]]")
    with pytest.raises(InputError, match=r"bad\.json.*3x3"):
        load_homography(tmp_path / "bad.json")
    with pytest.raises(InputError, match="no such"):
        load_homography(tmp_path / "missing.json")
    img = _frame(0)
    shifted = warp_to(img, h, (W, H))
    assert np.array_equal(shifted[10:40, 10:50], img[13:43, 5:45])


def test_pipeline_applies_homography_file(tmp_path):
    n = 4
    vis = _write_folder(tmp_path / "vis", [_frame(i) for i in range(n)])
    ir = _write_folder(tmp_path / "ir", [_frame(i) for i in range(n)])
    h = np.array([[1.0, 0.0, 4.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]])
    save_homography(tmp_path / "calib" / "h.json", h)
    pipe = StreamPipeline(str(vis), str(ir), create_fuser("_test_stream_avg"),
                          config=_cfg(register=str(tmp_path / "calib" / "h.json")), outputs=[tmp_path / "seq"])
    stats = pipe.run()
    assert stats["registration"]["method"] == "file"
    got = cv2.cvtColor(cv2.imread(str(tmp_path / "seq" / "frame_000000.png")), cv2.COLOR_BGR2RGB)
    expect = _avg(_frame(0), warp_to(_frame(0), h, (W, H)))
    assert np.array_equal(got, expect)


# --------------------------------------------------------------------------------------------------- temporal
def test_temporal_consistency_detects_flicker():
    vis = [_frame(i, 96, 72) for i in range(8)]
    ir = [_frame(0, 96, 72, invert=True)] * 8  # static infrared
    steady = temporal_consistency(vis, vis, ir, max_side=None)
    assert steady["frames"] == 8
    assert steady["flicker_ratio"] == pytest.approx(1.0) and steady["flicker_excess"] == 0.0
    assert steady["warp_error"] == pytest.approx(steady["warp_error_source"]) and steady["warp_error_excess"] == 0
    flicker = [np.clip(f.astype(int) + (25 if i % 2 else -25), 0, 255).astype(np.uint8) for i, f in enumerate(vis)]
    bad = temporal_consistency(iter(flicker), iter(vis), iter(ir), max_side=None)
    assert bad["flicker_ratio"] > 5 and bad["flicker_excess"] > 20
    assert bad["warp_error_excess"] > 20
    # independent transitions (how the pipeline feeds it) give the same numbers as frame-by-frame updates
    acc = TemporalConsistency(max_side=None)
    for k in range(1, 8):
        acc.add_transition((flicker[k - 1], vis[k - 1], ir[k - 1]), (flicker[k], vis[k], ir[k]))
    assert acc.result() == bad
    acc = TemporalConsistency(flow=False)
    acc.update(vis[0], vis[0])
    assert acc.result()["flicker_ratio"] is None  # one frame: nothing to compare
    with pytest.raises(ValueError, match="at least one source"):
        acc.update(vis[1])


# --------------------------------------------------------------------------------------------------- fusers, sinks
def test_build_fuser_passes_device_and_precision_when_supported(caplog):

    f = build_stream_fuser("_test_stream_dev", device="cpu", precision="bf16")
    assert f.settings() == {"device": "cpu", "amp_dtype": "bf16"}
    with caplog.at_level(logging.WARNING):
        g = build_stream_fuser("_test_stream_avg", device="cpu", precision="fp16")
    assert isinstance(g, _Avg) and any("no precision" in r.message for r in caplog.records)
    with pytest.raises(ConfigError, match="_test_stream_slow"):
        build_stream_fuser("_test_stream_slow", device="cpu", settings={"nonsense": 1})
    with pytest.raises(ConfigError, match="precision"):
        build_stream_fuser("_test_stream_avg", precision="int4")


def test_sinks_and_sources_reject_bad_input(tmp_path):
    with pytest.raises(InputError, match="H.264"):
        open_sink(tmp_path / "a.mp4", fps=10, fourcc="avc1")
    with pytest.raises(InputError, match=r"x\.gif.*unknown output"):
        open_sink(tmp_path / "x.gif", fps=10)
    sink = open_sink(tmp_path / "empty.avi", fps=10)
    sink.close()
    assert not (tmp_path / "empty.avi").exists() and not list(tmp_path.glob(".*tmp*"))
    with pytest.raises(InputError, match=r"ir source .*nope\.mp4"):
        open_source(str(tmp_path / "nope.mp4"), "ir")
    (tmp_path / "junk.mp4").write_bytes(b"\x00" * 100)
    with pytest.raises(InputError, match="junk.mp4"):
        open_source(str(tmp_path / "junk.mp4"), "vis")
    (tmp_path / "emptydir").mkdir()
    with pytest.raises(InputError, match="no image files"):
        open_source(str(tmp_path / "emptydir"), "vis")
    vis = _write_folder(tmp_path / "vis", [_frame(0)])
    with pytest.raises(InputError, match="inside the input folder"):
        StreamPipeline(str(vis), str(vis), create_fuser("_test_stream_avg"), outputs=[vis / "out.mp4"])


# --------------------------------------------------------------------------------------------------- script
def _script():
    spec = importlib.util.spec_from_file_location("stream_fuse_script", ROOT / "pipelines" / "stream_fuse.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_script_bad_input_exits_2_with_one_line(tmp_path, capsys):
    from fusion.utils.cli import run_cli

    mod = _script()
    vis = _write_folder(tmp_path / "vis", [_frame(0)])
    cases = [
        (["--ir", str(tmp_path / "missing.mp4"), "--vis", str(vis), "--out", str(tmp_path / "o.mp4")], "missing.mp4"),
        (["--ir", str(vis), "--vis", str(vis), "--out", str(vis / "o.mp4")], "input folder"),
        (["--ir", str(vis), "--vis", str(vis), "--out", str(tmp_path / "o.mp4"), "--method", "no_such"], "no_such"),
    ]
    for argv, needle in cases:
        with pytest.raises(SystemExit) as exc:
            run_cli(lambda a=argv: mod.main(a))
        assert exc.value.code == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith("error:") and needle in err[0], err


def _run_script(argv: list[str]) -> int:
    mod = _script()
    return mod.main(argv)


_TIMINGS = ("wall_s", "fps", "fps_steady", "latency_ms", "stages_ms", "outputs")


def test_script_fuser_settings_new_grammar_and_deprecated_set(tmp_path, caplog):
    vis = _write_folder(tmp_path / "in" / "vis", [_frame(i) for i in range(3)])
    ir = _write_folder(tmp_path / "in" / "ir", [_frame(i, invert=True) for i in range(3)])
    base = ["--ir", str(ir), "--vis", str(vis), "--method", "_test_stream_levels", "--no-progress", "--device", "cpu"]
    # key=value arguments may come before, between or after the flags
    assert _run_script(["fuser.levels=5", *base, "--out", str(tmp_path / "a"), "--stats", str(tmp_path / "a.json"),
                        "queue_size=6"]) == 0
    stats = json.loads((tmp_path / "a.json").read_text())
    assert stats["fuser_settings"] == {"levels": 5} and stats["config"]["queue_size"] == 6
    assert stats["frames_out"] == 3
    with caplog.at_level(logging.WARNING):
        assert _run_script([*base, "--set", "levels=7", "--out", str(tmp_path / "b"),
                            "--stats", str(tmp_path / "b.json")]) == 0
    assert json.loads((tmp_path / "b.json").read_text())["fuser_settings"] == {"levels": 7}
    warnings = [r.getMessage() for r in caplog.records if "deprecated" in r.getMessage()]
    assert len(warnings) == 1 and "fuser.levels=7" in warnings[0] and "\n" not in warnings[0]
    assert "--set" not in _script().build_parser().format_help()  # hidden


def test_script_and_run_stream_agree(tmp_path):
    """The script is run_stream behind a command line: the same arguments give the same run (it used to differ,
    e.g. the image-folder frame rate from --fps reached the script's sources only)."""
    vis = _write_folder(tmp_path / "in" / "vis", [_frame(i) for i in range(7)])
    ir = _write_folder(tmp_path / "in" / "ir", [_frame(i, 32, 24, invert=True) for i in range(7)])
    argv = ["--ir", str(ir), "--vis", str(vis), "--method", "_test_stream_levels", "--device", "cpu", "--fps", "12",
            "--batch", "2", "--no-progress", "--out", str(tmp_path / "script"), "--stats", str(tmp_path / "s.json"),
            "max_frames=5", "tolerance_s=0.03", "labels=a,b,c", "fuser.levels=3"]
    assert _run_script(argv) == 0
    by_script = json.loads((tmp_path / "s.json").read_text())
    by_call = run_stream(str(vis), str(ir), "_test_stream_levels", out=tmp_path / "call", device="cpu",
                         stats_file=tmp_path / "c.json", fuser_settings={"levels": 3}, fps=12, batch=2,
                         progress=False, max_frames=5, tolerance_s=0.03, labels=("a", "b", "c"))
    assert json.loads((tmp_path / "c.json").read_text()) == json.loads(json.dumps(by_call))
    by_call = json.loads(json.dumps(by_call))
    for key in _TIMINGS:
        by_script.pop(key), by_call.pop(key)
    # the low-priority temporal thread may skip transitions, so only its frame count is compared
    assert by_script.pop("temporal")["frames"] == by_call.pop("temporal")["frames"] == 5
    assert by_script["sources"]["vis"]["fps"] == 12.0 and by_script["frames_out"] == 5
    assert by_script == by_call
    a, b = sorted((tmp_path / "script").glob("*.png")), sorted((tmp_path / "call").glob("*.png"))
    assert len(a) == len(b) == 5 and all(x.read_bytes() == y.read_bytes() for x, y in zip(a, b))


def test_script_option_errors_are_one_line(tmp_path, capsys):
    from fusion.utils.cli import run_cli

    vis = _write_folder(tmp_path / "vis", [_frame(0)])
    base = ["--ir", str(vis), "--vis", str(vis), "--out", str(tmp_path / "o"), "--no-progress", "--device", "cpu"]
    cases = [
        (["bogus=1"], "bogus"),
        (["batch=two"], "batch"),
        (["batch=2", "--batch", "3"], "given twice"),
        (["stray"], "unexpected argument"),
        (["fuser=3"], "fuser.<key>"),
        (["fuser.nonsense=1", "--method", "_test_stream_slow"], "nonsense"),
        (["fourcc=MJPG"], "--fourcc needs a video"),
        (["--stats", str(tmp_path / "s.txt")], ".json"),
    ]
    for extra, needle in cases:
        with pytest.raises(SystemExit) as exc:
            run_cli(lambda a=[*base, *extra]: _run_script(a))
        assert exc.value.code == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith("error:") and needle in err[0], (extra, err)


def test_stream_config_from_options():
    cfg = StreamConfig.from_options({"labels": "ir,vis,out", "fps": 12, "max_frames": None,
                                     "register": Path("calib.json")})
    assert cfg.labels == ("ir", "vis", "out") and cfg.fps == 12.0 and isinstance(cfg.fps, float)
    assert cfg.max_frames is None and cfg.register == "calib.json"
    assert StreamConfig.from_options({"batch": 3}, base=cfg).labels == ("ir", "vis", "out")
    for bad, needle in (({"labels": "a,b"}, "labels"), ({"temporal": "yes"}, "temporal"), ({"batch": 0}, "batch"),
                        ({"nope": 1}, "nope"), ({"batch": True}, "batch")):
        with pytest.raises(ConfigError, match=needle):
            StreamConfig.from_options(bad)


@pytest.mark.slow
def test_script_sigint_finalises_output(tmp_path):
    """Ctrl-C during a (paced) run: exit 130, a playable video with the frames fused so far, and the stats."""
    import signal
    import subprocess
    import sys

    n = 200
    clips = tmp_path / "clips"
    clips.mkdir()
    vis = _write_video(clips / "vis.avi", [_frame(i) for i in range(n)], fps=25)
    ir = _write_video(clips / "ir.avi", [_frame(i, invert=True) for i in range(n)], fps=25)
    out_dir = tmp_path / "out"
    cmd = [sys.executable, str(ROOT / "pipelines" / "stream_fuse.py"), "--ir", str(ir), "--vis", str(vis),
           "--method", "average", "--realtime", "--out", str(out_dir / "f.mp4"), "--stats", str(out_dir / "s.json"),
           "--no-progress", "--device", "cpu"]
    proc = subprocess.Popen(cmd, stderr=subprocess.PIPE, text=True, cwd=ROOT)  # the installed package, no sys.path
    try:
        deadline = time.monotonic() + 60
        while not list(out_dir.glob(".f.*")) and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.1)
        time.sleep(1.0)
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, err
    frames = _read_video(out_dir / "f.mp4")
    stats = json.loads((out_dir / "s.json").read_text())
    assert stats["interrupted"] is True and 0 < stats["frames_out"] < n
    assert len(frames) == stats["frames_out"]
    assert not list(out_dir.glob(".f.*"))  # no temp file left behind


# --------------------------------------------------------------------------------------------------- real clips
@pytest.mark.shared_data
def test_real_clip_first_frames(shared_data, tmp_path):
    clip = "0111_1716"
    ir = shared_data / "video_m3svd" / "infrared" / f"{clip}.mp4"
    vis = shared_data / "video_m3svd" / "visible" / f"{clip}.mp4"
    stats = run_stream(str(vis), str(ir), "average", out=tmp_path / "f.avi", device="cpu", progress=False,
                       max_frames=20, temporal=True)
    frames = _read_video(tmp_path / "f.avi")
    assert stats["frames_out"] == 20 and len(frames) == 20 and frames[0].shape == (480, 640, 3)
    assert stats["output_fps"] == pytest.approx(30.0, abs=0.5)
    t = stats["temporal"]
    assert t["frames"] == 20 and 0 < t["flicker_ratio"] < 3 and t["warp_error"] > 0


@pytest.mark.shared_data
def test_registration_on_a_real_clip(shared_data):
    """Real infrared/visible frames: an aligned pair stays identity; a displaced infrared camera is corrected."""
    def first(path):
        cap = cv2.VideoCapture(str(path))
        ok, f = cap.read()
        cap.release()
        assert ok
        return cv2.cvtColor(f, cv2.COLOR_BGR2RGB)

    clip = "0111_1716"
    vis = first(shared_data / "video_m3svd" / "visible" / f"{clip}.mp4")
    ir = first(shared_data / "video_m3svd" / "infrared" / f"{clip}.mp4")
    assert estimate_homography([ir], [vis]).method == "identity"  # the sample clips are registered already
    h_shift = np.array([[0.95, 0.0, 20.0], [0.0, 0.95, 12.0], [0.0, 0.0, 1.0]])
    ir_small = cv2.resize(cv2.warpPerspective(ir, h_shift, (640, 480)), (320, 240))  # displaced, lower resolution
    reg = estimate_homography([ir_small], [vis])
    assert reg.homography is not None, reg.detail
    corners = np.float64([[[100, 100], [540, 100], [540, 380], [100, 380]]])
    total = reg.homography @ np.diag([0.5, 0.5, 1.0]) @ h_shift  # original visible -> ... -> visible
    err = np.abs(cv2.perspectiveTransform(corners, total) - corners).max()
    assert err < 8.0, (err, reg.detail)  # was ~25 px before alignment
