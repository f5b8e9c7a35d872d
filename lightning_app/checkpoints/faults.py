"""Surviving faults: clean stops on signals, exact mid-epoch resume, a stop on NaN/inf loss.

Checkpoints are written atomically (``files.py``). ``last.ckpt`` holds the newest state: Lightning
rewrites it only together with a top-k checkpoint, that is only when the monitored metric improves,
so it goes stale; ``ModelCheckpointLast`` writes it at every save point and when training ends.
On SIGINT (Ctrl-C) and SIGTERM (what SLURM and Kubernetes send before killing a job)
the run finishes its batch, writes ``last.ckpt`` and stops with exit status 128 + the signal number;
``--ckpt_path last`` continues it. SIGTERM is Lightning's own handler (it keeps SLURM's auto-requeue);
SIGINT gets ours for the training loop only, and a second Ctrl-C stops at once.
"""

import math
import random
import signal
import threading
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from lightning.pytorch.callbacks import Callback, ModelCheckpoint
from lightning.pytorch.plugins.io import TorchCheckpointIO
from lightning.pytorch.utilities import rank_zero_info, rank_zero_warn
from torchmetrics import MaxMetric, Metric, MinMetric

from lightning_app.checkpoints.files import AtomicCheckpointIO


class Stopped(SystemExit):
    """A run stopped cleanly by a signal once ``last.ckpt`` held its state; exits with 128 + the signal number."""

    def __init__(self, signum: int, message: str) -> None:
        super().__init__(128 + signum)
        self.message = message

    def __str__(self) -> str:
        return self.message


def _rng_states() -> dict[str, Any]:
    state = np.random.get_state()
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "numpy": (state[0], torch.from_numpy(state[1].astype(np.int64)), *state[2:]),  # tensors load weights_only
        "python": random.getstate(),
    }


