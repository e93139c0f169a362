"""The live viewer watched as a person would: headless Chromium opens ``--serve``'s page while a clip streams.

Two screenshots a second apart must show the three panels (infrared | visible | fused) with picture content, and a
fused panel that changes; the page must show the fuser's name, the frame rate and the latency as text.
Chromium is Debian's ``chromium`` package, installed by ``make setup``/``make test`` where apt is available.
"""

from __future__ import annotations

import json
import re
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import cv2
import numpy as np
import pytest

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="Chromium is not installed (make test installs Debian's "
                                                          "chromium package when run as root with apt)")
BACKGROUND = np.array([17, 17, 17])  # the page's #111


def _clip(path: Path, thermal: bool, frames: int = 250, size: tuple[int, int] = (160, 120)) -> None:
    """A moving warm square on a textured background (infrared: grey, bright target; visible: colour)."""
    w, h = size
    rng = np.random.default_rng(1 if thermal else 2)
    texture = cv2.GaussianBlur(rng.integers(0, 255, (h, w, 3), dtype=np.uint8), (0, 0), 3)
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 25.0, size)
    for t in range(frames):
        img = texture.copy() if not thermal else np.repeat(texture.mean(2, keepdims=True), 3, 2).astype(np.uint8) // 2
        x = 10 + (3 * t) % (w - 40)
        img[40:70, x : x + 25] = (240, 240, 240) if thermal else (30, 60, 200)
        writer.write(img)
    writer.release()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _chromium(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", *args],
                          capture_output=True, text=True, timeout=60, check=False)


def _panels(png: Path) -> list[np.ndarray]:
    """The three panels of the streamed picture in a screenshot (found as the block of non-background pixels)."""
    shot = cv2.cvtColor(cv2.imread(str(png)), cv2.COLOR_BGR2RGB).astype(int)
    content = np.abs(shot - BACKGROUND).sum(2) > 24
    rows = np.flatnonzero(content.sum(1) > 0.3 * shot.shape[1] * 0.3)
    assert rows.size > 60, "no picture block found in the screenshot"
    block = content[rows.min() : rows.max() + 1]
    cols = np.flatnonzero(block.mean(0) > 0.5)
    picture = shot[rows.min() : rows.max() + 1, cols.min() : cols.max() + 1]
    third = picture.shape[1] // 3
    return [picture[:, i * third : (i + 1) * third] for i in range(3)]


@pytest.mark.slow
def test_served_page_renders_three_live_panels_and_status_text(tmp_path):
    (tmp_path / "clips").mkdir()
    ir, vis = tmp_path / "clips" / "ir.mp4", tmp_path / "clips" / "vis.mp4"
    _clip(ir, thermal=True)
    _clip(vis, thermal=False)
    port = _free_port()
    out_dir = tmp_path / "out"
    proc = subprocess.Popen([sys.executable, "-m", "pipelines.stream_fuse", "--ir", str(ir), "--vis", str(vis),
                             "--method", "tcmoa_tiny", "--realtime", "--serve", str(port), "--no-progress",
                             "--out", str(out_dir / "fused.mp4")],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    url = f"http://127.0.0.1:{port}/"
    try:
        deadline = time.monotonic() + 60
        status: dict = {}
        while time.monotonic() < deadline and status.get("frames_out", 0) < 3:
            if proc.poll() is not None:
                pytest.fail(f"the stream ended early: {proc.stdout.read()[-2000:]}")
            try:
                with urllib.request.urlopen(url + "stats.json", timeout=2) as r:
                    status = json.loads(r.read())
            except OSError:
                pass
            time.sleep(0.2)
        assert status.get("frames_out", 0) >= 3, "no frames served within 60 s"

        shots = []
        for k in range(2):
            png = tmp_path / f"shot{k}.png"
            res = _chromium("--window-size=900,420", "--timeout=1500", f"--screenshot={png}", url)
            assert png.is_file(), res.stderr[-2000:]
            shots.append(_panels(png))
            time.sleep(1.0)
        dom = _chromium("--virtual-time-budget=2000", "--timeout=2500", "--dump-dom", url).stdout
    finally:
        proc.terminate()
        proc.wait(timeout=30)

    for panels in shots:
        assert all(p.std() > 8 for p in panels), "a panel is blank"
        ir_panel, vis_panel, fused_panel = panels
        # infrared is grey, visible is colour: the panels are what they say
        grey, colour = (np.abs(p[..., 0] - p[..., 2]).mean() for p in (ir_panel, vis_panel))
        assert grey < 6 < colour
    changed = np.abs(shots[0][2].astype(float) - shots[1][2].astype(float)).mean()
    assert changed > 1.0, "the fused panel did not change between the screenshots"
    text = re.search(r'<p id="status">([^<]*)</p>', dom)
    assert text is not None, dom[:2000]
    pattern = r"fuser: tcmoa_tiny \| \d+\.\d FPS \| latency \d+ ms \| frame \d+"
    assert re.fullmatch(pattern, text.group(1)), text.group(1)
