"""The learning-rate schedule the configs use, sized by the run rather than by hand.

LightningCLI builds the scheduler before the trainer exists, and torch's schedulers need their
length then (``OneCycleLR(total_steps)``, ``CosineAnnealingLR(T_max)``). ``WarmupCosine`` can be
built without it: ``fit_to_run`` sets it once the trainer knows the run, so a schedule follows
``max_epochs``, ``max_steps``, ``batch_size`` and the device count with no arithmetic in a config.
"""

import math

import lightning as L
from torch.optim import Optimizer
from torch.optim.lr_scheduler import LRScheduler, OneCycleLR


class WarmupCosine(LRScheduler):
    """Linear warm-up to the optimizer's learning rate, then a half cosine down to a floor.

    The last step of the run (``total_steps - 1``) uses ``final_lr_ratio * lr``, as torch's
    ``OneCycleLR`` does. Stepped per optimizer step with ``lr_interval: step`` in the config
    (the usual choice), per epoch with ``lr_interval: epoch``.

    Args:
        optimizer: The optimizer whose learning rates are scheduled (linked by the CLI).
        warmup_fraction: Fraction of the run spent warming up from ``lr / warmup_steps`` to ``lr``.
        warmup_steps: Steps of warm-up, instead of ``warmup_fraction``; None: from the fraction.
        total_steps: Steps (or epochs) in the whole run. None: the CLI sets it from the trainer
            (``estimated_stepping_batches`` per step, ``max_epochs`` per epoch).
        final_lr_ratio: Learning rate of the last step, as a fraction of the peak.
        last_epoch: Index of the last step taken, -1 for a fresh start (PyTorch's name).
    """

    def __init__(
        self,
        optimizer: Optimizer,
        warmup_fraction: float = 0.0,
        warmup_steps: int | None = None,
        total_steps: int | None = None,
        final_lr_ratio: float = 0.0,
        last_epoch: int = -1,
    ) -> None:
        if not 0.0 <= warmup_fraction < 1.0:
            raise ValueError(f"warmup_fraction={warmup_fraction} must be in [0, 1): the part of the run spent warming up")
        for name, value in (("warmup_steps", warmup_steps), ("total_steps", total_steps)):
            if value is not None and value < (0 if name == "warmup_steps" else 1):
                raise ValueError(f"{name}={value} is out of range; leave it out to size the schedule by the run")
        if final_lr_ratio < 0.0:
            raise ValueError(f"final_lr_ratio={final_lr_ratio} must be >= 0")
        self.warmup_fraction, self.warmup_steps = warmup_fraction, warmup_steps
        self.total_steps, self.final_lr_ratio = total_steps, final_lr_ratio
        self.sized_by_run = False
        super().__init__(optimizer, last_epoch)

    def warmup(self) -> int:
        """Steps of warm-up: ``warmup_steps`` when given, else ``warmup_fraction`` of the run."""
        if self.warmup_steps is not None:
            return self.warmup_steps
        return round(self.warmup_fraction * self.total_steps) if self.total_steps else 0

    def lr_factor(self, step: int) -> float:
        """The fraction of the peak learning rate at ``step`` (0-based)."""
        warmup = self.warmup()
        if step < warmup:
            return (step + 1) / warmup
        if self.total_steps is None:
            if step == 0:  # at construction, before the CLI knows the run: `set_total_steps` redoes this step
                return 1.0
            raise RuntimeError(
                "WarmupCosine.total_steps is not set: give lr_scheduler.init_args.total_steps, or train "
                "through `python -m lightning_app`, which sets it from the trainer"
            )
        progress = min(1.0, (step - warmup) / max(1, self.total_steps - 1 - warmup))
        return self.final_lr_ratio + (1.0 - self.final_lr_ratio) * 0.5 * (1.0 + math.cos(math.pi * progress))

    def get_lr(self) -> list[float]:
        return [base_lr * self.lr_factor(self.last_epoch) for base_lr in self.base_lrs]

    def set_total_steps(self, total_steps: int) -> None:
        """Sets the run's length and the learning rate of the current step to match it."""
        if total_steps < 1:
            raise ValueError(f"the run has {total_steps} steps: a schedule needs at least one")
        self.total_steps, self.sized_by_run = total_steps, True
        for group, lr in zip(self.optimizer.param_groups, self.get_lr()):
            group["lr"] = lr
        self._last_lr = [group["lr"] for group in self.optimizer.param_groups]

    def load_state_dict(self, state_dict: dict) -> None:
        """Restores a checkpoint's schedule, but a length sized by the run stays this run's: a run
        resumed with more epochs stretches its schedule instead of idling at the final rate."""
        length = self.total_steps if self.sized_by_run else None
        super().load_state_dict(state_dict)
        if length is not None:
            self.set_total_steps(length)  # and the current step's lr, which the optimizer's restored state holds


def fit_to_run(scheduler: LRScheduler, trainer: L.Trainer, interval: str) -> None:
    """Sizes ``scheduler`` by the run where its config left the length out, and refuses a schedule
    shorter than the run where the scheduler would fail at its end (OneCycleLR raises mid-run)."""
    sized = isinstance(scheduler, WarmupCosine) and scheduler.total_steps is None
    if not (sized or isinstance(scheduler, OneCycleLR)):
        return
    if interval == "step":
        length, unit, knob = trainer.estimated_stepping_batches, "optimizer steps", "max_steps or max_epochs"
    else:
        length, unit, knob = trainer.max_epochs, "epochs", "max_epochs"
    if length is None or length < 1 or math.isinf(length):
        raise ValueError(f"the run's length in {unit} is {length}: set --trainer.{knob.split()[0]} to size the schedule")
    length = int(length)
    if sized:
        scheduler.set_total_steps(length)
    elif scheduler.total_steps < length:
        raise ValueError(
            f"OneCycleLR has total_steps={scheduler.total_steps}, but the run takes {length} {unit}: it would fail "
            f"at step {scheduler.total_steps + 1}. Leave the length to the CLI with lightning_app.schedules.WarmupCosine, "
            f"or raise total_steps, or lower {knob}"
        )
