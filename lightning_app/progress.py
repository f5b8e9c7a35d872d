"""The progress bar the CLI adds to every run: Lightning's tqdm bar, redrawn by time rather than by step."""

import time
from collections.abc import Callable
from typing import Any

from lightning.pytorch.callbacks import TQDMProgressBar


class TimedProgressBar(TQDMProgressBar):
    """Lightning's ``TQDMProgressBar``, redrawn at most every ``interval`` seconds and at the end of each bar.

    Lightning's bar redraws every ``refresh_rate`` steps; a small model takes hundreds of steps a
    second, and a redraw (with its metrics, and W&B's copy of the console when that is on) costs
    more than one of its steps. By time, the cost is the same for every model and the bar moves as
    smoothly as the eye follows. A bar of its own in ``trainer.callbacks`` replaces this one
    (``lightning.pytorch.callbacks.TQDMProgressBar`` with ``refresh_rate: 1`` redraws every step).

    Args:
        interval: Seconds between two redraws of a bar.
    """

    def __init__(self, interval: float = 0.5) -> None:
        if interval < 0:
            raise ValueError(f"TimedProgressBar: interval must be 0 or more seconds, got {interval}")
        super().__init__(refresh_rate=1)
        self.interval = interval
        self._drawn = float("-inf")

    def _draw(self, bar, n: int, postfix: Callable[[], dict[str, Any]] | None = None) -> None:
        """Shows ``n`` steps done on ``bar`` (and ``postfix()``, computed only then) if a redraw is due."""
        if bar is None or bar.disable:
            return
        now = time.monotonic()
        if n != bar.total and now - self._drawn < self.interval:
            return
        self._drawn = now
        bar.n = n
        if postfix is not None:
            bar.set_postfix(postfix(), refresh=False)
        bar.refresh()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx: int) -> None:
        self._draw(self.train_progress_bar, batch_idx + 1, lambda: self.get_metrics(trainer, pl_module))

    def on_validation_batch_end(self, trainer, pl_module, outputs, batch, batch_idx: int, dataloader_idx: int = 0) -> None:
        self._draw(self.val_progress_bar, batch_idx + 1)

    def on_test_batch_end(self, trainer, pl_module, outputs, batch, batch_idx: int, dataloader_idx: int = 0) -> None:
        self._draw(self.test_progress_bar, batch_idx + 1)

    def on_predict_batch_end(self, trainer, pl_module, outputs, batch, batch_idx: int, dataloader_idx: int = 0) -> None:
        self._draw(self.predict_progress_bar, batch_idx + 1)
