"""What the CLI applies to every run beyond Lightning's own defaults, each measured in docs/speed.md.

- ``fuse``: torch's fused optimizer step. Torch's Adam, AdamW and SGD default to a Python loop over
  the parameters on a CPU (``foreach`` is the default on CUDA); ``fused=True`` updates every
  parameter in one kernel per step. For the small models here that loop is a tenth of a training
  step on a CPU. A config that sets ``fused`` or ``foreach`` keeps its choice.
- ``compile_model`` (``--compile true``): the model compiles in place (``nn.Module.compile()``), not
  as ``torch.compile(model)``'s wrapper, so it keeps its class and its state-dict keys (no
  ``_orig_mod.`` prefix): a compiled run's checkpoint loads into an uncompiled model. Under DDP each
  process compiles its own copy inside the DDP wrapper; bf16-mixed's autocast surrounds the compiled
  forward. The steps stay eager and call the compiled ``forward`` (their logging would break the
  graph). The option is the CLI's, not a model argument: how a run executes is not part of the model.
- ``warn_if_bf16_is_slow``: configs written for GPUs say ``precision: bf16-mixed``; a CPU without
  bfloat16 instructions emulates it, up to ~300x slower than float32 (``modules/device_speed.py``
  answers whether it is fast once per process, for this and for the kNN search).
- ``TimedProgressBar``: Lightning's bar, redrawn by time rather than by step.
- ``skip_empty_step_hooks``: Lightning calls every callback's every per-step hook at every step,
  an empty one too, through its profiler's context and label (1.6 us a call); a default run's eight
  callbacks leave most of theirs empty. Each empty one is set to None on the callback, which
  Lightning's dispatch passes over (it calls a hook only where it is callable).
- ``fix_malloc_thresholds`` (the ``python -m lightning_app`` process, not the CLI called from Python):
  glibc's malloc serves a block above its mmap threshold with fresh pages from the kernel, faulted in
  4 KiB at a time, and returns them when it is freed. The threshold starts at 128 KiB and moves with
  what the process happened to free before, so a training step's buffers (a 1,024-image batch is
  3 MiB) were fresh pages at every step in some runs and not in others: up to 20,000 page faults in
  one epoch of ``configs/mnist_mlp.yaml`` at batch 1,024, 32 ms of kernel time in an epoch of 0.3 s.
  Fixed at 64 MiB (and freed memory kept up to 128 MiB), a step reuses the same memory: 230-240. ``MALLOC_MMAP_THRESHOLD_`` or
  ``MALLOC_TRIM_THRESHOLD_`` in the environment keep glibc's behaviour as set there.
"""

import ctypes
import functools
import os
import sys
import time
from collections.abc import Callable
from typing import Any

import lightning as L
import torch
from lightning.pytorch.accelerators import CPUAccelerator
from lightning.pytorch.callbacks import Callback, TQDMProgressBar
from lightning.pytorch.utilities import rank_zero_info, rank_zero_warn
from torch.optim import SGD, Adam, Optimizer

from modules.device_speed import SPEEDUP_NEEDED, bfloat16_is_fast

M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3  # glibc's mallopt parameters
MMAP_THRESHOLD, TRIM_THRESHOLD = 64 << 20, 128 << 20
FUSED_DEVICES = ("cpu", "cuda")  # where torch has fused Adam, AdamW and SGD kernels (and CI runs them)
STEP_HOOKS = (
    "on_train_batch_start", "on_before_backward", "on_after_backward", "on_before_optimizer_step", "on_before_zero_grad",
    "on_train_batch_end", "on_validation_batch_start", "on_validation_batch_end", "on_test_batch_start",
    "on_test_batch_end", "on_predict_batch_start", "on_predict_batch_end",
)  # fmt: skip


def fuse(optimizer: Optimizer, device: torch.device) -> bool:
    """Switches ``optimizer`` to its fused step when it is torch's Adam, AdamW or SGD, its parameters are
    floating point on ``device`` (a CPU or CUDA device) and no group chose ``fused`` or ``foreach``;
    returns whether it did. Called before the first step (a restored checkpoint then sets its own groups)."""
    groups = optimizer.param_groups
    kind = torch.device(device).type
    if not isinstance(optimizer, Adam | SGD) or kind not in FUSED_DEVICES:
        return False
    chosen = any(group.get("fused") is not None or group.get("foreach") is not None for group in groups)
    differentiable = any(group.get("differentiable") for group in groups)  # fused steps are not differentiable
    params = [p for group in groups for p in group["params"]]
    if chosen or differentiable or not all(p.is_floating_point() and p.device.type == kind for p in params):
        return False
    for group in groups:  # the step reads `fused` from each group
        group["fused"] = True
    return True


def compile_model(model: L.LightningModule) -> bool:
    """Compiles ``model``'s forward in place; returns whether it did.

    A model with no trained parameters (kNN memorises the data, then searches it) has no training
    step to speed up and is left as it is.
    """
    if not any(parameter.requires_grad for parameter in model.parameters()):
        rank_zero_info(f"--compile: {type(model).__name__} trains no parameters; it runs uncompiled")
        return False
    model.compile()  # the first forward compiles (slow); later calls with the same shapes are fast
    return True


def warn_if_bf16_is_slow(trainer: L.Trainer) -> None:
    """Warns (once per process and precision) when ``trainer`` runs bfloat16 on a CPU where it does not pay."""
    if not str(trainer.precision).startswith("bf16") or not isinstance(trainer.accelerator, CPUAccelerator):
        return
    if not bfloat16_is_fast("cpu"):
        _warn(str(trainer.precision))


@functools.cache  # once per process and precision, however many runs it starts
def _warn(precision: str) -> None:
    rank_zero_warn(
        f"precision {precision} on this CPU ({torch.backends.cpu.get_cpu_capability()}): bfloat16 matrix products "
        f"are not {SPEEDUP_NEEDED}x faster than float32 here (without bfloat16 instructions they are emulated, up to "
        "~300x slower); pass --trainer.precision 32-true"
    )


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


def skip_empty_step_hooks(callbacks: list[Callback]) -> None:
    """Sets each per-step hook that a callback leaves as ``Callback``'s own (empty) to None on it; a
    hook its class or the instance itself sets is kept."""
    for callback in callbacks:
        for hook in STEP_HOOKS:
            if hook not in vars(callback) and getattr(type(callback), hook, None) is getattr(Callback, hook):
                setattr(callback, hook, None)


def fix_malloc_thresholds() -> bool:
    """Fixes glibc malloc's mmap threshold at ``MMAP_THRESHOLD`` and its trim threshold at ``TRIM_THRESHOLD``
    for this process; returns whether it did (not on another C library, nor where the environment sets
    either). See the module's docstring."""
    if sys.platform != "linux" or {"MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_"} & os.environ.keys():
        return False
    libc = ctypes.CDLL(None)
    if not hasattr(libc, "gnu_get_libc_version"):  # musl and others: their mallopt is not glibc's
        return False
    return bool(libc.mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD) and libc.mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD))
