"""A callback that kills its own process with SIGKILL at a chosen step: a crash no code can catch."""

import os
import signal

from lightning.pytorch.callbacks import Callback


class KillAtStep(Callback):
    """SIGKILLs the process at the end of the batch that reaches ``global_step == step``.

    Args:
        step: Optimizer step after which the process dies.
    """

    def __init__(self, step: int) -> None:
        self.step = step

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx: int) -> None:
        if trainer.global_step == self.step:
            os.kill(os.getpid(), signal.SIGKILL)
