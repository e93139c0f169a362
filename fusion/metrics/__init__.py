"""Image-fusion quality metrics with named profiles that reproduce the field's reference toolboxes.

>>> from fusion.metrics import evaluate
>>> evaluate(fused, ir, vis, profile="tang")            # doctest: +SKIP
{'EN': 6.9, 'SD': 40.1, ...}

Every number belongs to a *profile* (``tang``, ``tang_legacy``, ``vifb``, ``mefb``): the same metric name is computed
differently by different toolboxes, and published tables can only be compared within one profile.
"""

from fusion.metrics.evaluate import FusionMetric, evaluate, evaluate_batch, prepare_sample
from fusion.metrics.registry import MetricDef, Profile, Sample, get_profile, list_profiles

__all__ = [
    "FusionMetric",
    "MetricDef",
    "Profile",
    "Sample",
    "evaluate",
    "evaluate_batch",
    "get_profile",
    "list_metrics",
    "list_profiles",
    "prepare_sample",
]


def list_metrics(profile: str = "tang") -> list[str]:
    """Names of the metrics a profile defines."""
    return list(get_profile(profile).metrics)
