"""The streaming fusion pipeline: read two streams, pair, register, fuse, perceive, write, serve, measure.

Threads::

    reader(vis) ─┐                      ┌─> perceive ─> sinks (video / images) ─> MJPEG server
                 ├─> pairer ─> register ─> fuse ─┤   (output thread)             └─> temporal measures
    reader(ir)  ─┘         (calling thread)

Readers decode in parallel with fusion and the output thread encodes in parallel with it, so with a costly fuser the
pipeline runs at nearly the fuser's own rate. File sources are paired by index and every frame is fused, in order
(bounded queues apply back-pressure). Live sources are paired by nearest arrival time and only the newest pair is
taken whenever the fuser is free, so the latency stays bounded when fusion is slower than the cameras.

Ctrl-C (SIGINT, when run from the main thread) stops reading, lets the frames already fused reach the outputs, and
closes the writer, so the video file is complete and playable; the stats record ``interrupted: true``.
"""

from __future__ import annotations

import contextlib
import os
import queue
import signal
import threading
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

from fusion.errors import ConfigError, InputError
from fusion.fusers.base import Fuser, accepted_options, create_fuser
from fusion.stream.overlay import side_by_side
from fusion.stream.pairing import Pair, Pairer
from fusion.stream.perceive import Perceiver
from fusion.stream.reader import SourceReader
from fusion.stream.registration import Registration, estimate_homography, load_homography
from fusion.stream.server import MjpegServer
from fusion.stream.sinks import FrameSink, open_sink
from fusion.stream.sources import FrameSource, open_source, source_folder
from fusion.stream.stats import Samples
from fusion.stream.temporal import TemporalConsistency
from fusion.tasks import TASKS
from fusion.utils.device import resolve_device
from fusion.utils.io import is_within
from fusion.utils.logging import get_logger

__all__ = ["StreamConfig", "StreamPipeline", "build_fuser", "check_output_location", "run_stream"]

log = get_logger(__name__)

PRECISIONS = ("fp32", "bf16", "fp16")


@dataclass
class StreamConfig:
    """Settings of a :class:`StreamPipeline` run.

    Attributes:
        task: fusion task passed to the fuser (``vif``: a = visible, b = infrared).
        batch: pairs fused per call (file sources only; live sources always fuse the newest single pair).
        pairing: ``auto`` (index for files, timestamp when a source is live), ``index`` or ``timestamp``.
        tolerance_s: largest arrival-time difference of a timestamp pair.
        stall_timeout_s: a source silent this long while we wait for it is treated as ended.
        queue_size: reader read-ahead for file sources (frames; at least twice the batch); small, since every
            buffered frame adds one fusion time to the latency.
        live_buffer: ring buffer of live sources (frames); older frames are dropped.
        max_frames: stop after this many fused frames (``None``: until a source ends).
        register: ``None``/``"none"`` (resize only), ``"auto"`` (estimate once) or a homography file.
        register_frames: pairs used by ``"auto"`` registration.
        fps: frame rate written into the output video (default: the visible source's, else 25).
        temporal: compute temporal-consistency measures of the fused stream, in a low-priority thread of its own;
            transitions are skipped (and counted) rather than slowing the stream when that thread falls behind.
        temporal_max_side: frame size (longer side) for the temporal measures; small, since optical flow is costly.
        progress: tqdm bar for file sources.
        handle_sigint: turn the first Ctrl-C into a clean stop (only when run from the main thread).
        serve_linger_s: keep the MJPEG server up this long after the end (``-1``: until Ctrl-C).
        labels: panel labels of the served side-by-side view.
        realtime: pace video files at their frame rate and treat them as live sources (to try the live policy).
        fourcc: codec of output videos (default by extension: ``mp4v`` for .mp4, ``MJPG`` for .avi).
    """

    task: str = "vif"
    batch: int = 1
    pairing: Literal["auto", "index", "timestamp"] = "auto"
    tolerance_s: float = 0.05
    stall_timeout_s: float = 10.0
    queue_size: int = 4
    live_buffer: int = 4
    max_frames: int | None = None
    register: str | None = None
    register_frames: int = 3
    fps: float | None = None
    temporal: bool = True
    temporal_max_side: int = 160
    progress: bool = True
    handle_sigint: bool = True
    serve_linger_s: float = 0.0
    labels: tuple[str, str, str] = ("infrared", "visible", "fused")
    realtime: bool = False
    fourcc: str | None = None

    def validate(self) -> None:
        if self.task not in TASKS:
            raise ConfigError(f"task={self.task!r}: expected one of {', '.join(TASKS)}")
        if self.batch < 1:
            raise ConfigError(f"batch={self.batch}: must be >= 1")
        if self.pairing not in ("auto", "index", "timestamp"):
            raise ConfigError(f"pairing={self.pairing!r}: expected auto, index or timestamp")
        if self.tolerance_s < 0:
            raise ConfigError(f"tolerance_s={self.tolerance_s}: must be >= 0")
        if self.stall_timeout_s <= 0:
            raise ConfigError(f"stall_timeout_s={self.stall_timeout_s}: must be > 0")
        if self.queue_size < 1 or self.live_buffer < 1:
            raise ConfigError("queue_size and live_buffer must be >= 1")
        if self.max_frames is not None and self.max_frames < 1:
            raise ConfigError(f"max_frames={self.max_frames}: must be >= 1")
        if self.register_frames < 1:
            raise ConfigError(f"register_frames={self.register_frames}: must be >= 1")
        if self.fps is not None and self.fps <= 0:
            raise ConfigError(f"fps={self.fps}: must be > 0")


