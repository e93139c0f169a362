"""One check shared by the segmentation and detection e2e tests: a run killed and resumed ends where an
uninterrupted run ends, bit for bit."""

from __future__ import annotations

from typing import Any

import torch


def assert_resume_is_exact(full: Any, cfg: dict[str, Any], stop_at: int) -> None:
    """Train ``cfg`` to ``stop_at`` iterations, "kill" it, resume with ``resume="auto"`` and finish; the fuser's and
    the task network's tensors must equal those of ``full`` (an :class:`E2ETrainer` that ran ``cfg`` uninterrupted,
    with checkpoints written every iteration in ``cfg``)."""
    from downstream.e2e.trainer import E2ETrainer

    first = E2ETrainer(cfg)
    try:
        first.fit(stop_at=stop_at)
    finally:
        first.close()
    second = E2ETrainer(cfg, resume="auto")
    try:
        assert second.iteration == stop_at
        second.fit()
        for part in ("fuser", "task_net"):
            want, got = getattr(full, part).state_dict(), getattr(second, part).state_dict()
            for k, v in want.items():
                assert torch.equal(v, got[k]), f"{part}.{k}"
    finally:
        second.close()
