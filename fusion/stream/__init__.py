"""Streaming video fusion: paired infrared/visible streams fused live with bounded latency.

Quick use::

    from fusion.stream import run_stream
    stats = run_stream("visible.mp4", "infrared.mp4", "average", out="fused.mp4")

Building blocks: sources (:func:`open_source`), readers and pairing, registration (:class:`Registration`,
:func:`estimate_homography`), sinks (:func:`open_sink`), the MJPEG viewer (:class:`MjpegServer`), perception overlays
(:class:`Perceiver`, :func:`register_perceiver`; the mmseg and YOLO overlays are plugins in
``downstream.perception``) and temporal-consistency measures
(:func:`temporal_consistency`).
"""

from fusion.stream.overlay import side_by_side
from fusion.stream.perceive import Perceiver, create_perceiver, list_perceivers, register_perceiver
from fusion.stream.pipeline import StreamConfig, StreamPipeline, build_fuser, check_output_location, run_stream
from fusion.stream.registration import (
    Registration,
    estimate_homography,
    load_homography,
    save_homography,
    warp_to,
)
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
    "build_fuser",
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
