"""What the segmentation and detection e2e tests share: one torch thread per module, the fast codec fuser, and the
check that a run killed and resumed ends where an uninterrupted run ends, bit for bit."""

from __future__ import annotations

from typing import Any

import pytest
import torch

CODEC = {"init": "codec", "overrides": {}, "freeze": ["FusionLayer.*.conv1.weight"]}  # blocks skipped: fast


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """On a shared CPU, torch's extra threads mostly wait on each other (measured: 6x slower under load)."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


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


def e2e_config(root: Any, out: Any, *, iters: int, base: dict[str, Any], **sections: Any) -> dict[str, Any]:
    """A tiny, fast, deterministic e2e config on ``root``: the shared training/logging settings, then ``base`` (the
    test file's own sections), then ``sections`` (one test's changes), each merged section by section."""
    from downstream.e2e.config import load_config

    cfg: dict[str, Any] = {
        "data": {"root": str(root), "batch_size": 2, "eval_batch_size": 2},
        "train": {"iters": iters, "seg_warmup_iters": 1, "warmup_iters": 0, "lr_fusion": 1e-3, "lr_seg": 1e-3,
                  "device": "cpu", "seed": 0, "deterministic": True, "threads": 1},
        "checkpoint": {"every_iters": None, "keep_last": 2},
        "log": {"every_iters": 1, "progress": False, "tensorboard": False},
        "output_dir": str(out),
    }
    for layer in (base, sections):
        for key, value in layer.items():
            if isinstance(value, dict) and isinstance(cfg.get(key), dict):
                cfg[key] = {**cfg[key], **value}
            else:
                cfg[key] = value
    return load_config(None, cfg)
