"""Detection downstream: LLVIP/M3FD/MSRS labels, per-input YOLO datasets, ultralytics training (offline) and
the comparison behind ``pipelines/det_eval.py``.

Importing this package does not import ultralytics; :mod:`downstream.detection.yolo` does, after applying the
offline setup.
"""

from downstream.detection.datasets import (
    DetDataset,
    DetSample,
    load_detection_dataset,
    load_llvip,
    load_m3fd,
    load_msrs,
)
from downstream.detection.labels import (
    LLVIP_CLASSES,
    M3FD_CLASSES,
    MSRS_DET_CLASSES,
    ImageLabels,
    read_coco_json,
    read_voc_xml,
    read_yolo_txt,
    write_yolo_txt,
    yolo_lines,
)
from downstream.detection.metrics import Detections, DetMetrics, evaluate_detections, log_average_miss_rate

__all__ = [
    "LLVIP_CLASSES",
    "M3FD_CLASSES",
    "MSRS_DET_CLASSES",
    "DetDataset",
    "DetMetrics",
    "DetSample",
    "Detections",
    "ImageLabels",
    "evaluate_detections",
    "load_detection_dataset",
    "load_llvip",
    "load_m3fd",
    "load_msrs",
    "log_average_miss_rate",
    "read_coco_json",
    "read_voc_xml",
    "read_yolo_txt",
    "write_yolo_txt",
    "yolo_lines",
]