def _set_rng_states(states: dict[str, Any]) -> None:
    torch.set_rng_state(states["torch"])
    if states["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(states["cuda"])
    name, keys, *rest = states["numpy"]
    np.random.set_state((name, keys.numpy().astype(np.uint32), *rest))
    random.setstate(states["python"])


class FaultTolerance(Callback):
    """What happens on crashes and bad numbers; set under ``faults:`` in a config.

    Always on: checkpoints are written atomically, and every checkpoint also holds the random
    number generators and the running states that the model's ``state_dict`` leaves out
    (torchmetrics states, non-persistent buffers such as the training sums), so a run resumed
    from a mid-epoch ``last.ckpt`` continues exactly as the uninterrupted run would (the data
    loader skips the batches already seen; see ``BatchLoader``).

    Args:
        nonfinite_loss: A NaN or infinite training loss: ``raise`` stops the run with an error
            before that batch's optimizer step, so no checkpoint holds the broken weights;
            ``warn`` warns and trains on.
        last_every_n_steps: Also write ``last.ckpt`` every this many optimizer steps, so a killed
            run loses at most that many steps; 0 writes it only at each validation.
    """

    def __init__(self, nonfinite_loss: Literal["raise", "warn"] = "raise", last_every_n_steps: int = 0) -> None:
        if last_every_n_steps < 0:
            raise ValueError(f"faults.last_every_n_steps must be 0 or more, got {last_every_n_steps}")
        self.nonfinite_loss = nonfinite_loss
        self.last_every_n_steps = last_every_n_steps
        self._restore: dict[str, Any] | None = None
        self._saved_step = -1
        self._module = None
        self._sigint = False  # Ctrl-C pressed during training
        self._batch_checked = False
        self._previous_sigint = None

    def setup(self, trainer, pl_module, stage: str) -> None:
        self._module = pl_module
        if type(trainer.strategy.checkpoint_io) is TorchCheckpointIO:  # leave custom and async IO alone
            trainer.strategy.checkpoint_io = AtomicCheckpointIO()

    def on_train_start(self, trainer, pl_module) -> None:
        self._sigint = False
        if threading.current_thread() is threading.main_thread():  # Python runs signal handlers there only
            self._previous_sigint = signal.signal(signal.SIGINT, self._on_sigint)

    def _on_sigint(self, signum, frame) -> None:
        if self._sigint:
            raise KeyboardInterrupt  # the second Ctrl-C: stop at once
        self._sigint = True
        rank_zero_warn("Ctrl-C: stopping after this batch, once last.ckpt is written; press Ctrl-C again to stop at once")

    def _restore_sigint(self) -> None:
        if self._previous_sigint is not None:
            signal.signal(signal.SIGINT, self._previous_sigint)
            self._previous_sigint = None

    def _signal(self, trainer) -> int | None:
        """The signal this process received during training, if any; SIGTERM is noted by Lightning's handler."""
        return signal.SIGINT if self._sigint else signal.SIGTERM if trainer.received_sigterm else None

    def on_before_backward(self, trainer, pl_module, loss: torch.Tensor) -> None:
        value = loss.detach()
        # One number is read directly: a third of the time of isfinite + all, on every step.
        bad = not (math.isfinite(value.item()) if value.numel() == 1 else bool(torch.isfinite(value).all()))
        if trainer.world_size > 1:  # every rank stops together, or the others wait forever in all-reduce
            bad = trainer.strategy.reduce_boolean_decision(bad, all=False)
        if not bad:
            return
        message = (
            f"training loss is {loss.item()} at epoch {trainer.current_epoch}, global step {trainer.global_step}: "
            "lower the learning rate, clip gradients (--trainer.gradient_clip_val 1.0) or use 32-bit precision"
        )
        if trainer.global_step == 0:  # no update has run yet: the data, not the optimisation, is the suspect
            message = f"check the inputs first: {message}"
        if self.nonfinite_loss == "raise":
            raise FloatingPointError(f"{message}. Stopped before the optimizer step; --faults.nonfinite_loss warn trains on")
        rank_zero_warn(message)

    def _stop_if_signalled(self, trainer) -> None:
        """After a signal: writes last.ckpt and stops, on every rank together (decided by all of them)."""
        signum = self._signal(trainer)
        stop = signum is not None
        if trainer.world_size > 1:  # here, before Lightning's own check of its rank's SIGTERM ends that rank alone
            stop = trainer.strategy.reduce_boolean_decision(stop, all=False)
        if not stop:
            return
        path = self._save_last(trainer)
        signum = signum or signal.SIGTERM  # a rank that was not signalled stops with its signalled peers
        saved = f"last.ckpt written to {path}" if path else "no checkpoint written (checkpointing is off)"
        at = f"epoch {trainer.current_epoch}, global step {trainer.global_step}"
        message = f"{signal.Signals(signum).name} at {at}: {saved}"
        rank_zero_info(f"Stopped by {message}; --ckpt_path last continues the run")
        raise Stopped(signum, message)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx: int) -> None:
        self._stop_if_signalled(trainer)
        step = trainer.global_step
        if self.last_every_n_steps and step % self.last_every_n_steps == 0 and step != self._saved_step:
            self._save_last(trainer)

    def _save_last(self, trainer) -> Path | None:
        checkpoint = trainer.checkpoint_callback
        if checkpoint is None or not checkpoint.dirpath:
            return None
        path = Path(checkpoint.dirpath) / f"{checkpoint.CHECKPOINT_NAME_LAST}{checkpoint.FILE_EXTENSION}"
        trainer.save_checkpoint(path, weights_only=False)  # the whole state, to resume from
        checkpoint.last_model_path = str(path)  # ModelCheckpoint then overwrites it instead of writing last-v1
        self._saved_step = trainer.global_step
        return path

    def on_train_end(self, trainer, pl_module) -> None:
        self._restore_sigint()
        self._stop_if_signalled(trainer)  # Ctrl-C in the last validation: stop before what follows (the test)

    def on_exception(self, trainer, pl_module, exception: BaseException) -> None:
        self._restore_sigint()

    def state_dict(self) -> dict[str, Any]:
        module = self._module
        if module is None:
            return {}
        metrics = {name: dict(m.metric_state) for name, m in module.named_modules() if isinstance(m, Metric)}
        persistent = module.state_dict().keys()
        buffers = {name: b for name, b in module.named_buffers() if name not in persistent}
        return {"epoch": module.trainer.current_epoch, "rng": _rng_states(), "metrics": metrics, "buffers": buffers}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self._restore = state_dict or None

    def _check_batch(self, trainer, pl_module, batch: Any) -> None:
        """On the first batch of a ``64-true`` run: its floating tensors must be float64 like the weights.
        Lightning converts the loader's floats, but a data module that makes its floats later (normalising
        uint8 images in ``on_after_batch_transfer``) hands float32 to a float64 model."""
        if self._batch_checked or trainer.precision != "64-true":
            return
        self._batch_checked = True
        dtypes = {leaf.dtype for leaf in torch.utils._pytree.tree_leaves(batch) if isinstance(leaf, torch.Tensor)}
        if found := sorted(str(d) for d in dtypes if d.is_floating_point and d != torch.float64):
            data = type(trainer.datamodule).__name__
            raise ValueError(
                f"--trainer.precision 64-true: {data} gives {', '.join(found)} batches to a float64 model; "
                "this data module runs in 32-true (the default) or a mixed precision, not 64-true"
            )

    def on_validation_batch_start(self, trainer, pl_module, batch, batch_idx: int, dataloader_idx: int = 0) -> None:
        self._check_batch(trainer, pl_module, batch)

    def on_test_batch_start(self, trainer, pl_module, batch, batch_idx: int, dataloader_idx: int = 0) -> None:
        self._check_batch(trainer, pl_module, batch)

    def on_predict_batch_start(self, trainer, pl_module, batch, batch_idx: int, dataloader_idx: int = 0) -> None:
        self._check_batch(trainer, pl_module, batch)

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx: int) -> None:
        self._check_batch(trainer, pl_module, batch)
        # The first batch after a restore: later than the module's on_train_start (which resets its
        # best-so-far metric); on_train_epoch_start does not run when a run resumes mid-epoch.
        state, self._restore = self._restore, None
        if state is None:
            return
        _set_rng_states(state["rng"])
        mid_epoch = trainer.current_epoch == state["epoch"]
        if mid_epoch:  # running sums of this epoch's batches; a new epoch starts from the module's own zeros
            for name, value in state["buffers"].items():
                pl_module.get_buffer(name).copy_(value)
        for name, metric in pl_module.named_modules():
            # In a new epoch only the best-of-epochs trackers carry over; epoch metrics start empty.
            if name in state["metrics"] and (mid_epoch or isinstance(metric, MaxMetric | MinMetric)):
                for attribute, value in state["metrics"][name].items():
                    moved = [v.to(metric.device) for v in value] if isinstance(value, list) else value.to(metric.device)
                    setattr(metric, attribute, moved)


