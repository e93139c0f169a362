"""Entry points: :func:`evaluate` (one triple), :func:`evaluate_batch` (many) and :class:`FusionMetric`
(mmengine-style ``process`` / ``compute_metrics`` accumulation over a dataset)."""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from fusion.errors import InputError
from fusion.metrics._ops import RGB2GRAY_WEIGHTS, opencv_gray, rgb2gray, use_compiled
from fusion.metrics._parallel import MIN_PARALLEL_PIXELS, metric_threads, parallel_map
from fusion.metrics.registry import MetricDef, Profile, Sample, get_profile
from fusion.utils.device import resolve_device

__all__ = ["evaluate", "evaluate_batch", "prepare_sample", "FusionMetric"]


def _check(img: Any, role: str) -> np.ndarray:
    if not isinstance(img, np.ndarray):
        raise InputError(f"{role}: expected a numpy uint8 array of shape (H, W) or (H, W, 3), got {type(img).__name__}")
    if img.dtype != np.uint8:
        raise InputError(f"{role}: expected dtype uint8 (an image as read from a file), got {img.dtype}")
    if img.ndim == 3 and img.shape[2] == 1:
        img = img[:, :, 0]
    if img.ndim == 3 and img.shape[2] == 4:
        if not bool((img[:, :, 3] == 255).all()):
            raise InputError(f"{role}: has a transparent alpha channel; metrics take (H, W) or (H, W, 3) images "
                             "(an opaque RGBA PNG is read as RGB)")
        img = img[:, :, :3]
    if img.ndim not in (2, 3) or (img.ndim == 3 and img.shape[2] != 3):
        raise InputError(f"{role}: expected shape (H, W) or (H, W, 3), got {img.shape}")
    if min(img.shape[:2]) < MIN_SIDE:
        raise InputError(f"{role}: image {img.shape[0]}x{img.shape[1]} is too small "
                         f"(metrics need at least {MIN_SIDE}x{MIN_SIDE})")
    return img


def _to_planes(img: np.ndarray, profile: Profile, channels: int) -> np.ndarray:
    """(H, W[, 3]) uint8 -> (C, H, W) float64 following the profile's colour convention."""
    if profile.color == "gray":
        g = rgb2gray(img) if img.ndim == 3 else img
        return g[None].astype(np.float64)
    if profile.color == "opencv_gray":
        return opencv_gray(img)[None].astype(np.float64)
    if channels == 1:
        g = rgb2gray(img) if img.ndim == 3 else img
        return g[None].astype(np.float64)
    if img.ndim == 2:
        return np.repeat(img[None], 3, axis=0).astype(np.float64)
    # one contiguous plane per channel: every metric walks planes, and channel-last planes were 3x strided
    return np.ascontiguousarray(np.moveaxis(img, 2, 0), dtype=np.float64)


def prepare_sample(
    fused: Sequence[np.ndarray],
    ir: Sequence[np.ndarray],
    vis: Sequence[np.ndarray],
    profile: Profile,
    device: torch.device,
) -> Sample:
    """Stack same-size triples into a :class:`Sample` ``(N, C, H, W)`` for ``profile``."""
    fs, irs, viss, exact_gray = [], [], [], []
    shape = None
    for i, (f, a, b) in enumerate(zip(fused, ir, vis, strict=True)):
        f = _check(f, f"fused[{i}]")
        a = _check(a, f"ir[{i}]")
        b = _check(b, f"vis[{i}]")
        if not (f.shape[:2] == a.shape[:2] == b.shape[:2]):
            raise InputError(
                f"triple {i}: sizes differ (fused {f.shape[:2]}, ir {a.shape[:2]}, vis {b.shape[:2]}); "
                "metrics need registered images of one size"
            )
        if shape is not None and f.shape[:2] != shape:
            raise InputError(f"triple {i}: size {f.shape[:2]} differs from the batch's {shape}")
        shape = f.shape[:2]
        # Per-channel profiles follow the fused image: a grey fused image is scored on grey sources.
        channels = 3 if f.ndim == 3 else 1
        if profile.color == "mefb" and f.ndim == 3 and a.ndim == 2 and b.ndim == 2:
            # MEFB scores a colour result of grey sources on its first channel (AG on its unrounded grey).
            exact_gray.append(f.astype(np.float64) @ np.asarray(RGB2GRAY_WEIGHTS))
            f = np.ascontiguousarray(f[:, :, 0])
            channels = 1
        else:
            exact_gray.append(None)
        fs.append(_to_planes(f, profile, channels))
        irs.append(_to_planes(a, profile, channels))
        viss.append(_to_planes(b, profile, channels))
    if not fs:
        raise InputError("no images to evaluate")
    cs = {x.shape[0] for x in fs}
    if len(cs) > 1:
        raise InputError("a batch mixes grey and colour fused images; evaluate them separately")

    def t(xs: list[np.ndarray]) -> torch.Tensor:
        return torch.as_tensor(np.stack(xs), dtype=torch.float64, device=device)

    extra = {}
    if any(g is not None for g in exact_gray):
        extra["fused_gray_exact"] = t([g if g is not None else x[0] for g, x in zip(exact_gray, fs)])[:, None]
    return Sample(fused=t(fs), ir=t(irs), vis=t(viss), extra=extra)