def build_fuser(
    method: str | Fuser,
    *,
    device: str = "auto",
    precision: str = "fp32",
    settings: dict[str, Any] | None = None,
) -> Fuser:
    """Create a fuser, passing ``device`` and the precision (as ``amp_dtype``) through when the fuser takes them.

    Classical fusers take neither; TC-MoA fusers take both. Explicit ``settings`` win over these defaults.
    """
    if isinstance(method, Fuser):
        return method
    if precision not in PRECISIONS:
        raise ConfigError(f"precision={precision!r}: expected one of {', '.join(PRECISIONS)}")
    dev = resolve_device(device)
    if precision != "fp32" and dev.type != "cuda":
        log.warning("precision %s requested on %s; fusers usually ignore it off the GPU", precision, dev)
    settings = dict(settings or {})
    optional = {"device": str(dev)}
    if precision != "fp32":
        optional["amp_dtype"] = precision  # the TC-MoA fusers' name for autocast precision
    optional = {k: v for k, v in optional.items() if k not in settings}
    extra = accepted_options(method, optional)
    if "amp_dtype" in optional and "amp_dtype" not in extra:
        log.warning("fuser %s takes no precision setting; running at its default precision", method)
    return create_fuser(method, **settings, **extra)


def check_output_location(out: str | os.PathLike, sources: Sequence[str | FrameSource]) -> None:
    """Refuse an output that is a source or lies inside a source's folder (never write into input folders)."""
    o = Path(out)
    for s in sources:
        spec = s.spec if isinstance(s, FrameSource) else str(s)
        folder = source_folder(spec)
        if folder is None:
            continue
        if Path(spec).exists() and o.resolve() == Path(spec).resolve():
            raise InputError(f"{o}: output would overwrite the input {spec}")
        if is_within(o, folder):
            raise InputError(f"{o}: output lies inside the input folder {folder}; choose another location")


@dataclass
class _Item:
    pair: Pair
    vis: np.ndarray
    ir: np.ndarray
    fused: np.ndarray


@dataclass
class _Timers:
    register: Samples = field(default_factory=Samples)
    fuse: Samples = field(default_factory=Samples)
    perceive: Samples = field(default_factory=Samples)
    write: Samples = field(default_factory=Samples)
    temporal: Samples = field(default_factory=Samples)
    latency: Samples = field(default_factory=Samples)


