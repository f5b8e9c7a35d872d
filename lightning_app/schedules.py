"""Learning-rate schedules that torch.optim lacks in a config-friendly form."""

import math

from torch.optim import Optimizer
from torch.optim.lr_scheduler import LRScheduler


class WarmupCosine(LRScheduler):
    """Linear warm-up to the optimizer's learning rate, then a cosine decay; stepped per optimizer step.

    With ``lr_interval: step`` in the config, ``total_steps`` may be left out: the CLI sets it
    to the trainer's ``estimated_stepping_batches`` (epochs x batches per epoch / accumulation),
    so the schedule follows ``max_epochs`` and ``batch_size`` without arithmetic in the config.

    Args:
        optimizer: The optimizer whose learning rates are scheduled (linked by the CLI).
        warmup_steps: Steps of linear warm-up from ``lr / warmup_steps`` to ``lr``; 0 for none.
        total_steps: Steps in the whole run; the decay reaches ``final_lr_ratio * lr`` there.
        final_lr_ratio: Learning rate at the end of the run, as a fraction of the peak.
        last_epoch: Index of the last step taken, -1 for a fresh start (PyTorch's name).
    """

    def __init__(
        self,
        optimizer: Optimizer,
        warmup_steps: int = 0,
        total_steps: int | None = None,
        final_lr_ratio: float = 0.0,
        last_epoch: int = -1,
    ) -> None:
        self.warmup_steps = warmup_steps
        self.total_steps = total_steps
        self.final_lr_ratio = final_lr_ratio
        super().__init__(optimizer, last_epoch)

    def lr_factor(self, step: int) -> float:
        """The fraction of the peak learning rate at ``step`` (0-based)."""
        if step < self.warmup_steps:
            return (step + 1) / self.warmup_steps
        if step == self.warmup_steps:  # the peak; also the value at construction, before total_steps is known
            return 1.0
        if self.total_steps is None:
            raise RuntimeError(
                "WarmupCosine.total_steps is not set: give lr_scheduler.init_args.total_steps, or train "
                "through `python -m lightning_app` with lr_interval: step, which sets it from the trainer"
            )
        progress = min(1.0, (step - self.warmup_steps) / max(1, self.total_steps - self.warmup_steps))
        return self.final_lr_ratio + (1.0 - self.final_lr_ratio) * 0.5 * (1.0 + math.cos(math.pi * progress))

    def get_lr(self) -> list[float]:
        factor = self.lr_factor(self.last_epoch)
        return [base_lr * factor for base_lr in self.base_lrs]
