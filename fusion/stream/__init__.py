"""Streaming video fusion: paired infrared/visible streams fused live with bounded latency.

Quick use::

    from fusion.stream import run_stream
    stats = run_stream("visible.mp4", "infrared.mp4", "average", out="fused.mp4", batch=4)

Modules: ``config`` (:class:`StreamConfig`), ``fuser`` (:func:`build_stream_fuser`: device and precision onto
:class:`~fusion.fusers.spec.FuserSpec`), ``outputs`` (where a run may write), ``pipeline`` (:class:`StreamPipeline`),
``stats`` (timings and the stats dictionary), ``run`` (:func:`run_stream`, also behind ``pipelines/stream_fuse.py``).
Building blocks: sources (:func:`open_source`), readers and pairing, registration (:class:`Registration`,
:func:`estimate_homography`), sinks (:func:`open_sink`), the MJPEG viewer (:class:`MjpegServer`), perception overlays
(:class:`Perceiver`, :func:`register_perceiver`; the mmseg and YOLO overlays are plugins in
``downstream.perception``) and temporal-consistency measures
(:func:`temporal_consistency`).
"""

from fusion.stream.config import StreamConfig
from fusion.stream.fuser import build_stream_fuser
from fusion.stream.outputs import check_output_location
from fusion.stream.overlay import side_by_side
from fusion.stream.perceive import Perceiver, create_perceiver, list_perceivers, register_perceiver
from fusion.stream.pipeline import StreamPipeline
from fusion.stream.registration import (
    Registration,
    estimate_homography,
    load_homography,
    save_homography,
    warp_to,
)
from fusion.stream.run import run_stream
from fusion.stream.server import MjpegServer
from fusion.stream.sinks import FrameSink, ImageSequenceSink, VideoFileSink, open_sink
from fusion.stream.sources import (
    CORRUPT,
    FrameSource,
    ImageFolderSource,
    IteratorSource,
    VideoCaptureSource,
    open_source,
)
from fusion.stream.temporal import TemporalConsistency, temporal_consistency

__all__ = [
    "CORRUPT",
    "FrameSink",
    "FrameSource",
    "ImageFolderSource",
    "ImageSequenceSink",
    "IteratorSource",
    "MjpegServer",
    "Perceiver",
    "Registration",
    "StreamConfig",
    "StreamPipeline",
    "TemporalConsistency",
    "VideoCaptureSource",
    "VideoFileSink",
    "build_stream_fuser",
    "check_output_location",
    "create_perceiver",
    "list_perceivers",
    "register_perceiver",
    "estimate_homography",
    "load_homography",
    "open_sink",
    "open_source",
    "run_stream",
    "save_homography",
    "side_by_side",
    "temporal_consistency",
    "warp_to",
]
