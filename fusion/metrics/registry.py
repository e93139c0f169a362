"""Metric and profile registries.

A *profile* is a named set of conventions (colour handling, value scale, logarithm base, how the two sources are
combined, and the quirks of one reference toolbox). Each profile maps metric names to :class:`MetricDef` objects;
the same name (say ``SD``) can therefore mean different computations in different profiles, exactly as it does in
the published tables, and every result must name its profile.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import torch

from fusion.errors import ConfigError
from fusion.registry import Registry

__all__ = ["Sample", "MetricDef", "Profile", "PROFILES", "register_profile", "get_profile", "list_profiles"]


@dataclass
class Sample:
    """A batch of image triples prepared for one profile.

    ``fused``, ``ir`` and ``vis`` are ``float64`` tensors ``(N, C, H, W)`` holding integer grey levels 0..255
    (``C`` is 1 for grey profiles, 1 or 3 for per-channel profiles). ``ir`` and ``vis`` are simply the two sources,
    whatever the task (for multi-exposure/multi-focus pass the two exposures/focal planes).
    """

    fused: torch.Tensor
    ir: torch.Tensor
    vis: torch.Tensor
    extra: dict[str, torch.Tensor] = field(default_factory=dict)

    @property
    def channels(self) -> int:
        return self.fused.shape[1]

    def planes(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The three images as ``(N*C, H, W)`` batches (channels folded into the batch)."""
        n, c, h, w = self.fused.shape
        return (self.fused.reshape(n * c, h, w), self.ir.reshape(n * c, h, w), self.vis.reshape(n * c, h, w))


@dataclass(frozen=True)
class MetricDef:
    """One metric as a profile computes it: ``fn(sample) -> (N,)``."""

    name: str
    fn: Callable[[Sample], torch.Tensor]
    higher_is_better: bool = True
    doc: str = ""


@dataclass(frozen=True)
class Profile:
    """A documented set of conventions and the metrics computed under it."""

    name: str
    description: str
    color: str  # "gray": MATLAB rgb2gray first; "channels": per colour channel, then averaged; "mefb": as channels,
    # but grey sources with a colour fused image use the fused image's first channel (MEFB's wrappers do this)
    metrics: dict[str, MetricDef] = field(default_factory=dict)
    default: tuple[str, ...] = ()
    conventions: tuple[str, ...] = ()

    def select(self, names: list[str] | tuple[str, ...] | None) -> list[MetricDef]:
        """The requested metrics (``None``: the profile's default set), in the requested order."""
        if names is None:
            names = self.default or tuple(self.metrics)
        out = []
        for n in names:
            key = self.resolve(n)
            out.append(self.metrics[key])
        return out

    def resolve(self, name: str) -> str:
        if name in self.metrics:
            return name
        low = {k.lower(): k for k in self.metrics}
        if name.lower() in low:
            return low[name.lower()]
        raise ConfigError(
            f"metric {name!r} is not defined in profile {self.name!r} (available: {', '.join(self.metrics)})"
        )


# The built-in profiles (fusion.metrics.profiles) are a provider, imported on the first lookup, as fusers are:
# this module never imports them by name, and they import only this module.
PROFILES: Registry[Profile] = Registry("metric profile", providers=("fusion.metrics.profiles",))


def register_profile(profile: Profile) -> Profile:
    """Register ``profile`` under its name (twice is an error)."""
    return PROFILES.register(profile.name)(profile)


def get_profile(name: str | Profile) -> Profile:
    """Look up a profile by name."""
    if isinstance(name, Profile):
        return name
    return PROFILES.get(name)


def list_profiles() -> list[str]:
    """Names of the registered profiles."""
    return PROFILES.names()
