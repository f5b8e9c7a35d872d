"""A CPU worker's next trial starts while the last one tests, and trains once it has exited (handoff.py).

The sweep-level tests run the stand-in trial (standin.py), which takes its worker's turn and says
when its training is over as the SweepTrial callback does, then "tests" for ``tail`` seconds.
"""

import fcntl
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest
import yaml

from lightning_app.sweep import driver as sweep_cli
from lightning_app.sweep.handoff import Tails, say_trained, take_turn, trained_run, wait_for_training

from tests.lightning_app.sweep.standin import trials
from tests.lightning_app.sweep.test_callback import STORAGE, fit_as_trial

pytestmark = pytest.mark.filterwarnings("ignore::optuna.exceptions.ExperimentalWarning")  # heartbeats
STATES = optuna.trial.TrialState


def held_by_another(gate: Path) -> bool:
    with open(gate, "a") as file:
        try:
            fcntl.flock(file, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        fcntl.flock(file, fcntl.LOCK_UN)
        return False


def test_a_turn_is_held_until_its_file_is_closed_and_nothing_is_taken_without_a_gate(tmp_path):
    gate = tmp_path / "worker-0.gate"
    turn = take_turn(str(gate))
    assert held_by_another(gate)
    turn.close()  # what the process's exit does, kill -9 included
    assert not held_by_another(gate)
    assert take_turn(None) is None and take_turn("") is None


def test_a_run_whose_sweep_folder_is_gone_trains_and_ends_with_a_warning(tmp_path):
    gone = tmp_path / "removed"  # a temp cleaner took the sweep's folder
    with pytest.warns(UserWarning, match="trains without it"):
        assert take_turn(str(gone / "worker-0.gate")) is None
    with pytest.warns(UserWarning, match="waits for this run's exit"):
        say_trained(str(gone / "trial-0.trained"), tmp_path / "run")


def test_the_trained_file_names_the_run_once_it_is_written_whole(tmp_path):
    trained = tmp_path / "trial-0.trained"
    assert trained_run(trained) is None and trained_run(None) is None
    say_trained(str(trained), tmp_path / "run")
    assert trained_run(trained) == tmp_path / "run" and not list(tmp_path.glob("*.part"))
    say_trained(None, tmp_path / "run")  # outside a sweep's CPU worker: nothing to say


class Child:
    """A run that says it is trained on its ``trained_at``-th look and exits with 0 on its ``exits_at``-th."""

    def __init__(self, trained: Path, run: Path, trained_at: int, exits_at: int) -> None:
        self.trained, self.run, self.trained_at, self.exits_at, self.looks = trained, run, trained_at, exits_at, 0

    def wait(self, timeout=None):
        self.looks += 1
        if self.looks == self.trained_at:
            say_trained(str(self.trained), self.run)
        return 0 if timeout is None or self.looks >= self.exits_at else None


def test_the_sweep_stops_waiting_at_the_end_of_training_only_for_a_metric_the_training_gives(tmp_path):
    trained = tmp_path / "trial-0.trained"
    child = Child(trained, tmp_path / "run", trained_at=3, exits_at=10)
    assert wait_for_training(child, trained, lambda run: run is not None) is None and child.looks == 3
    test_metric = Child(tmp_path / "trial-1.trained", tmp_path / "run", trained_at=3, exits_at=10)
    assert wait_for_training(test_metric, tmp_path / "trial-1.trained", lambda run: False) == 0
    assert test_metric.looks == 4  # after the trained file, one blocking wait for the exit
    gpu = Child(trained, tmp_path / "run", trained_at=3, exits_at=10)
    assert wait_for_training(gpu, None, lambda run: True) == 0 and gpu.looks == 1  # no handoff: one wait


def test_tails_say_what_failed_once_their_runs_have_exited(capsys):
    tails = Tails()
    tails.watch("a", lambda: 0, lambda code: None)
    tails.watch("b", lambda: 3, lambda code: f"run b exited with code {code}")
    tails.join()
    assert tails.failures == ["run b exited with code 3"] and not tails.keys
    assert "run b exited with code 3" in capsys.readouterr().out


def test_the_callback_says_its_run_is_trained_and_holds_the_turn_while_it_runs(monkeypatch, tmp_path, in_tmp):
    study = optuna.create_study(study_name="s", storage=STORAGE, direction="maximize")
    gate, trained = tmp_path / "worker-0.gate", tmp_path / "trial-0.trained"
    trainer, trial = fit_as_trial(monkeypatch, study, None, gate=str(gate), trained=str(trained))
    assert trained_run(trained) == Path(trial.user_attrs["run"])  # said at the end of fit
    assert held_by_another(gate)  # until this process ends
    callback = next(c for c in trainer.callbacks if type(c).__name__ == "SweepTrial")
    callback.turn.close()


def run_times(study) -> list[dict]:
    """What the stand-in wrote of each trial's run (seconds since the epoch), in trial order."""
    return [json.loads(Path(trial.user_attrs["run"], "times.json").read_text()) for trial in study.trials]


@pytest.mark.slow
def test_the_next_trial_starts_while_the_last_one_tests_and_trains_after_it_exited(write_sweep, monkeypatch):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")  # a CPU worker
    study = sweep_cli.main([write_sweep(x={"values": [1, 2, 3]}, tail={"value": 1.0})])
    assert [t.state for t in study.trials] == [STATES.COMPLETE] * 3
    times = run_times(study)
    for last, following in zip(times, times[1:]):
        assert following["started"] < last["exited"] <= following["trained"]
    assert sorted(t.value for t in study.trials) == [-1.0, -1.0, 0.0]


@pytest.mark.slow
def test_on_a_gpu_worker_a_trial_starts_after_the_last_one_exited(write_sweep, monkeypatch):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0")  # two runs at once could fill its memory
    times = run_times(sweep_cli.main([write_sweep(x={"values": [1, 2]}, tail={"value": 0.5})]))
    assert times[0]["gate"] is None and times[1]["started"] > times[0]["exited"]


@pytest.mark.slow
def test_a_metric_that_the_test_gives_is_waited_for(write_sweep, monkeypatch):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    path = write_sweep(x={"values": [1, 2]}, tail={"value": 0.5})
    spec = yaml.safe_load(open(path).read())
    spec["metric"]["name"] = "test/score"  # the stand-in writes it when it has "tested"
    open(path, "w").write(yaml.safe_dump(spec))
    study = sweep_cli.main([path])
    times = run_times(study)
    assert times[1]["started"] > times[0]["exited"]
    assert sorted(t.value for t in study.trials) == [-1.0, 0.0]


@pytest.mark.slow
def test_a_run_that_fails_after_its_training_keeps_its_trials_metric_and_is_said(write_sweep, monkeypatch, capsys):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    study = sweep_cli.main([write_sweep(x={"values": [1, 2]}, tail_fail_at={"value": 2})])
    assert [t.state for t in study.trials] == [STATES.COMPLETE] * 2
    failed = next(t for t in study.trials if t.params["x"] == 2)
    assert failed.value == 0.0
    out = capsys.readouterr().out
    said = f"trial {failed.number}: its run exited with code 1 after its training"
    assert out.count(said) == 2 and "this trial's test fails" in out  # when it happened, and after the report


@pytest.mark.slow
def test_ctrl_c_while_a_trial_tests_keeps_it_and_queues_the_next_again(write_sweep, in_tmp):
    path = write_sweep(x={"values": [1, 2]}, tail={"value": 60})
    command = [sys.executable, "-m", "lightning_app.sweep", path, "--heartbeat", "1"]
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": ""}
    driver = subprocess.Popen(command, stdout=subprocess.PIPE, text=True, start_new_session=True, env=env)
    deadline = time.monotonic() + 120
    while len(list(in_tmp.glob("runs/lightning_app/*/config.yaml"))) < 2:  # the second waits for its turn
        assert driver.poll() is None and time.monotonic() < deadline, "the second trial never started"
        time.sleep(0.1)
    driver.send_signal(signal.SIGINT)
    driver.communicate(timeout=120)
    assert driver.returncode == 130
    assert [t.state for t in trials()] == [STATES.COMPLETE, STATES.FAIL, STATES.WAITING]  # told; stopped, queued