class ModelCheckpointLast(ModelCheckpoint):
    """Lightning's ``ModelCheckpoint`` whose ``last.ckpt`` is written at every save point and when training ends.

    The save point is the end of each validation (the end of each training epoch when validation runs
    once per epoch, or not at all), as in Lightning; there ``last.ckpt`` is written even when no top-k
    checkpoint is.
    """

    def on_validation_end(self, trainer, pl_module) -> None:
        super().on_validation_end(trainer, pl_module)
        if not self._should_save_on_train_epoch_end(trainer):
            self.write_last(trainer)

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        super().on_train_epoch_end(trainer, pl_module)
        if self._should_save_on_train_epoch_end(trainer):
            self.write_last(trainer)

    def on_train_end(self, trainer, pl_module) -> None:
        super().on_train_end(trainer, pl_module)
        self.write_last(trainer)

    def write_last(self, trainer) -> None:
        """Writes ``last.ckpt`` unless it is off or this step is already saved."""
        if self.save_last and not self._should_skip_saving_checkpoint(trainer):
            self._save_last_checkpoint(trainer, self._monitor_candidates(trainer))

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx: int) -> None:
        # Lightning's hook saves only every n training steps or every time interval; with neither set it
        # does nothing, yet its checks cost 2.6 us a step (0.1 us here; 0.2% of configs/mnist_mlp.yaml's step).
        if self._every_n_train_steps >= 1 or self._train_time_interval is not None:
            super().on_train_batch_end(trainer, pl_module, outputs, batch, batch_idx)
