"""Surviving faults: checkpoints that a crash cannot corrupt, exact mid-epoch resume, a stop on NaN/inf loss.

Lightning's own save serialises the checkpoint into memory and lets fsspec write it to a temporary
file in the system temp folder, then ``shutil.move`` it into place. When that folder is on another
filesystem (tmpfs, a node-local disk beside a shared checkpoint folder) the move is a copy into the
destination, and a crash during the copy leaves a truncated ``last.ckpt``. ``AtomicCheckpointIO``
writes beside the destination, fsyncs, then renames: readers only ever see a whole file.
"""

import os
import random
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from lightning.fabric.utilities.cloud_io import _is_local_file_protocol
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.plugins.io import TorchCheckpointIO
from lightning.pytorch.utilities import rank_zero_warn
from torchmetrics import MaxMetric, Metric, MinMetric

PARTIAL_SUFFIX = ".part"  # not `.ckpt`, so a half-written file is never taken for a checkpoint


class AtomicCheckpointIO(TorchCheckpointIO):
    """``torch.save`` into ``<name>.part`` in the checkpoint's own folder, fsync, then ``os.replace``."""

    def save_checkpoint(self, checkpoint: dict[str, Any], path, storage_options: Any | None = None) -> None:
        if not _is_local_file_protocol(path):
            return super().save_checkpoint(checkpoint, path, storage_options)
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_name(path.name + PARTIAL_SUFFIX)
        try:
            with open(partial, "wb") as file:
                torch.save(checkpoint, file)
                file.flush()
                os.fsync(file.fileno())  # the bytes reach the disk before the name points at them
            os.replace(partial, path)
        except BaseException:
            partial.unlink(missing_ok=True)
            raise


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

    def setup(self, trainer, pl_module, stage: str) -> None:
        self._module = pl_module
        if type(trainer.strategy.checkpoint_io) is TorchCheckpointIO:  # leave custom and async IO alone
            trainer.strategy.checkpoint_io = AtomicCheckpointIO()

    def on_before_backward(self, trainer, pl_module, loss: torch.Tensor) -> None:
        bad = not bool(torch.isfinite(loss.detach()).all())
        if trainer.world_size > 1:  # every rank stops together, or the others wait forever in all-reduce
            bad = trainer.strategy.reduce_boolean_decision(bad, all=False)
        if not bad:
            return
        message = (
            f"training loss is {loss.item()} at epoch {trainer.current_epoch}, global step {trainer.global_step}: "
            "lower the learning rate, clip gradients (--trainer.gradient_clip_val 1.0) or use 32-bit precision"
        )
        if self.nonfinite_loss == "raise":
            raise FloatingPointError(f"{message}. Stopped before the optimizer step; --faults.nonfinite_loss warn trains on")
        rank_zero_warn(message)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx: int) -> None:
        step, checkpoint = trainer.global_step, trainer.checkpoint_callback
        if not self.last_every_n_steps or step % self.last_every_n_steps or step == self._saved_step:
            return
        if checkpoint is None or not checkpoint.dirpath:
            return
        path = Path(checkpoint.dirpath) / f"{checkpoint.CHECKPOINT_NAME_LAST}{checkpoint.FILE_EXTENSION}"
        trainer.save_checkpoint(path)
        checkpoint.last_model_path = str(path)  # ModelCheckpoint then overwrites it instead of writing last-v1
        self._saved_step = step

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

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx: int) -> None:
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
