"""The fuser of a stream: a :class:`~fusion.fusers.spec.FuserSpec` built with the stream's device and precision.

Building is :meth:`FuserSpec.build <fusion.fusers.spec.FuserSpec.build>` (the one fuser builder of the project): the
runtime options ``device`` and ``amp_dtype`` (the TC-MoA fusers' name for autocast precision) reach only the fusers
whose factory declares them. This module only turns ``--device`` / ``--precision`` into those options.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from fusion.errors import ConfigError
from fusion.fusers.base import Fuser, accepted_options
from fusion.fusers.spec import FuserSpec
from fusion.utils.device import resolve_device
from fusion.utils.logging import get_logger

__all__ = ["PRECISIONS", "build_stream_fuser"]

log = get_logger(__name__)

PRECISIONS = ("fp32", "bf16", "fp16")


def build_stream_fuser(
    method: str | FuserSpec | Fuser,
    *,
    device: str = "auto",
    precision: str = "fp32",
    settings: Mapping[str, Any] | None = None,
) -> Fuser:
    """The fuser for ``method``, with ``device`` and the precision (as ``amp_dtype``) where the fuser takes them.

    Classical fusers take neither; TC-MoA fusers take both. Explicit ``settings`` win over these runtime options.
    A ready :class:`Fuser` is returned as it is.

    Raises:
        ConfigError: an unknown method, precision or device, or a setting the method does not take.
    """
    if isinstance(method, Fuser):
        return method
    if precision not in PRECISIONS:
        raise ConfigError(f"precision={precision!r}: expected one of {', '.join(PRECISIONS)}")
    dev = resolve_device(device)
    if precision != "fp32" and dev.type != "cuda":
        log.warning("precision %s requested on %s; fusers usually ignore it off the GPU", precision, dev)
    spec = FuserSpec.parse(method, settings)
    runtime: dict[str, Any] = {"device": str(dev)}
    if precision != "fp32" and "amp_dtype" not in spec.options:
        runtime["amp_dtype"] = precision
        if not accepted_options(spec.name, {"amp_dtype": precision}):
            log.warning("fuser %s takes no precision setting; running at its default precision", method)
    return spec.build(**runtime)
