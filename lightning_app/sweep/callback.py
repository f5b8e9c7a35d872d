"""The trial's side of ``python -m lightning_app.sweep``: report the sweep metric to Optuna, stop when pruned.

The sweep adds ``--trainer.callbacks+=lightning_app.sweep.callback.SweepTrial`` to each trial's
command and describes the trial in the environment variable ``LIGHTNING_APP_SWEEP`` (JSON: the
study's storage URL and name, the trial's id, the metric, the pruner, the sweep's process id). A
storage URL can hold a database password, so it travels in the environment, never in a config.yaml
or W&B. Without the variable (a trial's config.yaml rerun by hand) the callback does nothing.
"""

import json
import os
import signal
from typing import Any

import optuna
from lightning.pytorch.callbacks import Callback

from lightning_app.checkpoints import Stopped
from lightning_app.record.folder import run_dir
from lightning_app.sweep.handoff import say_trained, take_turn
from lightning_app.sweep.study import alive
from lightning_app.sweep.study import open_storage
from lightning_app.sweep.trials import ENV


def make_pruner(pruning: dict[str, int] | None):
    """Successive halving (W&B's hyperband, see file.py), or no pruning."""
    if not pruning:
        return optuna.pruners.NopPruner()
    return optuna.pruners.SuccessiveHalvingPruner(**pruning, min_early_stopping_rate=0)


class SweepTrial(Callback):
    """After every validation, reports the sweep metric to the run's Optuna trial and asks the pruner.

    A pruned run stops cleanly (``trainer.should_stop``), so it ends with its checkpoints and
    summary like any other; the sweep then marks it pruned. A run whose sweep is gone stops with
    ``Stopped`` (its summary says ``stopped: ...``). A ``val/`` metric missing at the first validation
    fails the run, and the sweep stops: no trial would log it. Rank 0 talks to the study and
    broadcasts the decision, so every rank of a multi-device trial stops at the same step.
    """

    def __init__(self) -> None:
        spec = os.environ.get(ENV)
        self.spec: dict[str, Any] | None = json.loads(spec) if spec else None
        self.trial = None
        self.validations = 0
        self.missing = ""
        self.turn = None  # the worker's gate, held until this process ends (handoff.py)

    def setup(self, trainer, pl_module, stage: str) -> None:
        if self.spec is None or self.trial is not None or not trainer.is_global_zero:
            return
        study = optuna.load_study(
            study_name=self.spec["study"],
            # The sweep opened this storage before it started any trial: its tables exist and their schema
            # was checked, which took each trial about 30 ms (alembic reads its migration scripts).
            storage=open_storage(self.spec["storage"], skip_compatibility_check=True, skip_table_creation=True),
            sampler=optuna.samplers.RandomSampler(),  # the sweep samples; this process only reports
            pruner=make_pruner(self.spec["pruning"]),
        )
        self.trial = optuna.trial.Trial(study, self.spec["trial_id"])
        self.trial.set_user_attr(self.spec.get("run_attr", "run"), str(run_dir(trainer).resolve()))
        self.turn = take_turn(self.spec.get("gate"))  # the worker's last run has exited: train

    def on_fit_end(self, trainer, pl_module) -> None:
        if self.spec is not None and trainer.is_global_zero:  # the sweep may start the next trial
            say_trained(self.spec.get("trained"), run_dir(trainer).resolve())

    def on_validation_end(self, trainer, pl_module) -> None:
        if self.spec is None or trainer.sanity_checking:
            return
        decision = self._report(trainer) if trainer.is_global_zero else "go"
        decision = trainer.strategy.broadcast(decision, src=0)  # every rank stops at the same step
        if decision == "prune":
            trainer.should_stop = True
        elif decision == "orphan":  # its summary.json says stopped, not finished after a part of its epochs
            raise Stopped(signal.SIGHUP, f"its sweep (process {self.spec['driver_pid']}) is gone; a later sweep "
                          "runs this trial again from its start")  # fmt: skip
        elif decision == "missing":
            raise ValueError(self.missing)

    def _report(self, trainer) -> str:
        """``go`` on, ``prune``, ``orphan`` (the sweep is gone) or ``missing`` (the metric is not logged)."""
        if not alive(self.spec["driver_pid"]):  # not getppid(): a launcher (srun, uv run) may stand between
            return "orphan"
        metric = self.spec["metric"]
        if metric not in trainer.callback_metrics:
            if self.spec["pruning"] or metric.startswith("val/"):  # a validation metric is there by now
                logged = sorted(name for name in trainer.callback_metrics if not name.endswith("_step"))
                self.missing = f"the sweep metric {metric!r} is not logged at validation (logged: {logged}): fix `metric.name`"
                self.trial.set_user_attr("metric_missing", self.missing)  # the sweep stops: no trial would have it
                return "missing"
            return "go"  # e.g. a test metric: the sweep reads it from summary.json at the end
        self.validations += 1
        self.trial.report(float(trainer.callback_metrics[metric]), self.validations)
        if not self.trial.should_prune():
            return "go"
        self.trial.set_user_attr("pruned_at", self.validations)
        return "prune"
