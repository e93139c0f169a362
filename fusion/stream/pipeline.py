"""The streaming fusion pipeline: read two streams, pair, register, fuse, perceive, write, serve, measure.

Threads::

    reader(vis) ─┐                      ┌─> perceive ─> sinks (video / images) ─> MJPEG server
                 ├─> pairer ─> register ─> fuse ─┤   (output thread)             └─> temporal measures
    reader(ir)  ─┘         (calling thread)

Readers decode in parallel with fusion and the output thread encodes in parallel with it, so with a costly fuser the
pipeline runs at nearly the fuser's own rate. File sources are paired by index and every frame is fused, in order
(bounded queues apply back-pressure). Live sources are paired by nearest arrival time and only the newest pair is
taken whenever the fuser is free, so the latency stays bounded when fusion is slower than the cameras.

:meth:`StreamPipeline.run` is a sequence of named steps: plan the pairing (:meth:`~StreamPipeline._plan`), open the
readers and the pairer, open the outputs, start the workers, then the fuse loop (next batch, align, fuse, hand over)
on the calling thread while the output thread perceives, writes, accounts and serves; finally close everything and
assemble the stats.

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
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from fusion.errors import InputError
from fusion.fusers.base import Fuser
from fusion.stream.config import StreamConfig
from fusion.stream.outputs import check_output_location
from fusion.stream.overlay import side_by_side
from fusion.stream.pairing import Pair, Pairer
from fusion.stream.perceive import Perceiver
from fusion.stream.reader import SourceReader
from fusion.stream.registration import Registration, estimate_homography, load_homography
from fusion.stream.server import MjpegServer
from fusion.stream.sinks import FrameSink, open_sink
from fusion.stream.sources import FrameSource, open_source
from fusion.stream.stats import OutputClock, StageTimers, ended_first, jsonable, source_stats, stage_stats
from fusion.stream.temporal import TemporalConsistency
from fusion.utils.logging import get_logger

__all__ = ["StreamPipeline"]

log = get_logger(__name__)

_Frames = tuple[np.ndarray, np.ndarray, np.ndarray]  # fused, visible, infrared: one step of the temporal measures


@dataclass
class _Item:
    """A fused pair on its way to the outputs."""

    pair: Pair
    vis: np.ndarray
    ir: np.ndarray
    fused: np.ndarray


@dataclass
class _Plan:
    """How this run pairs and batches: ``index`` or ``timestamp`` pairing, pairs per call, frames expected."""

    mode: str
    batch: int
    total: int | None


@dataclass
class _Run:
    """The threads and queues of one run, from :meth:`StreamPipeline._start_workers` to ``_finish``."""

    plan: _Plan
    t_start: float
    readers: list[SourceReader]
    pairer: Pairer
    out_q: queue.Queue[_Item | None]
    writer: threading.Thread
    analysis: threading.Thread | None
    bar: Any
    restore_sigint: Callable[[], Any]


class StreamPipeline:
    """Fuse a visible and an infrared stream live.

    Args:
        vis: visible source (a :class:`FrameSource` or anything :func:`open_source` accepts).
        ir: infrared source.
        fuser: a :class:`~fusion.fusers.Fuser` (see :func:`fusion.stream.build_stream_fuser`).
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
        self.timers = StageTimers()
        self.clock = OutputClock()
        self.temporal = TemporalConsistency(max_side=self.config.temporal_max_side) if self.config.temporal else None
        self._out_size: tuple[int, int] | None = None
        self._analysis_q: queue.Queue | None = None
        self._t_run_start = time.monotonic()
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

    @property
    def frames_out(self) -> int:
        """Fused frames that reached the outputs so far."""
        return self.clock.frames

    # -- run --------------------------------------------------------------------------------------------------------
    def run(self) -> dict[str, Any]:
        """Run to the end of the streams (or stop/Ctrl-C/``max_frames``) and return the stats dictionary."""
        plan = self._plan()
        t_start = time.monotonic()
        readers, pairer = self._open_pairing(plan)
        self._open_outputs()
        run = self._start_workers(plan, t_start, readers, pairer)
        try:
            self._fuse_loop(run)
        except KeyboardInterrupt:
            self.interrupted = True
            log.warning("interrupted; finishing the output")
        finally:
            close_errors = self._finish(run)
        if self._error is not None:
            raise self._error
        if close_errors:
            raise InputError("; ".join(close_errors))
        return self._stats(run)

    def _plan(self) -> _Plan:
        """Pairing mode (``auto``: index for files, timestamp when live), batch size, and the frames to expect."""
        cfg = self.config
        mode = cfg.pairing if cfg.pairing != "auto" else ("timestamp" if self.live else "index")
        if mode == "timestamp" and not (self.vis.live and self.ir.live):
            log.warning("timestamp pairing with a file source pairs by arrival time; use index pairing for files")
        batch = cfg.batch if mode == "index" else 1
        if cfg.batch > 1 and batch == 1:
            log.info("live sources: fusing the newest pair only (batch %d ignored)", cfg.batch)
        total = None
        if mode == "index":
            counts = [c for c in (self.vis.frame_count, self.ir.frame_count) if c is not None]
            total = min(counts) if counts else None
            if cfg.max_frames is not None:
                total = min(total, cfg.max_frames) if total is not None else cfg.max_frames
        return _Plan(mode, batch, total)

    def _open_pairing(self, plan: _Plan) -> tuple[list[SourceReader], Pairer]:
        """One reader per source (not started yet) and the pairer over them."""
        cfg = self.config
        cond = threading.Condition()
        per_reader_max = cfg.max_frames if plan.mode == "index" else None
        readers = [
            SourceReader(
                s, capacity=cfg.live_buffer if s.live else max(cfg.queue_size, 2 * plan.batch), notify=cond,
                max_frames=per_reader_max,
            )
            for s in (self.vis, self.ir)
        ]
        pairer = Pairer(
            readers[0], readers[1], mode=plan.mode, tolerance_s=cfg.tolerance_s, stall_timeout_s=cfg.stall_timeout_s,
            stop_event=self._stop,
        )
        return readers, pairer

    def _open_outputs(self) -> None:
        """Open the sinks and start the server; on failure close what is open and the sources."""
        try:
            for out in self._outputs:
                if not isinstance(out, FrameSink):
                    out = open_sink(out, fps=self.output_fps, fourcc=self.config.fourcc)
                self.sinks.append(out)
            if self.server is not None and not self.server.running:
                self.server.start()
        except BaseException:
            for closable in (*self.sinks, self.vis, self.ir):
                with contextlib.suppress(Exception):
                    closable.close()
            raise

    def _start_workers(self, plan: _Plan, t_start: float, readers: list[SourceReader], pairer: Pairer) -> _Run:
        """Start the temporal thread, the SIGINT handler, the readers and the output thread."""
        out_q: queue.Queue[_Item | None] = queue.Queue(maxsize=max(2, 2 * plan.batch))
        bar = None
        if self.config.progress and plan.mode == "index":
            from tqdm import tqdm

            bar = tqdm(total=plan.total, unit="frame", desc="fuse", leave=False, dynamic_ncols=True)
        writer = threading.Thread(target=self._output_loop, args=(out_q, bar), name="stream-output", daemon=True)
        analysis = None
        self._t_run_start = t_start
        if self.temporal is not None:
            self._analysis_q = queue.Queue(maxsize=8)
            analysis = threading.Thread(target=self._analysis_loop, args=(self._analysis_q,), name="stream-temporal",
                                        daemon=True)
            analysis.start()
        restore = self._install_sigint()
        for r in readers:
            r.start()
        writer.start()
        return _Run(plan, t_start, readers, pairer, out_q, writer, analysis, bar, restore)

    def _finish(self, run: _Run) -> list[str]:
        """Stop reading, drain the output and temporal threads, close the sinks (each one), linger, stop serving.

        Returns the sinks' close errors (raised by :meth:`run` once everything is closed).
        """
        self._closing = True
        self._stop.set()
        for r in run.readers:
            r.stop()
        self._put(run.out_q, None, run.writer)
        run.writer.join()
        if run.analysis is not None and self._analysis_q is not None:
            self._put(self._analysis_q, None, run.analysis)
            run.analysis.join()
        if run.bar is not None:
            run.bar.close()
        close_errors = []
        for sink in self.sinks:
            try:
                sink.close()
            except Exception as exc:  # one failing sink must not keep the others from finalising
                close_errors.append(f"{sink.path}: {exc}")
        for r in run.readers:
            r.join(timeout=1.0)
        self._linger()
        if self.server is not None:
            self.server.stop()
        run.restore_sigint()
        return close_errors

    def _install_sigint(self) -> Callable[[], Any]:
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
    def _put(q: queue.Queue, item: Any, worker: threading.Thread) -> bool:
        # The worker always drains its queue until the end marker, so this only fails if it is gone.
        while worker.is_alive():
            try:
                q.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    # -- fuse (calling thread) --------------------------------------------------------------------------------------
    def _fuse_loop(self, run: _Run) -> None:
        """Take batches of pairs, align, fuse and hand them to the output thread until the end or a stop."""
        backlog = self._registration_for(run.pairer)
        fused_count = 0
        ended = False
        while not ended and not self._stop.is_set() and self._error is None:
            pairs, ended = self._next_batch(run.pairer, backlog, run.plan.batch, fused_count)
            if not pairs:
                break
            vis_list, ir_list = self._align(pairs)
            fused = self._fuse(vis_list, ir_list)
            for p, v, i, f in zip(pairs, vis_list, ir_list, fused):
                self._check_fused(f, v)
                if not self._put(run.out_q, _Item(p, v, i, f), run.writer):
                    return
            fused_count += len(pairs)

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

    def _next_batch(self, pairer: Pairer, backlog: list[Pair], batch: int, fused_count: int) -> tuple[list[Pair], bool]:
        """Up to ``batch`` pairs (the registration backlog first) and whether the stream ended (or hit max_frames)."""
        max_frames = self.config.max_frames
        pairs: list[Pair] = []
        while len(pairs) < batch:
            if max_frames is not None and fused_count + len(pairs) >= max_frames:
                return pairs, True
            p = backlog.pop(0) if backlog else pairer.next_pair()
            if p is None:
                return pairs, True
            pairs.append(p)
        return pairs, False

    def _align(self, pairs: list[Pair]) -> tuple[list[np.ndarray], list[np.ndarray]]:
        """Visible frames at the output size (that of the first), infrared frames registered onto them."""
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
        share = (time.monotonic() - t0) / len(pairs)
        for _ in pairs:
            self.timers.register.add(share)
        return vis_list, ir_list

    def _fuse(self, vis_list: list[np.ndarray], ir_list: list[np.ndarray]) -> list[np.ndarray]:
        """One ``fuse`` call for a single pair, ``fuse_batch`` for several; the time is shared among the pairs."""
        t0 = time.monotonic()
        task = self.config.task
        if len(vis_list) == 1:
            fused = [self.fuser.fuse(vis_list[0], ir_list[0], task)]
        else:
            fused = self.fuser.fuse_batch(vis_list, ir_list, task)
        share = (time.monotonic() - t0) / len(vis_list)
        for _ in vis_list:
            self.timers.fuse.add(share)
        return fused

    def _check_fused(self, fused: Any, vis: np.ndarray) -> None:
        if not isinstance(fused, np.ndarray) or fused.shape != vis.shape or fused.dtype != np.uint8:
            raise ValueError(
                f"fuser {self.fuser.name} returned {getattr(fused, 'shape', None)} {getattr(fused, 'dtype', None)}, "
                f"expected uint8 {vis.shape}"
            )

    # -- outputs (output thread) ------------------------------------------------------------------------------------
    def _output_loop(self, q: queue.Queue, bar: Any) -> None:
        """Perceive, write, account, feed the temporal measures and serve every fused frame, in order."""
        previous: _Frames | None = None
        while True:
            item = q.get()
            if item is None:
                return
            if self._error is not None:
                continue  # drain so the producer never blocks
            try:
                t0 = time.monotonic()
                shown = self._perceive(item.fused)
                t1 = time.monotonic()
                for sink in self.sinks:
                    sink.write(shown)
                t2 = time.monotonic()
                self._account(item, t0, t1, t2)
                previous = self._feed_temporal(item, previous)
                self._serve(item, shown, t2)
                if bar is not None:
                    bar.update(1)
            except BaseException as exc:  # surfaces in run() after the outputs are closed
                self._error = exc
                self._stop.set()

    def _perceive(self, fused: np.ndarray) -> np.ndarray:
        return self.perceiver(fused) if self.perceiver is not None else fused

    def _account(self, item: _Item, t0: float, t1: float, t2: float) -> None:
        """Record latency (older frame's arrival -> written), perceive and write times, and the output tick."""
        self.timers.latency.add(t2 - item.pair.t_capture)
        if self.perceiver is not None:
            self.timers.perceive.add(t1 - t0)
        self.timers.write.add(t2 - t1)
        self.clock.tick(t2)

    def _feed_temporal(self, item: _Item, previous: _Frames | None) -> _Frames | None:
        """Queue the transition from ``previous`` for the temporal thread (skipped, never waited for, when it is
        busy); return the frames of this step."""
        analysis_q = self._analysis_q
        if analysis_q is None:
            return previous
        current = (item.fused, item.vis, item.ir)
        if previous is not None and self.temporal is not None:
            # measuring must never slow the stream: skip a transition rather than wait, and keep the measures'
            # share of the wall time within the budget (they compete with the fuser for the same cores)
            spent = self.timers.temporal.total
            if spent > self.config.temporal_budget * (time.monotonic() - self._t_run_start):
                self.temporal.skipped += 1
                return current
            try:
                analysis_q.put_nowait((previous, current))
            except queue.Full:
                self.temporal.skipped += 1
        return current

    def _serve(self, item: _Item, shown: np.ndarray, t_written: float) -> None:
        """Publish infrared | visible | shown to the viewer (composed only when someone watches)."""
        if self.server is None:
            return
        text = self.clock.status_text(t_written - item.pair.t_capture)
        ir, vis, labels = item.ir, item.vis, self.config.labels
        self.server.update(
            lambda: side_by_side([ir, vis, shown], labels, text),
            {"frame": item.pair.seq, "frames_out": self.clock.frames, "status": text, "method": self.fuser.name,
             "fps": round(self.clock.recent_fps(), 2), "latency_ms": round((t_written - item.pair.t_capture) * 1e3, 1)},
        )

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

    # -- stats ------------------------------------------------------------------------------------------------------
    def _stats(self, run: _Run) -> dict[str, Any]:
        wall = (self.clock.last or time.monotonic()) - run.t_start
        pc = run.pairer.counters
        steady = self.clock.steady_fps()
        return {
            "method": self.fuser.name,
            "fuser_settings": jsonable(self.fuser.settings()),
            "config": jsonable(asdict(self.config)),
            "pairing": run.plan.mode,
            "batch": run.plan.batch,
            "live": self.live,
            "output_fps": self.output_fps,
            "outputs": [str(s.path) for s in self.sinks],
            "sources": source_stats(run.readers, pc),
            "pairs": pc.pairs,
            "dropped_corrupt_pairs": pc.dropped_corrupt_pairs,
            "ended_first": ended_first(run.readers, pc.ended_first),
            "frames_out": self.clock.frames,
            "wall_s": round(wall, 4),
            "fps": round(self.clock.frames / wall, 3) if wall > 0 else None,
            "fps_steady": round(steady, 3) if steady else None,
            "latency_ms": self.timers.latency.summary_ms(),
            "stages_ms": stage_stats(run.readers, self.timers),
            "registration": self.registration.as_dict(),
            "temporal": self._temporal_result(),
            "interrupted": self.interrupted,
        }

    def _temporal_result(self) -> dict | None:
        if self.temporal is None:
            return None
        res = self.temporal.result()
        res["frames"] = self.clock.frames
        return res
