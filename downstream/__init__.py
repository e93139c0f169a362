"""Perception on fused images: segmentation (mmsegmentation) and detection (ultralytics YOLO)."""
