"""The sweep driver with a stand-in trial program: counts, order, reruns, kills, Ctrl-C, failures.

The stand-in takes a trial's command line and writes what a `fit` run writes (config.yaml and
summary.json in runs/lightning_app/<run id>) in a blink, so these tests exercise the sweep itself;
test_digits.py runs real trials.
"""

import gc
import json
import signal
import subprocess
import sys
import time

import optuna
import pytest
import yaml

from lightning_app.sweep import driver as sweep_cli
from lightning_app.sweep import study as sweep_study
from lightning_app.sweep.callback import SweepTrial
from lightning_app.sweep.launch import worker_environments
from lightning_app.sweep.trials import CALLBACK

from tests.lightning_app.sweep.standin import trials

pytestmark = pytest.mark.filterwarnings("ignore::optuna.exceptions.ExperimentalWarning")  # heartbeats, retries
STATES = optuna.trial.TrialState
@pytest.mark.slow
def test_grid_runs_every_combination_once_and_reports_them_best_first(write_sweep, capsys):
    study = sweep_cli.main([write_sweep(), "--trials", "10"])  # more than the grid's 4
    done = study.get_trials(states=(STATES.COMPLETE,))
    assert len(study.trials) == len(done) == 4
    assert sorted((t.params["x"], t.params["y"]) for t in done) == [(1, "[0]"), (1, "[1, 2]"), (2, "[0]"), (2, "[1, 2]")]
    for trial in done:  # each its own run, with its own values and the sweep's W&B group
        config = yaml.safe_load(open(trial.user_attrs["run"] + "/config.yaml").read())
        assert (config["x"], str(config["y"])) == (trial.params["x"], trial.params["y"])
        assert config["trainer"]["logger"]["init_args"]["group"] == "sweep"
    rows = [line.split("|")[1:-1] for line in open("runs/sweeps/sweep/trials.md").read().splitlines()[2:]]
    assert [float(row[3]) for row in rows] == [0.0, -1.0, -3.0, -4.0]  # score, best first
    assert capsys.readouterr().out.count("| complete |") == 4
    best = yaml.safe_load(open("runs/sweeps/sweep/best.yaml").read())
    assert (best["x"], best["y"]) == (2, [0])
    assert best["trainer"]["callbacks"] is None and best["trainer"]["logger"]["init_args"]["id"] is None
    assert open("runs/sweeps/sweep/history.png", "rb").read(4) == b"\x89PNG"
    assert open("runs/sweeps/sweep/importances.png", "rb").read(4) == b"\x89PNG"


@pytest.mark.slow
def test_random_with_a_seed_picks_the_same_trials_twice(write_sweep):
    space = {"x": {"min": 0.0, "max": 4.0}, "lr": {"distribution": "log_uniform_values", "min": 1.0e-5, "max": 1.0}, "n": {"min": 1, "max": 99}}
    picks = {}
    for name, seed in (("a", "7"), ("b", "7"), ("c", "8")):
        sweep_cli.main([write_sweep("random", name=name, **space), "--trials", "3", "--seed", seed])
        picks[name] = [t.params for t in trials(name)]
    assert picks["a"] == picks["b"] and len({str(p) for p in picks["a"]}) == 3
    assert picks["c"] != picks["a"]


@pytest.mark.slow
def test_rerunning_continues_the_study_to_the_requested_count(write_sweep):
    path = write_sweep("random", x={"min": 0.0, "max": 4.0})
    sweep_cli.main([path, "--trials", "2"])
    sweep_cli.main([path, "--trials", "3"])
    sweep_cli.main([path, "--trials", "3"])  # already there: nothing to run
    assert [t.state for t in trials()] == [STATES.COMPLETE] * 3


@pytest.mark.slow
def test_a_study_made_from_another_sweep_is_not_continued(write_sweep):
    sweep_cli.main([write_sweep(x={"values": [1]}), "--trials", "1"])
    with pytest.raises(SystemExit, match="comes from another sweep"):
        sweep_cli.main([write_sweep(x={"values": [1, 2]}), "--trials", "1"])


@pytest.mark.slow
def test_a_failing_trial_counts_as_failed_and_says_why(write_sweep, capsys):
    study = sweep_cli.main([write_sweep(x={"values": [1, 2, 3]}, fail_at={"value": 2})])
    assert sorted((t.params["x"], t.state) for t in study.trials) == [(1, STATES.COMPLETE), (2, STATES.FAIL), (3, STATES.COMPLETE)]
    out = capsys.readouterr().out
    assert "exited with code 1" in out and "| failed |" not in out and "| fail |" in out
    failed = next(t for t in study.trials if t.state == STATES.FAIL)
    assert "this trial fails" in open(failed.user_attrs["log"]).read()


@pytest.mark.slow
def test_a_metric_the_trials_do_not_log_fails_them_with_the_metrics_they_have(write_sweep, capsys):
    path = write_sweep(x={"values": [1]})
    spec = yaml.safe_load(open(path).read())
    spec["metric"]["name"] = "val/acc"
    open(path, "w").write(yaml.safe_dump(spec))
    with pytest.raises(SystemExit, match=r"stopped: trial 0 did not log 'val/acc' \(logged: \['score', 'test/score'\]\)"):
        sweep_cli.main([path])
    assert trials()[0].state == STATES.FAIL


