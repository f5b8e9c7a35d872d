"""The trial's callback, in a real fit in this process: reports, prunes, stops when its sweep is gone."""

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import optuna
import pytest

from lightning_app.checkpoints import Stopped
from lightning_app.cli import main
from lightning_app.sweep.callback import make_pruner
from lightning_app.sweep.trials import CALLBACK, ENV

CONFIG = str(Path(__file__).parents[3] / "configs/digits_mlp.yaml")
EPOCHS = 3
STORAGE = "sqlite:///study.db"  # in the test's own folder
ARGS = [
    "fit", "--config", CONFIG, f"--trainer.max_epochs={EPOCHS}", "--trainer.logger=false", "--test_after_fit=false",
    "--trainer.enable_progress_bar=false", "--trainer.enable_model_summary=false", f"--trainer.callbacks+={CALLBACK}",
    "--trainer.limit_train_batches=2", "--trainer.num_sanity_val_steps=0",
]  # fmt: skip


@pytest.fixture
def study(in_tmp):
    """A study where an earlier trial reached val/acc_best 1.0 at the first validation: a bar nothing beats."""
    pruner = make_pruner({"min_resource": 1, "reduction_factor": 2})
    study = optuna.create_study(study_name="s", storage=STORAGE, direction="maximize", pruner=pruner)
    earlier = study.ask()
    earlier.report(1.0, 1)
    assert not earlier.should_prune()  # the pruner records it as the first to reach validation 1
    study.tell(earlier, 1.0)
    return study


def fit_as_trial(monkeypatch, study, pruning, driver_pid=None, **handoff):
    trial = study.ask()
    spec = {"study": "s", "storage": STORAGE, "metric": "val/acc_best", "pruning": pruning,
            "trial_id": trial._trial_id, "driver_pid": driver_pid or os.getppid(), **handoff}  # fmt: skip
    monkeypatch.setenv(ENV, json.dumps(spec))
    return main(ARGS).trainer, study.get_trials()[trial.number]


def test_a_trial_opens_the_sweeps_storage_without_checking_its_schema_again(monkeypatch, study):
    def refuse(*args, **kwargs):
        raise AssertionError("the sweep checked the schema before it started the trial")

    monkeypatch.setattr("optuna.storages._rdb.storage._VersionManager.check_table_schema_compatibility", refuse)
    trainer, trial = fit_as_trial(monkeypatch, study, None)
    assert list(trial.intermediate_values) == [1, 2, 3] and trial.user_attrs["run"]


def test_a_pruned_run_stops_cleanly_after_the_validation_that_pruned_it(monkeypatch, study):
    trainer, trial = fit_as_trial(monkeypatch, study, {"min_resource": 1, "reduction_factor": 2})
    assert trainer.current_epoch == 1 and trainer.state.status == "finished"  # one epoch of three, no error
    assert trial.user_attrs["pruned_at"] == 1 and list(trial.intermediate_values) == [1]
    assert trial.intermediate_values[1] == pytest.approx(float(trainer.callback_metrics["val/acc_best"]))


def test_without_pruning_every_validation_is_reported_and_the_run_goes_on(monkeypatch, study):
    trainer, trial = fit_as_trial(monkeypatch, study, None)
    assert trainer.current_epoch == EPOCHS and list(trial.intermediate_values) == [1, 2, 3]
    assert "pruned_at" not in trial.user_attrs


@pytest.mark.parametrize("sweep", [pytest.param("exited", marks=pytest.mark.slow), "not a process"])
def test_a_run_whose_sweep_is_gone_stops_and_records_that_it_was_stopped(monkeypatch, study, in_tmp, sweep):
    driver_pid = -1
    if sweep == "exited":
        driver = subprocess.Popen([sys.executable, "-c", "pass"])
        driver.wait()  # reaped, so its pid names no process
        driver_pid = driver.pid
    with pytest.raises(Stopped) as stop:
        fit_as_trial(monkeypatch, study, None, driver_pid=driver_pid)
    assert stop.value.code == 128 + signal.SIGHUP  # not 0: nobody should take it for a finished run
    (summary,) = in_tmp.glob("runs/lightning_app/*/summary.json")
    status = json.loads(summary.read_text())["status"]
    assert status.startswith(f"stopped: its sweep (process {driver_pid}) is gone"), status
    assert study.get_trials()[-1].intermediate_values == {}


def test_a_validation_metric_the_model_does_not_log_fails_the_run_at_its_first_validation(monkeypatch, study):
    trial = study.ask()
    spec = {"study": "s", "storage": STORAGE, "metric": "val/accuracy", "pruning": None,
            "trial_id": trial._trial_id, "driver_pid": os.getppid()}  # fmt: skip
    monkeypatch.setenv(ENV, json.dumps(spec))
    with pytest.raises(ValueError, match=r"'val/accuracy' is not logged at validation \(logged: \[.*'val/acc'"):
        main(ARGS)
    assert "val/acc_best" in study.get_trials()[trial.number].user_attrs["metric_missing"]


def test_outside_a_sweep_the_callback_does_nothing(monkeypatch, in_tmp):
    monkeypatch.delenv(ENV, raising=False)
    assert main(ARGS).trainer.current_epoch == EPOCHS
