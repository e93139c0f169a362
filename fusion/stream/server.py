"""A tiny MJPEG-over-HTTP viewer on localhost, to watch the fusion live in a browser.

``http://127.0.0.1:PORT/`` shows a page with the stream; ``/stream.mjpg`` is the ``multipart/x-mixed-replace`` stream,
``/frame.jpg`` the latest frame, ``/stats.json`` the latest status. The server only binds to the loopback interface.
Frames are composed and JPEG-encoded lazily, once per new frame and only while someone is watching, so an unwatched
server costs almost nothing.
"""

from __future__ import annotations

import html
import json
import threading
import time
from collections.abc import Callable
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import cv2
import numpy as np

from fusion.errors import InputError
from fusion.utils.logging import get_logger

__all__ = ["MjpegServer"]

log = get_logger(__name__)

_BOUNDARY = "fusionframe"
_PAGE = """<!doctype html>
<html><head><meta charset="utf-8"><title>Fusion stream</title>
<style>
body{background:#111;color:#ddd;font-family:sans-serif;margin:1em}
#status{font-size:1.3em;font-family:monospace;margin:.4em 0}
img{display:block;max-width:100%}
</style></head>
<body><h3>@TITLE@</h3>
<p id="status">waiting for the first frame</p>
<img id="view" src="/stream.mjpg" alt="fusion stream">
<p>infrared | visible | fused</p>
<script>
// the fuser, frame rate and latency as text, from /stats.json (the picture carries them too)
function show(s) {
  if (s.frames_out === undefined) return;
  document.getElementById("status").textContent = "fuser: " + s.method + " | " + s.fps.toFixed(1) + " FPS | latency "
    + s.latency_ms.toFixed(0) + " ms | frame " + s.frames_out;
}
async function poll() {
  try { show(await (await fetch("/stats.json", {cache: "no-store"})).json()); } catch (e) {}
  setTimeout(poll, 500);
}
poll();
</script>
</body></html>
"""


