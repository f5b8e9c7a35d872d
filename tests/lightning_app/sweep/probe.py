"""A callback for sweep tests of the fork launcher: records what the trial's process saw, and kills it on demand."""

import gc
import json
import os
import signal
import sys

import torch
import wandb.util
from lightning.pytorch.callbacks import Callback

from lightning_app import cli
from lightning_app.record.folder import run_dir


class Probe(Callback):
    """Writes ``probe.json`` (pid, parent pid, torch threads, environment, the garbage collector, the
    parsers prebuilt and not taken) into
    the run folder at the start of training; then a run whose model has ``dropout`` 0.1 kills itself with SIGKILL."""

    def on_train_start(self, trainer, pl_module) -> None:
        seen = {
            "pid": os.getpid(),
            "ppid": os.getppid(),
            "threads": torch.get_num_threads(),
            "omp": os.environ.get("OMP_NUM_THREADS"),
            "sweep": os.environ.get("LIGHTNING_APP_SWEEP") is not None,
            "cwd": os.getcwd(),
            "collector": gc.isenabled(),
            "frozen": gc.get_freeze_count(),
            "prebuilt_parsers_left": len(cli._PREBUILT),  # 0: the one the fork server built was taken
            "packages_from": wandb.util.working_set.__module__,  # the fork server's list, read once there
            "scipy.signal": type(sys.modules.get("scipy.signal")).__name__,  # "Deferred": never loaded (deferred.py)
        }
        (run_dir(trainer) / "probe.json").write_text(json.dumps(seen))
        if pl_module.hparams.get("dropout") == 0.1:
            os.kill(os.getpid(), signal.SIGKILL)
