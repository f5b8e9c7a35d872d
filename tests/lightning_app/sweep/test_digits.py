"""Sweeps of real `fit` runs on Digits (1-3 epochs of small MLPs), each trial its own subprocess."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import optuna
import torch
import pytest
import yaml

from lightning_app.cli import main as fit
from lightning_app.sweep import driver as sweep_cli
from lightning_app.sweep import launch

pytestmark = [pytest.mark.slow, pytest.mark.filterwarnings("ignore::optuna.exceptions.ExperimentalWarning")]
STATES = optuna.trial.TrialState
CONFIG = Path(__file__).parents[3] / "configs/digits_mlp.yaml"
QUIET = {"trainer.enable_progress_bar": {"value": False}, "trainer.enable_model_summary": {"value": False}}


def write_sweep(folder: Path, parameters: dict, epochs: int = 1, **keys) -> str:
    spec = {
        "method": "grid",
        "metric": {"name": "val/acc_best", "goal": "maximize"},
        "parameters": {**parameters, "trainer.max_epochs": {"value": epochs}, **QUIET},
        "command": ["${env}", "${interpreter}", "-m", "lightning_app", "fit", "--config", str(CONFIG), "${args}"],
        **keys,
    }
    (folder / "digits.yaml").write_text(yaml.safe_dump(spec))
    return str(folder / "digits.yaml")


def summary(trial: optuna.trial.FrozenTrial) -> dict:
    return json.loads((Path(trial.user_attrs["run"]) / "summary.json").read_text())


def test_a_2x2_grid_runs_4_trials_and_best_yaml_reproduces_the_best(in_tmp):
    widths, rates = [[16], [32, 16]], [1.0e-3, 1.0e-2]
    path = write_sweep(in_tmp, {"model.init_args.hidden_sizes": {"values": widths}, "optimizer.init_args.lr": {"values": rates}})
    study = sweep_cli.main([path])
    done = study.get_trials(states=(STATES.COMPLETE,))
    assert len(study.trials) == len(done) == 4
    runs = [Path(t.user_attrs["run"]) for t in done]
    assert len(set(runs)) == 4 and {run.parent for run in runs} == {in_tmp / "runs/lightning_app"}
    chosen = set()
    for trial, run in zip(done, runs):
        config = yaml.safe_load((run / "config.yaml").read_text())
        values = (config["model"]["init_args"]["hidden_sizes"], config["optimizer"]["init_args"]["lr"])
        assert (str(values[0]), values[1]) == (trial.params["model.init_args.hidden_sizes"], trial.params["optimizer.init_args.lr"])
        assert config["trainer"]["logger"]["dict_kwargs"]["group"] == "digits"  # the W&B group is the sweep
        assert list((in_tmp / "runs/wandb").glob(f"offline-run-*-{run.name}"))  # and each trial a W&B run
        assert summary(trial)["last"]["val/acc_best"] == trial.value
        chosen.add((str(values[0]), values[1]))
    assert chosen == {(str(w), r) for w in widths for r in rates}
    assert (in_tmp / "runs/sweeps/digits/trials.md").read_text().count("| complete |") == 4
    for plot in ("history.png", "importances.png", "curves.png"):
        assert (in_tmp / "runs/sweeps/digits" / plot).read_bytes()[:4] == b"\x89PNG"

    before = set((in_tmp / "runs/lightning_app").iterdir())
    fit(["fit", "--config", "runs/sweeps/digits/best.yaml"])
    (rerun,) = set((in_tmp / "runs/lightning_app").iterdir()) - before  # a new run, the trials untouched
    again = json.loads((rerun / "summary.json").read_text())["last"]["val/acc_best"]
    assert again == pytest.approx(study.best_value, abs=1e-6)


def test_pruning_stops_a_hopeless_trial_before_its_last_epoch(in_tmp):
    rates = {"optimizer.init_args.lr": {"values": [1.0e-2, 1.0e-7]}, "model.init_args.dropout": {"values": [0.0, 0.1]}}
    early = {"type": "hyperband", "min_iter": 1, "eta": 2}
    study = sweep_cli.main([write_sweep(in_tmp, rates, epochs=3, early_terminate=early), "--trials", "3"])
    trials = study.trials  # in the order they ran (one worker)
    after_a_good_one = [
        t for t in trials if t.params["optimizer.init_args.lr"] == 1.0e-7
        and any(s.params["optimizer.init_args.lr"] == 1.0e-2 and s.number < t.number for s in trials)
    ]  # fmt: skip
    assert after_a_good_one, "the grid's order never ran a hopeless trial after a good one"
    for trial in after_a_good_one:
        assert trial.state == STATES.PRUNED
        assert summary(trial)["status"] == "pruned after validation 1"
        epochs = (Path(trial.user_attrs["run"]) / "metrics.jsonl").read_text().splitlines()
        assert len(epochs) == 1  # of 3


def test_two_workers_share_one_sqlite_study(in_tmp):
    grid = {"model.init_args.hidden_sizes": {"values": [[8], [16]]}, "model.init_args.dropout": {"values": [0.0, 0.2]}}
    study = sweep_cli.main([write_sweep(in_tmp, grid), "--trials", "3", "--workers", "2"])
    done = study.get_trials(states=(STATES.COMPLETE,))
    assert len(study.trials) == len(done) == 3
    assert len({tuple(sorted(t.params.items())) for t in done}) == 3
    assert len({t.user_attrs["run"] for t in done}) == 3
    first, second = sorted(done, key=lambda t: t.datetime_start)[:2]
    assert second.datetime_start < first.datetime_complete  # they ran at the same time


def test_a_validation_metric_no_trial_logs_stops_the_sweep_at_its_first_trial(in_tmp):
    path = write_sweep(in_tmp, {"model.init_args.dropout": {"values": [0.0, 0.1, 0.2]}}, epochs=3)
    spec = yaml.safe_load(Path(path).read_text())
    spec["metric"]["name"] = "val/accuracy"
    Path(path).write_text(yaml.safe_dump(spec))
    with pytest.raises(SystemExit, match=r"stopped: trial 0: the sweep metric 'val/accuracy' is not logged"):
        sweep_cli.main([path])
    (trial,) = optuna.load_study(study_name="digits", storage="sqlite:///runs/sweeps/digits/study.db").trials
    assert trial.state == STATES.FAIL  # and trials 1 and 2 never started
    assert summary(trial)["status"].startswith("failed: ValueError: the sweep metric 'val/accuracy' is not logged")
    assert "epochs" not in summary(trial)  # stopped in its first epoch, of 3


def test_a_sweep_without_wandb(in_tmp):
    path = write_sweep(in_tmp, {"model.init_args.dropout": {"values": [0.0]}})
    study = sweep_cli.main([path, "--", "--trainer.logger=false"])
    (trial,) = study.trials
    assert trial.state == STATES.COMPLETE and summary(trial)["last"]["val/acc_best"] == trial.value
    assert not (in_tmp / "runs/wandb").exists()


@pytest.mark.parametrize("launcher", ["fork", "subprocess"])
def test_a_trial_killed_with_sigkill_fails_alone_and_each_trial_is_its_own_process(in_tmp, launcher, monkeypatch):
    monkeypatch.setenv("PYTHONPATH", str(CONFIG.parents[1]))  # a fresh Python finds the probe in tests/ too
    path = write_sweep(in_tmp, {"model.init_args.dropout": {"values": [0.0, 0.1, 0.2]}})
    probe = "--trainer.callbacks+=tests.lightning_app.sweep.probe.Probe"
    launch.stop_server()  # one that an earlier test started warmed up for another sweep
    study = sweep_cli.main([path, "--workers", "2", "--launcher", launcher, "--", probe])
    states = {t.params["model.init_args.dropout"]: t.state for t in study.trials}
    assert states == {0.0: STATES.COMPLETE, 0.1: STATES.FAIL, 0.2: STATES.COMPLETE}
    killed = next(t for t in study.trials if t.state == STATES.FAIL)
    assert "exited with code -9" in killed.user_attrs["error"]
    seen = [json.loads((Path(t.user_attrs["run"]) / "probe.json").read_text()) for t in study.trials]
    assert len({s["pid"] for s in seen}) == 3 and os.getpid() not in {s["pid"] for s in seen}
    cores = len(os.sched_getaffinity(0))
    assert {(s["threads"], s["omp"], s["sweep"], s["cwd"]) for s in seen} == {(max(1, cores // 2), str(max(1, cores // 2)), True, str(in_tmp))}
    assert all(s["collector"] for s in seen)  # on in the trials, though off while the fork server loaded
    assert min(s["frozen"] for s in seen) > 100_000  # what the trial (or its fork server) loaded: out of its reach
    assert {s["scipy.signal"] for s in seen} == {"Deferred"}  # which Lightning's import would load, and none uses
    if launcher == "fork":  # forked from the one preloaded server, not started by this process
        assert len({s["ppid"] for s in seen}) == 1 and os.getpid() not in {s["ppid"] for s in seen}
        assert all(s["prebuilt_parsers_left"] == 0 for s in seen)  # each took the server's (test_warm.py: it built one)
        assert {s["packages_from"] for s in seen} == {"lightning_app.sweep.warm"}  # and W&B's package list
    else:
        assert {s["packages_from"] for s in seen} == {"wandb.util"}  # a fresh Python reads its own


def test_ctrl_c_stops_forked_trials_and_queues_them_again(in_tmp):
    path = write_sweep(in_tmp, {"model.init_args.dropout": {"values": [0.0, 0.1]}}, epochs=1000)
    command = [sys.executable, "-m", "lightning_app.sweep", path, "--launcher", "fork"]
    driver = subprocess.Popen(command, stdout=subprocess.PIPE, text=True, start_new_session=True)
    deadline = time.monotonic() + 300
    while not list(in_tmp.glob("runs/lightning_app/*/metrics.jsonl")):  # the first trial has trained an epoch
        assert driver.poll() is None and time.monotonic() < deadline, "the first trial never trained"
        time.sleep(0.2)
    driver.send_signal(signal.SIGINT)
    out, _ = driver.communicate(timeout=300)
    assert driver.returncode == 130, out
    states = [t.state for t in optuna.load_study(study_name="digits", storage="sqlite:///runs/sweeps/digits/study.db").trials]
    assert states == [STATES.FAIL, STATES.WAITING]  # the stopped trial, queued again
    (run,) = (in_tmp / "runs/lightning_app").iterdir()
    assert json.loads((run / "summary.json").read_text())["status"] != "running"  # it stopped, and said so


def test_the_trials_share_the_sweeps_wandb_service_and_each_run_arrives_whole(in_tmp):
    from tests.lightning_app.test_cli import wandb_run

    study = sweep_cli.main([write_sweep(in_tmp, {"model.init_args.dropout": {"values": [0.0, 0.1]}})])
    done = study.get_trials(states=(STATES.COMPLETE,))
    assert len(done) == 2
    for trial in done:
        (folder,) = (in_tmp / "runs/wandb").glob(f"offline-run-*-{Path(trial.user_attrs['run']).name}")
        assert "Connected to an existing wandb-core service via WANDB_SERVICE" in (folder / "logs/debug.log").read_text()
        run = wandb_run(folder)
        assert run["state"] == "finished" and run["summary"]["val/acc_best"] == pytest.approx(trial.value)
        installed = (folder / "files/requirements.txt").read_text().splitlines()  # read once, by the fork server
        assert f"torch=={torch.__version__}" in installed and any(line.startswith("wandb==") for line in installed)