class MjpegServer:
    """Serve the latest frame as MJPEG on ``127.0.0.1``.

    Args:
        port: TCP port; ``0`` picks a free one (read :attr:`port` after :meth:`start`).
        quality: JPEG quality (1-100).
        title: heading of the HTML page.
    """

    def __init__(self, port: int = 8080, *, quality: int = 80, title: str = "Infrared-visible fusion"):
        if not 0 <= int(port) <= 65535:
            raise InputError(f"--serve {port}: port must be in 0..65535")
        self.requested_port = int(port)
        self.port = int(port)
        self.quality = int(quality)
        self.title = title
        self._cond = threading.Condition()
        self._seq = 0
        self._make: Callable[[], np.ndarray] | None = None
        self._jpeg: tuple[int, bytes] | None = None
        self._status: dict = {}
        self._stopping = threading.Event()
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self.clients = 0
        self.frames_sent = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/"

    @property
    def running(self) -> bool:
        """Whether the server is listening (between :meth:`start` and :meth:`stop`)."""
        return self._httpd is not None

    def start(self) -> MjpegServer:
        """Bind and serve in a daemon thread."""
        server = self

        class Handler(_Handler):
            owner = server

        try:
            self._httpd = ThreadingHTTPServer(("127.0.0.1", self.requested_port), Handler)
        except OSError as exc:
            why = exc.strerror or exc
            raise InputError(f"--serve {self.requested_port}: cannot listen on 127.0.0.1 ({why})") from None
        self._httpd.daemon_threads = True
        self.port = int(self._httpd.server_address[1])
        self._thread = threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.2}, daemon=True,
                                        name="mjpeg-server")
        self._thread.start()
        log.info("watch the stream at %s", self.url)
        return self

    def update(self, make_frame: Callable[[], np.ndarray] | np.ndarray, status: dict | None = None) -> None:
        """Publish a new frame: an RGB array, or a callable building it (called only if a client wants it)."""
        with self._cond:
            self._make = make_frame if callable(make_frame) else (lambda f=make_frame: f)
            self._seq += 1
            if status is not None:
                self._status = dict(status)
            self._cond.notify_all()

    def _jpeg_for(self, seq: int) -> bytes | None:
        with self._cond:
            if self._jpeg is not None and self._jpeg[0] == seq:
                return self._jpeg[1]
            make = self._make
        if make is None:
            return None
        rgb = make()
        ok, buf = cv2.imencode(".jpg", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, self.quality])
        if not ok:
            return None
        data = buf.tobytes()
        with self._cond:
            if self._seq == seq:
                self._jpeg = (seq, data)
        return data

    def wait_frame(self, after: int, timeout: float) -> int:
        """Block until a frame newer than ``after`` is published (or timeout/stop); return the latest sequence."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while self._seq <= after and not self._stopping.is_set():
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self._cond.wait(left)
            return self._seq

    def status(self) -> dict:
        with self._cond:
            return dict(self._status)

    def stop(self) -> None:
        """Stop serving and close the socket (open streams end within about a second)."""
        self._stopping.set()
        with self._cond:
            self._cond.notify_all()
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None
        if self._thread is not None:
            self._thread.join(timeout=2.0)
            self._thread = None

    @property
    def stopping(self) -> bool:
        return self._stopping.is_set()


def _page(title: str) -> bytes:
    return _PAGE.replace("@TITLE@", html.escape(title)).encode()


class _Handler(BaseHTTPRequestHandler):
    owner: MjpegServer
    protocol_version = "HTTP/1.0"

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - signature fixed by http.server
        log.debug("http %s - " + format, self.address_string(), *args)

    def do_GET(self) -> None:  # noqa: N802 - name fixed by http.server
        path = self.path.split("?", 1)[0]
        try:
            if path in ("/", "/index.html"):
                self._send(HTTPStatus.OK, "text/html; charset=utf-8", _page(self.owner.title))
            elif path == "/stream.mjpg":
                self._stream()
            elif path == "/frame.jpg":
                seq = self.owner.wait_frame(0, timeout=5.0)
                data = self.owner._jpeg_for(seq) if seq else None
                if data is None:
                    self._send(HTTPStatus.SERVICE_UNAVAILABLE, "text/plain", b"no frame yet\n")
                else:
                    self._send(HTTPStatus.OK, "image/jpeg", data)
            elif path == "/stats.json":
                self._send(HTTPStatus.OK, "application/json", json.dumps(self.owner.status()).encode())
            else:
                self._send(HTTPStatus.NOT_FOUND, "text/plain", b"not found\n")
        except (BrokenPipeError, ConnectionResetError, ConnectionAbortedError):
            pass  # the browser went away

    def _send(self, status: HTTPStatus, ctype: str, body: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        self.wfile.write(body)

    def _stream(self) -> None:
        owner = self.owner
        self.send_response(HTTPStatus.OK)
        self.send_header("Content-Type", f"multipart/x-mixed-replace; boundary={_BOUNDARY}")
        self.send_header("Cache-Control", "no-store")
        self.send_header("Connection", "close")
        self.end_headers()
        with owner._cond:
            owner.clients += 1
        try:
            last = 0
            while not owner.stopping:
                seq = owner.wait_frame(last, timeout=1.0)
                if seq == last:
                    continue
                data = owner._jpeg_for(seq)
                last = seq
                if data is None:
                    continue
                self.wfile.write(
                    f"--{_BOUNDARY}\r\nContent-Type: image/jpeg\r\nContent-Length: {len(data)}\r\n\r\n".encode()
                )
                self.wfile.write(data)
                self.wfile.write(b"\r\n")
                self.wfile.flush()
                with owner._cond:
                    owner.frames_sent += 1
        finally:
            with owner._cond:
                owner.clients -= 1