def start_held(path, in_tmp, trials_wanted):
    """Starts the sweep in its own process group with its first trial held running; returns it once it runs."""
    (in_tmp / "hold").touch()
    command = [sys.executable, "-m", "lightning_app.sweep", path, "--trials", str(trials_wanted), "--heartbeat", "1"]
    driver = subprocess.Popen(command, stdout=subprocess.PIPE, text=True, start_new_session=True)
    deadline = time.monotonic() + 120
    while not list(in_tmp.glob("runs/lightning_app/*/config.yaml")):
        assert driver.poll() is None and time.monotonic() < deadline, "the first trial never started"
        time.sleep(0.1)
    return driver


@pytest.mark.slow
@pytest.mark.parametrize("machine", ["this", "another"])
def test_a_killed_sweep_is_continued_by_the_next_and_its_trial_retried(write_sweep, in_tmp, monkeypatch, machine):
    path = write_sweep(x={"values": [1, 2, 3]})
    driver = start_held(path, in_tmp, 3)
    driver.send_signal(signal.SIGKILL)  # the sweep dies; its held trial runs on
    driver.wait()
    (in_tmp / "hold").unlink()
    if machine == "another":  # its process cannot be looked up from here: its heartbeat (1 s) must go stale (2 s)
        monkeypatch.setattr(sweep_study, "HOST", "another-machine")
        time.sleep(3)
    sweep_cli.main([path, "--heartbeat", "1"])
    states = {t.number: t.state for t in trials()}
    assert states[0] == STATES.FAIL and list(states.values()).count(STATES.COMPLETE) == 3
    retry = next(t for t in trials() if optuna.storages.RetryHeartbeatStaleTrialCallback.retried_trial_number(t) == 0)
    assert retry.params == trials()[0].params and retry.state == STATES.COMPLETE


@pytest.mark.slow
def test_ctrl_c_stops_the_runs_reports_and_queues_them_again(write_sweep, in_tmp):
    path = write_sweep(x={"values": [1, 2]})
    driver = start_held(path, in_tmp, 2)
    driver.send_signal(signal.SIGINT)
    out, _ = driver.communicate(timeout=120)
    assert driver.returncode == 130
    assert "| trial | x | score | state | time | run |" in out and "| fail |" in out
    assert [t.state for t in trials()] == [STATES.FAIL, STATES.WAITING]  # the stopped trial, queued again
    (in_tmp / "hold").unlink()
    sweep_cli.main([path])
    assert sorted(t.params["x"] for t in trials(states=(STATES.COMPLETE,))) == [1, 2]


def test_workers_get_their_own_gpus_and_a_share_of_the_cores():
    four = worker_environments(2, ["0", "1", "2", "3"], cores=16)
    assert [e["CUDA_VISIBLE_DEVICES"] for e in four] == ["0,1", "2,3"]
    assert [e["OMP_NUM_THREADS"] for e in four] == ["8", "8"]
    shared = worker_environments(3, ["0", "1"], cores=2)
    assert [e["CUDA_VISIBLE_DEVICES"] for e in shared] == ["0", "1", "0"]
    assert [e["OMP_NUM_THREADS"] for e in shared] == ["1", "1", "1"]
    assert "CUDA_VISIBLE_DEVICES" not in worker_environments(1, [], cores=2)[0]


def test_trials_get_the_callback_by_its_import_path():
    assert CALLBACK == f"{SweepTrial.__module__}.{SweepTrial.__name__}"


@pytest.mark.parametrize(
    ("early_terminate", "flag", "pruning"),
    [
        (None, [], "no pruning"),
        (None, ["--prune"], "pruning {'min_resource': 1, 'reduction_factor': 3}"),
        ({"type": "hyperband", "min_iter": 2, "eta": 2}, [], "pruning {'min_resource': 2, 'reduction_factor': 2}"),
        ({"type": "hyperband", "min_iter": 2, "eta": 2}, ["--no-prune"], "no pruning"),
    ],
)
@pytest.mark.slow
def test_pruning_follows_the_file_unless_the_flag_says_otherwise(write_sweep, capsys, early_terminate, flag, pruning):
    path = write_sweep(x={"values": [1]})
    spec = yaml.safe_load(open(path).read())
    open(path, "w").write(yaml.safe_dump({**spec, "early_terminate": early_terminate} if early_terminate else spec))
    sweep_cli.main([path, *flag])
    assert f", {pruning}, " in capsys.readouterr().out.splitlines()[0]


@pytest.mark.parametrize("collector", ["off", "on"])
def test_prepare_freezes_what_the_command_loaded_and_turns_the_collector_on(monkeypatch, collector):
    seen = []
    monkeypatch.setattr(sweep_cli, "preload_storage", lambda: seen.append(gc.isenabled()))
    gc.unfreeze()
    if collector == "off":  # as `python -m lightning_app.sweep` starts
        gc.disable()
    try:
        sweep_cli.prepare(wandb=False)
        after, frozen = gc.isenabled(), gc.get_freeze_count()
    finally:
        gc.enable()
        gc.unfreeze()
    assert seen == [collector == "on"] and after  # loaded with the collector as it was; on afterwards
    assert (frozen > 0) == (collector == "off")  # a driver called from Python keeps its collector as it was


@pytest.mark.slow
def test_the_command_loads_with_the_collector_off():
    from tests.lightning_app.test_main import spy

    seen = spy("lightning_app.sweep", ["optuna", "sqlalchemy"], ["--help"])
    assert seen["seen"] == {"optuna": False, "sqlalchemy": False}  # prepare() turns it on (the test above)