#: Smallest image side (pixels) some metrics work on, measured: their multi-scale pyramids (4-5 scales of
#: Gaussian windows) run out of pixels below it. Every other metric needs :data:`MIN_SIDE`.
MIN_SIDE = 16
MIN_SIDE_BY_METRIC = {
    ("tang", "VIF"): 41, ("tang", "MS_SSIM"): 41,
    ("tang_legacy", "VIF"): 41, ("tang_legacy", "MS_SSIM"): 41,
    ("mefb", "VIF"): 41, ("mefb", "MEF_SSIM"): 41,
}


def _check_min_side(fused: Sequence[np.ndarray], profile: str, names: Sequence[str]) -> None:
    need = {n: MIN_SIDE_BY_METRIC.get((profile, n), MIN_SIDE) for n in names}
    for i, f in enumerate(fused):
        side = min(getattr(f, "shape", (0, 0))[:2] or (0,))
        small = [n for n, k in need.items() if side < k]
        if small and side >= MIN_SIDE:
            k = max(need[n] for n in small)
            raise InputError(f"fused[{i}]: {f.shape[0]}x{f.shape[1]} is too small for {', '.join(small)} "
                             f"({profile} needs at least {k} px per side for them; other metrics need {MIN_SIDE})")


def _run_metric(d: MetricDef, sample: Sample, profile: str) -> list[float]:
    try:
        return d.fn(sample).detach().cpu().tolist()
    except (ValueError, RuntimeError) as exc:
        h, w = sample.fused.shape[-2:]
        raise InputError(f"metric {d.name} ({profile}) failed on {h}x{w} images: {exc}") from None


# Seconds the last run of each (profile, metric) took in this process: the side-by-side schedule starts the longest
# first. Only the order depends on it, never a value.
_LAST_COST: dict[tuple[str, str], float] = {}


def _side_by_side(sample: Sample, defs: Sequence[MetricDef]) -> bool:
    """Whether the metrics of one batch run side by side on the metric threads.

    A metric's own parallel sections still share out (:func:`fusion.metrics._parallel.parallel_map`: the pool
    thread, once out of metrics, picks up queued items of the sections the calling thread runs). Measured at 640x480
    on 2 cores against metrics one after another (each using both threads in its own sections only), best of 7 in
    the same session: ``vifb`` 158 -> 95-105 ms, ``tang`` 47-52 -> 32-34 ms, ``cddfuse`` 30-39 -> 22-31 ms."""
    if len(defs) < 2 or metric_threads() < 2:
        return False
    if not use_compiled(sample.fused):  # other devices, and torch_reference() (a per-thread setting)
        return False
    return sample.fused.shape[-1] * sample.fused.shape[-2] >= MIN_PARALLEL_PIXELS


def _run_metrics(prof: Profile, sample: Sample, defs: Sequence[MetricDef]) -> list[list[float]]:
    """The values of every metric in ``defs`` (in that order) for one batch."""

    def timed(d: MetricDef) -> tuple[list[float] | None, BaseException | None]:
        start = time.perf_counter()
        try:
            with torch.no_grad():  # per thread in torch
                out = _run_metric(d, sample, prof.name)
        except Exception as exc:  # re-raised below in metric order, as a serial run would
            return None, exc
        _LAST_COST[(prof.name, d.name)] = time.perf_counter() - start
        return out, None

    if _side_by_side(sample, defs):
        order = sorted(range(len(defs)), key=lambda k: -_LAST_COST.get((prof.name, defs[k].name), 0.0))
        got = dict(zip(order, parallel_map(lambda k: timed(defs[k]), order), strict=True))
        results = [got[k] for k in range(len(defs))]
    else:
        results = []
        for d in defs:
            results.append(timed(d))
            if results[-1][1] is not None:
                break
    for _, exc in results:
        if exc is not None:
            raise exc
    return [out for out, _ in results]