class StreamPipeline:
    """Fuse a visible and an infrared stream live.

    Args:
        vis: visible source (a :class:`FrameSource` or anything :func:`open_source` accepts).
        ir: infrared source.
        fuser: a :class:`~fusion.fusers.Fuser` (see :func:`build_fuser`).
        config: run settings.
        outputs: output video files / image folders (paths) or ready :class:`FrameSink` objects.
        server: an optional :class:`MjpegServer` (started by the pipeline if not yet started).
        perceiver: optional ``frame -> overlay`` callable applied to every fused frame before writing.
        fps_hint: image-folder frame rate (image sequences carry none).
    """

    def __init__(
        self,
        vis: str | FrameSource,
        ir: str | FrameSource,
        fuser: Fuser,
        *,
        config: StreamConfig | None = None,
        outputs: Sequence[str | os.PathLike | FrameSink] = (),
        server: MjpegServer | None = None,
        perceiver: Perceiver | None = None,
        fps_hint: float | None = None,
    ):
        self.config = config or StreamConfig()
        self.config.validate()
        for out in outputs:
            if not isinstance(out, FrameSink):
                check_output_location(out, [vis, ir])
        self.registration = Registration()
        if self.config.register not in (None, "", "none", "auto"):
            self.registration = Registration(load_homography(self.config.register), "file", str(self.config.register))
        realtime = self.config.realtime
        self.vis = open_source(vis, "vis", realtime=realtime, fps=fps_hint)
        try:
            self.ir = open_source(ir, "ir", realtime=realtime, fps=fps_hint)
        except BaseException:
            self.vis.close()
            raise
        self.fuser = fuser
        self.server = server
        self.perceiver = perceiver
        self._outputs = list(outputs)
        self.sinks: list[FrameSink] = []
        self._stop = threading.Event()
        self._error: BaseException | None = None
        self.interrupted = False
        self.timers = _Timers()
        self.temporal = TemporalConsistency(max_side=self.config.temporal_max_side) if self.config.temporal else None
        self.frames_out = 0
        self._t_first_out: float | None = None
        self._t_last_out: float | None = None
        self._recent_out: list[float] = []
        self._out_size: tuple[int, int] | None = None
        self._analysis_q: queue.Queue | None = None
        self._closing = False
        self._lingering = False

    # -- control ----------------------------------------------------------------------------------------------------
    def request_stop(self) -> None:
        """Ask the pipeline to finish: no new pairs are taken; frames already fused are still written."""
        self._stop.set()

    @property
    def live(self) -> bool:
        return self.vis.live or self.ir.live

    @property
    def output_fps(self) -> float:
        return float(self.config.fps or self.vis.fps or self.ir.fps or 25.0)

    # -- run --------------------------------------------------------------------------------------------------------
    def run(self) -> dict[str, Any]:
        """Run to the end of the streams (or stop/Ctrl-C/``max_frames``) and return the stats dictionary."""
        cfg = self.config
        mode = cfg.pairing if cfg.pairing != "auto" else ("timestamp" if self.live else "index")
        if mode == "timestamp" and not (self.vis.live and self.ir.live):
            log.warning("timestamp pairing with a file source pairs by arrival time; use index pairing for files")
        batch = cfg.batch if mode == "index" else 1
        if cfg.batch > 1 and batch == 1:
            log.info("live sources: fusing the newest pair only (batch %d ignored)", cfg.batch)
        t_start = time.monotonic()
        cond = threading.Condition()
        per_reader_max = cfg.max_frames if mode == "index" else None
        readers = [
            SourceReader(
                s, capacity=cfg.live_buffer if s.live else max(cfg.queue_size, 2 * batch), notify=cond,
                max_frames=per_reader_max,
            )
            for s in (self.vis, self.ir)
        ]
        pairer = Pairer(
            readers[0], readers[1], mode=mode, tolerance_s=cfg.tolerance_s, stall_timeout_s=cfg.stall_timeout_s,
            stop_event=self._stop,
        )
        try:
            for out in self._outputs:
                if not isinstance(out, FrameSink):
                    out = open_sink(out, fps=self.output_fps, fourcc=self.config.fourcc)
                self.sinks.append(out)
            if self.server is not None and self.server._httpd is None:
                self.server.start()
        except BaseException:
            for closable in (*self.sinks, self.vis, self.ir):
                with contextlib.suppress(Exception):
                    closable.close()
            raise
        out_q: queue.Queue[_Item | None] = queue.Queue(maxsize=max(2, 2 * batch))
        total = None
        if mode == "index":
            counts = [c for c in (self.vis.frame_count, self.ir.frame_count) if c is not None]
            total = min(counts) if counts else None
            if cfg.max_frames is not None:
                total = min(total, cfg.max_frames) if total is not None else cfg.max_frames
        bar = None
        if cfg.progress and mode == "index":
            from tqdm import tqdm

            bar = tqdm(total=total, unit="frame", desc="fuse", leave=False, dynamic_ncols=True)
        writer = threading.Thread(target=self._output_loop, args=(out_q, bar), name="stream-output", daemon=True)
        analysis = None
        if self.temporal is not None:
            self._analysis_q = queue.Queue(maxsize=8)
            analysis = threading.Thread(target=self._analysis_loop, args=(self._analysis_q,), name="stream-temporal",
                                        daemon=True)
            analysis.start()
        restore = self._install_sigint()
        for r in readers:
            r.start()
        writer.start()
        try:
            self._fuse_loop(pairer, out_q, batch, writer)
        except KeyboardInterrupt:
            self.interrupted = True
            log.warning("interrupted; finishing the output")
        finally:
            self._closing = True
            self._stop.set()
            for r in readers:
                r.stop()
            self._put(out_q, None, writer)
            writer.join()
            if analysis is not None and self._analysis_q is not None:
                self._put(self._analysis_q, None, analysis)
                analysis.join()
            if bar is not None:
                bar.close()
            close_errors = []
            for sink in self.sinks:
                try:
                    sink.close()
                except Exception as exc:  # one failing sink must not keep the others from finalising
                    close_errors.append(f"{sink.path}: {exc}")
            for r in readers:
                r.join(timeout=1.0)
            self._linger()
            if self.server is not None:
                self.server.stop()
            restore()
        if self._error is not None:
            raise self._error
        if close_errors:
            raise InputError("; ".join(close_errors))
        return self._stats(t_start, mode, batch, readers, pairer)

    def _install_sigint(self):
        if not self.config.handle_sigint or threading.current_thread() is not threading.main_thread():
            return lambda: None
        previous = signal.getsignal(signal.SIGINT)

        def handler(signum, frame):
            if self._lingering:
                self._stop.set()  # Ctrl-C is how a lingering viewer is ended; not an interruption of the run
                return
            if self._closing:
                log.warning("Ctrl-C: finishing the output files, please wait")
                return
            if self._stop.is_set():
                raise KeyboardInterrupt
            self.interrupted = True
            log.warning("Ctrl-C: stopping after the frames in flight (press again to abort)")
            self._stop.set()

        signal.signal(signal.SIGINT, handler)
        return lambda: signal.signal(signal.SIGINT, previous)

    def _linger(self) -> None:
        if self.server is None or self.config.serve_linger_s == 0:
            return
        forever = self.config.serve_linger_s < 0
        if forever:
            log.info("streams ended; still serving %s until Ctrl-C", self.server.url)
        self._stop.clear()
        self._lingering = True
        end = time.monotonic() + (0 if forever else self.config.serve_linger_s)
        try:
            with contextlib.suppress(KeyboardInterrupt):
                while not self._stop.is_set() and (forever or time.monotonic() < end):
                    self._stop.wait(0.2)
        finally:
            self._lingering = False
            self._stop.set()

    @staticmethod
    def _put(q: queue.Queue, item: _Item | None, writer: threading.Thread) -> bool:
        # The output thread always drains its queue until the end marker, so this only fails if it is gone.
        while writer.is_alive():
            try:
                q.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def _registration_for(self, pairer: Pairer) -> list[Pair]:
        """Estimate the homography from the first pairs when asked; return those pairs for fusing."""
        if self.config.register != "auto":
            return []
        first: list[Pair] = []
        while len(first) < self.config.register_frames:
            p = pairer.next_pair()
            if p is None:
                break
            first.append(p)
        if first:
            t0 = time.monotonic()
            self.registration = estimate_homography([p.ir.image for p in first], [p.vis.image for p in first])
            log.info("registration (%s) took %.2f s", self.registration.method, time.monotonic() - t0)
        return [] if self.live else first  # stale live pairs are not worth fusing

    def _fuse_loop(self, pairer: Pairer, out_q: queue.Queue, batch: int, writer: threading.Thread) -> None:
        cfg = self.config
        backlog = self._registration_for(pairer)
        fused_count = 0
        ended = False
        while not ended and not self._stop.is_set() and self._error is None:
            pairs: list[Pair] = []
            while len(pairs) < batch:
                if cfg.max_frames is not None and fused_count + len(pairs) >= cfg.max_frames:
                    ended = True
                    break
                p = backlog.pop(0) if backlog else pairer.next_pair()
                if p is None:
                    ended = True
                    break
                pairs.append(p)
            if not pairs:
                break
            t0 = time.monotonic()
            vis_list, ir_list = [], []
            for p in pairs:
                vis = p.vis.image
                assert vis is not None and p.ir.image is not None
                if self._out_size is None:
                    self._out_size = (vis.shape[1], vis.shape[0])
                elif (vis.shape[1], vis.shape[0]) != self._out_size:
                    import cv2

                    vis = cv2.resize(vis, self._out_size, interpolation=cv2.INTER_AREA)
                vis_list.append(vis)
                ir_list.append(self.registration.apply(p.ir.image, vis.shape))
            t1 = time.monotonic()
            if len(pairs) == 1:
                fused = [self.fuser.fuse(vis_list[0], ir_list[0], cfg.task)]
            else:
                fused = self.fuser.fuse_batch(vis_list, ir_list, cfg.task)
            t2 = time.monotonic()
            for _ in pairs:
                self.timers.register.add((t1 - t0) / len(pairs))
                self.timers.fuse.add((t2 - t1) / len(pairs))
            for p, v, i, f in zip(pairs, vis_list, ir_list, fused):
                if not isinstance(f, np.ndarray) or f.shape != v.shape or f.dtype != np.uint8:
                    raise ValueError(
                        f"fuser {self.fuser.name} returned {getattr(f, 'shape', None)} {getattr(f, 'dtype', None)}, "
                        f"expected uint8 {v.shape}"
                    )
                if not self._put(out_q, _Item(p, v, i, f), writer):
                    return
            fused_count += len(pairs)

    def _output_loop(self, q: queue.Queue, bar: Any) -> None:
        labels = self.config.labels
        previous: tuple[np.ndarray, ...] | None = None
        while True:
            item = q.get()
            if item is None:
                return
            if self._error is not None:
                continue  # drain so the producer never blocks
            try:
                t0 = time.monotonic()
                shown = self.perceiver(item.fused) if self.perceiver is not None else item.fused
                t1 = time.monotonic()
                for sink in self.sinks:
                    sink.write(shown)
                t2 = time.monotonic()
                self.timers.latency.add(t2 - item.pair.t_capture)
                if self.perceiver is not None:
                    self.timers.perceive.add(t1 - t0)
                self.timers.write.add(t2 - t1)
                self.frames_out += 1
                self._t_first_out = self._t_first_out or t2
                self._t_last_out = t2
                self._recent_out = (self._recent_out + [t2])[-30:]
                if self._analysis_q is not None:
                    current = (item.fused, item.vis, item.ir)
                    if previous is not None and self.temporal is not None:
                        try:  # measuring must never slow the stream: skip a transition rather than wait
                            self._analysis_q.put_nowait((previous, current))
                        except queue.Full:
                            self.temporal.skipped += 1
                    previous = current
                if self.server is not None:
                    text = self._status_text(t2 - item.pair.t_capture)
                    ir_f, vis_f = item.ir, item.vis
                    self.server.update(
                        lambda a=ir_f, b=vis_f, c=shown, t=text: side_by_side([a, b, c], labels, t),
                        {"frame": item.pair.seq, "frames_out": self.frames_out, "status": text},
                    )
                if bar is not None:
                    bar.update(1)
            except BaseException as exc:  # surfaces in run() after the outputs are closed
                self._error = exc
                self._stop.set()

    def _analysis_loop(self, q: queue.Queue) -> None:
        assert self.temporal is not None
        with contextlib.suppress(AttributeError, OSError):
            # Linux: a nice value for this thread only, so the measurement yields the CPU to fusion.
            os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), 10)
        while True:
            item = q.get()
            if item is None:
                return
            if self._error is not None:
                continue
            t0 = time.monotonic()
            try:
                self.temporal.add_transition(*item)
            except Exception as exc:  # a measurement must never stop the stream
                log.warning("temporal measure disabled after an error: %s", exc)
                self._analysis_q = None
                return
            self.timers.temporal.add(time.monotonic() - t0)

    @staticmethod
    def _ended_first(readers: list[SourceReader], candidate: str | None) -> str | None:
        """The source that ran out of frames before the other (``None`` when both had as many)."""
        if candidate is None:
            return None
        counts = {r.source.name: r.counters.frames_read + r.counters.corrupt for r in readers}
        other = [n for n in counts if n != candidate]
        if other and counts[other[0]] > counts[candidate]:
            log.info("%s ended before %s", candidate, other[0])
            return candidate
        return None

    def _temporal_result(self) -> dict | None:
        if self.temporal is None:
            return None
        res = self.temporal.result()
        res["frames"] = self.frames_out
        return res

    def _status_text(self, latency: float) -> str:
        r = self._recent_out
        fps = (len(r) - 1) / (r[-1] - r[0]) if len(r) > 1 and r[-1] > r[0] else 0.0
        return f"{fps:5.1f} FPS | latency {latency * 1e3:6.1f} ms | frame {self.frames_out}"

    # -- stats ------------------------------------------------------------------------------------------------------
    def _stats(self, t_start: float, mode: str, batch: int, readers: list[SourceReader], pairer: Pairer) -> dict:
        end = self._t_last_out or time.monotonic()
        wall = end - t_start
        pc = pairer.counters
        sources = {}
        for r in readers:
            c = r.counters
            name = r.source.name
            sources[name] = {
                **r.source.describe(),
                "frames_read": c.frames_read,
                "corrupt": c.corrupt,
                "used": pc.used.get(name, 0),
                "dropped": max(0, c.frames_read - pc.used.get(name, 0)),
                "dropped_overflow": c.dropped_overflow,
                "dropped_unmatched": pc.unmatched.get(name, 0),
                "dropped_stale": pc.stale.get(name, 0),
                "stalled": name in pc.stalled,
                "error": c.error,
                "ended": c.ended,
            }
        steady = None
        if self.frames_out > 1 and self._t_first_out and self._t_last_out and self._t_last_out > self._t_first_out:
            steady = (self.frames_out - 1) / (self._t_last_out - self._t_first_out)
        stages = {f"read_{r.source.name}": r.counters.read_times.summary_ms() for r in readers}
        stages.update(
            register=self.timers.register.summary_ms(),
            fuse=self.timers.fuse.summary_ms(),
            perceive=self.timers.perceive.summary_ms(),
            write=self.timers.write.summary_ms(),
            temporal=self.timers.temporal.summary_ms(),
        )
        return {
            "method": self.fuser.name,
            "fuser_settings": _jsonable(self.fuser.settings()),
            "config": _jsonable(asdict(self.config)),
            "pairing": mode,
            "batch": batch,
            "live": self.live,
            "output_fps": self.output_fps,
            "outputs": [str(s.path) for s in self.sinks],
            "sources": sources,
            "pairs": pc.pairs,
            "dropped_corrupt_pairs": pc.dropped_corrupt_pairs,
            "ended_first": self._ended_first(readers, pc.ended_first),
            "frames_out": self.frames_out,
            "wall_s": round(wall, 4),
            "fps": round(self.frames_out / wall, 3) if wall > 0 else None,
            "fps_steady": round(steady, 3) if steady else None,
            "latency_ms": self.timers.latency.summary_ms(),
            "stages_ms": stages,
            "registration": self.registration.as_dict(),
            "temporal": self._temporal_result(),
            "interrupted": self.interrupted,
        }


def _jsonable(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, (str, int, float, bool)) or obj is None:
        return obj
    if isinstance(obj, np.generic):
        return obj.item()
    return str(obj)


def run_stream(
    vis: str | FrameSource,
    ir: str | FrameSource,
    method: str | Fuser = "average",
    *,
    out: str | os.PathLike | None = None,
    device: str = "auto",
    precision: str = "fp32",
    fuser_settings: dict[str, Any] | None = None,
    serve: int | None = None,
    perceiver: Perceiver | None = None,
    **config: Any,
) -> dict[str, Any]:
    """One-call helper: build the fuser, run the pipeline, return the stats (see :class:`StreamConfig` for
    ``config`` keys)."""
    fuser = build_fuser(method, device=device, precision=precision, settings=fuser_settings)
    server = MjpegServer(serve) if serve is not None else None
    pipe = StreamPipeline(
        vis, ir, fuser, config=StreamConfig(**config), outputs=[out] if out is not None else [], server=server,
        perceiver=perceiver,
    )
    return pipe.run()
