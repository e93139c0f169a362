"""Colour output for any fuser: fuse the luminance, keep the chroma of the colour source(s).

``ColorFuser(inner, mode="ycbcr")`` converts both sources to YCbCr (:mod:`fusion.data.color`, BT.601 full range),
gives the inner fuser the two luminance planes replicated to three channels, takes the luminance (BT.601 Y) of its
output and recombines it with the chroma chosen per task:

====== ==================== ====================================================================================
task   chroma (``auto``)    why
====== ==================== ====================================================================================
vif    source a             a is the visible (colour) image; infrared carries no colour. Harvard medical pairs
                            put the colour PET/SPECT image in a, so its colour map is kept.
mef    weighted a and b     both are colour shots of one scene; each chroma weighted by ``|C - 128|`` (DeepFuse)
mff    weighted a and b     same rule; both sources have the same colours, so this is close to either one
====== ==================== ====================================================================================

``chroma`` may also be ``"a"``, ``"b"`` or ``"weighted"`` for every task. ``mode="rgb"`` passes the three channels
through unchanged, which is what the official TC-MoA does (RGB in, RGB out).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from fusion.data.color import fuse_chroma, luma_to_rgb, merge_luma_chroma, rgb_to_ycbcr, split_luma_chroma
from fusion.errors import ConfigError, InputError
from fusion.fusers.base import Fuser, check_pair

__all__ = ["ColorFuser", "COLOR_MODES", "CHROMA_SOURCES", "chroma_source_for"]

COLOR_MODES: tuple[str, ...] = ("rgb", "ycbcr")
CHROMA_SOURCES: tuple[str, ...] = ("auto", "a", "b", "weighted")


def chroma_source_for(task: str, chroma: str = "auto") -> str:
    """Resolve ``chroma="auto"`` for ``task``: ``"a"`` for vif, ``"weighted"`` for mef and mff."""
    if chroma != "auto":
        return chroma
    return "a" if task == "vif" else "weighted"


class ColorFuser(Fuser):
    """Wrap ``inner`` so that it fuses luminance only and the output keeps the sources' colour.

    Args:
        inner: any fuser (``uint8`` ``(H, W, 3)`` in and out).
        mode: ``"ycbcr"`` (luminance fusion, chroma kept) or ``"rgb"`` (pass-through, the official behaviour).
        chroma: ``"auto"`` (per task, see module doc), ``"a"``, ``"b"`` or ``"weighted"``.
    """

    def __init__(self, inner: Fuser, mode: str = "ycbcr", chroma: str = "auto") -> None:
        if not isinstance(inner, Fuser):
            raise ConfigError(f"ColorFuser: inner must be a Fuser, got {type(inner).__name__}")
        if mode not in COLOR_MODES:
            raise ConfigError(f"color mode {mode!r}: expected one of {', '.join(COLOR_MODES)}")
        if chroma not in CHROMA_SOURCES:
            raise ConfigError(f"chroma {chroma!r}: expected one of {', '.join(CHROMA_SOURCES)}")
        self.inner = inner
        self.mode = mode
        self.chroma = chroma
        self.name = inner.name
        self.tasks = inner.tasks

    def settings(self) -> dict[str, Any]:
        return {**self.inner.settings(), "color": self.mode, "chroma": self.chroma}

    def fuse(self, a: np.ndarray, b: np.ndarray, task: str = "vif") -> np.ndarray:
        return self.fuse_batch([a], [b], task)[0]

    def fuse_batch(self, a: Sequence[np.ndarray], b: Sequence[np.ndarray], task: str = "vif") -> list[np.ndarray]:
        if len(a) != len(b):
            raise InputError(f"{self.name}: got {len(a)} a-images but {len(b)} b-images")
        if self.mode == "rgb":
            return self.inner.fuse_batch(a, b, task)
        self.check_task(task)
        source = chroma_source_for(task, self.chroma)
        lumas_a, lumas_b, chromas = [], [], []
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            check_pair(x, y, f"{self.name} pair {i}")
            ya, ca = split_luma_chroma(x)
            yb, cb = split_luma_chroma(y)
            lumas_a.append(luma_to_rgb(ya))
            lumas_b.append(luma_to_rgb(yb))
            chromas.append(ca if source == "a" else cb if source == "b" else fuse_chroma([ca, cb]))
        fused = self.inner.fuse_batch(lumas_a, lumas_b, task)
        out = []
        for f, c in zip(fused, chromas, strict=True):
            if f.shape[:2] != c.shape[:2]:
                raise InputError(
                    f"{self.name}: fused image {f.shape[:2]} differs in size from the sources {c.shape[:2]}"
                )
            # The inner output may be slightly coloured (TC-MoA's decoder); its BT.601 luma is the fused intensity.
            out.append(merge_luma_chroma(rgb_to_ycbcr(f)[..., 0], c))
        return out