def evaluate_batch(
    fused: Sequence[np.ndarray],
    ir: Sequence[np.ndarray],
    vis: Sequence[np.ndarray],
    profile: str | Profile = "tang",
    metrics: Sequence[str] | None = None,
    device: str | torch.device = "cpu",
    max_batch_pixels: int = 2_000_000,
) -> list[dict[str, float]]:
    """Score several triples; triples of equal size (and colour) are computed as tensor batches of at most
    ``max_batch_pixels`` pixels (channels included).

    Returns one ``{metric: value}`` dict per triple, in input order.
    """
    prof = get_profile(profile)
    defs = prof.select(list(metrics) if metrics is not None else None)
    _check_min_side(fused, prof.name, [d.name for d in defs])
    dev = resolve_device(device)
    if not (len(fused) == len(ir) == len(vis)):
        raise InputError(f"got {len(fused)} fused, {len(ir)} ir and {len(vis)} vis images")
    groups: dict[tuple, list[int]] = {}
    for i, f in enumerate(fused):
        key = (getattr(f, "shape", (None,))[:2], getattr(f, "ndim", 0) == 3)
        members = groups.setdefault(key, [])
        members.append(i)
    # Bound the memory of one tensor batch (several metrics hold a dozen float64 maps of the batch at once).
    chunks: list[list[int]] = []
    for key, idx in groups.items():
        h, w = key[0] if len(key[0]) == 2 else (1, 1)
        per = max(1, int(max_batch_pixels // max(1, h * w * (3 if key[1] else 1))))
        chunks.extend(idx[i : i + per] for i in range(0, len(idx), per))
    results: list[dict[str, float]] = [{} for _ in fused]
    with torch.no_grad():
        for idx in chunks:
            sample = prepare_sample([fused[i] for i in idx], [ir[i] for i in idx], [vis[i] for i in idx], prof, dev)
            for d, values in zip(defs, _run_metrics(prof, sample, defs), strict=True):
                for i, v in zip(idx, values, strict=True):
                    results[i][d.name] = float(v)
    return results


def evaluate(
    fused: np.ndarray,
    ir: np.ndarray,
    vis: np.ndarray,
    profile: str | Profile = "tang",
    metrics: Sequence[str] | None = None,
    device: str | torch.device = "cpu",
) -> dict[str, float]:
    """Score one fused image against its two sources.

    Args:
        fused, ir, vis: ``uint8`` arrays as read from files, ``(H, W)`` or ``(H, W, 3)``, same height and width
            (an opaque RGBA array is taken as RGB; transparency is refused). At least 16 px per side, 41 for the
            multi-scale metrics (VIF and MS-SSIM of ``tang``/``tang_legacy``, VIF and MEF-SSIM of ``mefb``).
            ``ir``/``vis`` are simply the two sources whatever the task.
        profile: conventions to follow (``tang``, ``tang_legacy``, ``vifb``, ``mefb``; see
            :func:`fusion.metrics.list_profiles`).
        metrics: metric names (case-insensitive); ``None`` computes the profile's default set.
        device: ``cpu``, ``cuda``, ``cuda:N`` or ``auto``.

    Returns:
        ``{metric name: value}`` in the requested order.
    """
    return evaluate_batch([fused], [ir], [vis], profile=profile, metrics=metrics, device=device)[0]


class FusionMetric:
    """Accumulate metrics over a dataset, mmengine ``BaseMetric`` style.

    ``process(data_batch, data_samples)`` takes dicts with ``fused``, ``ir``, ``vis`` (uint8 arrays) and optionally
    ``name``; ``compute_metrics(results)`` returns the per-metric mean over all processed samples (NaN values are
    skipped and counted in ``<metric>_nan``). ``evaluate(size)`` is ``compute_metrics(self.results)``.
    """

    default_prefix = "fusion"

    def __init__(
        self,
        profile: str = "tang",
        metrics: Sequence[str] | None = None,
        device: str = "cpu",
        prefix: str | None = None,
    ) -> None:
        self.profile = get_profile(profile)
        self.metric_names = [d.name for d in self.profile.select(list(metrics) if metrics is not None else None)]
        self.device = device
        self.prefix = prefix or self.default_prefix
        self.results: list[dict[str, Any]] = []

    def process(self, data_batch: Any, data_samples: Sequence[dict[str, Any]]) -> None:
        """Score a batch of samples and store one result dict per sample."""
        vals = evaluate_batch(
            [s["fused"] for s in data_samples],
            [s["ir"] for s in data_samples],
            [s["vis"] for s in data_samples],
            profile=self.profile,
            metrics=self.metric_names,
            device=self.device,
        )
        for s, v in zip(data_samples, vals, strict=True):
            self.results.append({"name": s.get("name"), **v})

    def compute_metrics(self, results: list[dict[str, Any]]) -> dict[str, float]:
        out: dict[str, float] = {}
        for m in self.metric_names:
            xs = [r[m] for r in results if m in r and not math.isnan(r[m])]
            out[m] = float(np.mean(xs)) if xs else float("nan")
            nan = sum(1 for r in results if m in r and math.isnan(r[m]))
            if nan:
                out[f"{m}_nan"] = float(nan)
        return out

    def evaluate(self, size: int | None = None) -> dict[str, float]:
        """Summarise everything processed so far (``size`` is accepted for mmengine compatibility)."""
        res = self.compute_metrics(self.results)
        self.results = []
        return {f"{self.prefix}/{k}": v for k, v in res.items()}
