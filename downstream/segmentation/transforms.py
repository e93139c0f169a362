"""``LoadRGBTImage``: the pipeline step that reads the image a segmenter sees (visible, infrared or fused).

It replaces mmseg's ``LoadImageFromFile`` at the head of a pipeline over
:class:`~downstream.segmentation.datasets.MFNetDataset` / ``FMBDataset``. The output follows mmseg's convention:
``results["img"]`` is ``uint8`` ``(H, W, 3)`` in **BGR** order (the usual ``SegDataPreProcessor(bgr_to_rgb=True)``
then hands RGB to the network), with ``img_shape`` and ``ori_shape`` set.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from mmcv.transforms import BaseTransform
from mmseg.registry import TRANSFORMS
from PIL import Image

from fusion.errors import InputError
from fusion.fusers import Fuser, create_fuser
from fusion.utils.io import read_image

__all__ = ["LoadRGBTImage", "read_rgbt_sources"]


def read_rgbt_sources(info: dict[str, Any]) -> tuple[np.ndarray, np.ndarray]:
    """Visible and infrared images of one data info as ``uint8`` ``(H, W, 3)`` RGB (infrared replicated).

    ``info`` holds ``vis_path``, ``ir_path`` and ``ir_channel`` (the thermal channel index of a multi-channel file,
    as in MFNet's 4-channel PNGs, else None).
    """
    channel = info.get("ir_channel")
    if channel is not None:
        rgbt = read_image(info["vis_path"], mode="unchanged")
        if rgbt.ndim != 3 or rgbt.shape[2] <= channel:
            raise InputError(f"{info['vis_path']}: expected an RGB-T image with a thermal channel {channel}, "
                             f"got shape {rgbt.shape}")
        vis = np.ascontiguousarray(rgbt[:, :, :3])
        ir = rgbt[:, :, channel]
    else:
        vis = read_image(info["vis_path"], mode="rgb")
        ir = read_image(info["ir_path"], mode="gray")
        if vis.shape[:2] != ir.shape[:2]:
            raise InputError(f"{info['ir_path']}: infrared size {ir.shape[:2]} differs from the visible image "
                             f"{vis.shape[:2]}")
    return vis, np.repeat(ir[:, :, None], 3, axis=2)


def _label_size(path: str) -> tuple[int, int]:
    with Image.open(path) as im:  # reads the header only
        return im.size[1], im.size[0]


@TRANSFORMS.register_module()
class LoadRGBTImage(BaseTransform):
    """Load the image selected by the data info's ``modality`` (``vis``, ``ir`` or ``fused``).

    Fused images come from ``fused_path`` (checked to match the label size) or, when the dataset was given a
    ``fuser`` spec, are computed here with :func:`fusion.fusers.create_fuser` (one fuser per process, reused).

    Args:
        to_float32: return ``float32`` instead of ``uint8`` (as mmseg's ``LoadImageFromFile``).
    """

    def __init__(self, to_float32: bool = False) -> None:
        self.to_float32 = to_float32
        self._fusers: dict[str, Fuser] = {}

    def _fuser(self, spec: str, settings: dict[str, Any]) -> Fuser:
        key = f"{spec}|{sorted(settings.items())}"
        if key not in self._fusers:
            self._fusers[key] = create_fuser(spec, **settings)
        return self._fusers[key]

    def transform(self, results: dict) -> dict:
        modality = results.get("modality", "vis")
        if modality == "fused" and results.get("fused_path"):
            rgb = read_image(results["fused_path"], mode="rgb")
            expected = _label_size(results["seg_map_path"]) if results.get("seg_map_path") else rgb.shape[:2]
            if rgb.shape[:2] != expected:
                raise InputError(f"{results['fused_path']}: fused image size {rgb.shape[:2]} differs from the "
                                 f"label size {expected}")
        elif modality in ("vis", "ir", "fused"):
            vis, ir = read_rgbt_sources(results)
            if modality == "vis":
                rgb = vis
            elif modality == "ir":
                rgb = ir
            else:
                if not results.get("fuser"):
                    raise InputError(f"{results.get('img_path')}: modality 'fused' without fused_path or fuser")
                rgb = self._fuser(results["fuser"], results.get("fuser_settings") or {}).fuse(vis, ir, "vif")
        else:
            raise InputError(f"{results.get('img_path')}: unknown modality {modality!r}")
        img = np.ascontiguousarray(rgb[:, :, ::-1])
        if self.to_float32:
            img = img.astype(np.float32)
        results["img"] = img
        results["img_shape"] = img.shape[:2]
        results["ori_shape"] = img.shape[:2]
        return results

    def __repr__(self) -> str:
        return f"{type(self).__name__}(to_float32={self.to_float32})"
