"""``TqdmProgressHook``: a progress bar over training iterations (mmengine's logger only prints every N steps)."""

from __future__ import annotations

from mmengine.dist import is_main_process
from mmengine.hooks import Hook
from mmseg.registry import HOOKS
from tqdm import tqdm

__all__ = ["TqdmProgressHook"]


@HOOKS.register_module()
class TqdmProgressHook(Hook):
    """Show training progress (iterations, loss) with tqdm on the main process.

    Args:
        desc: bar label.
        leave: keep the bar on screen when training ends.
    """

    priority = "VERY_LOW"

    def __init__(self, desc: str = "train", leave: bool = True) -> None:
        self.desc = desc
        self.leave = leave
        self._bar: tqdm | None = None

    def before_train(self, runner) -> None:
        if is_main_process():
            self._bar = tqdm(total=runner.max_iters, initial=runner.iter, desc=self.desc, unit="it",
                             leave=self.leave, dynamic_ncols=True)

    def after_train_iter(self, runner, batch_idx: int, data_batch=None, outputs=None) -> None:
        if self._bar is None:
            return
        self._bar.update(1)
        if outputs and "loss" in outputs:
            self._bar.set_postfix(loss=f"{float(outputs['loss'].detach()):.3f}", refresh=False)

    def after_train(self, runner) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None
