"""Three workers on one PostgreSQL study (pgserver's own server), as three machines; one is killed mid-trial."""

import os
import signal
import subprocess
import sys
import time

import optuna
import pytest
import yaml

from tests.lightning_app.sweep.test_grid import ask_at_once

pgserver = pytest.importorskip("pgserver", reason="pip install -e '.[test]' (pgserver, psycopg[binary])")
pytest.importorskip("psycopg", reason="pip install -e '.[test]' (pgserver, psycopg[binary])")
pytestmark = [pytest.mark.slow, pytest.mark.filterwarnings("ignore::optuna.exceptions.ExperimentalWarning")]
STATES = optuna.trial.TrialState


@pytest.fixture
def postgres(tmp_path):
    """A PostgreSQL server for this test alone; its URL for SQLAlchemy's psycopg driver."""
    server = pgserver.get_server(tmp_path / "pgdata", cleanup_mode="stop")
    yield server.get_uri().replace("postgresql://", "postgresql+psycopg://", 1)
    server.cleanup()


def worker(path: str, url: str, host: str) -> subprocess.Popen:
    command = [sys.executable, "-m", "lightning_app.sweep", path, "--storage", url, "--heartbeat", "1", "--seed", host]
    environment = {**os.environ, "LIGHTNING_APP_SWEEP_HOST": f"machine-{host}"}
    return subprocess.Popen(command, env=environment, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def test_three_machines_finish_the_study_after_one_is_killed_mid_trial(write_sweep, in_tmp, postgres):
    path = write_sweep(x={"values": [1, 2, 3, 4, 5, 6]})
    (in_tmp / "hold-machine-0").touch()  # machine 0's trial stays running until it is killed
    first = worker(path, postgres, "0")
    deadline = time.monotonic() + 120
    while not list(in_tmp.glob("runs/lightning_app/*/config.yaml")):
        assert first.poll() is None and time.monotonic() < deadline, first.stdout.read() if first.poll() is not None else ""
        time.sleep(0.1)
    first.send_signal(signal.SIGKILL)  # the machine is gone; its trial's heartbeat stops
    first.wait()
    time.sleep(3)  # 2 x --heartbeat: the trial is stale for the other machines
    others = [worker(path, postgres, host) for host in ("1", "2")]
    outputs = [other.communicate(timeout=300)[0] for other in others]
    assert [other.returncode for other in others] == [0, 0], outputs
    (in_tmp / "hold-machine-0").unlink()

    every = optuna.load_study(study_name="sweep", storage=postgres).get_trials()
    trials = [t for t in every if not t.user_attrs.get("spare")]  # grid.py: one that found every point taken
    done = [t for t in trials if t.state == STATES.COMPLETE]
    assert sorted(t.params["x"] for t in done) == [1, 2, 3, 4, 5, 6]  # each once: nothing lost, nothing twice
    (killed,) = [t for t in trials if t.state == STATES.FAIL]
    assert killed.user_attrs["host"] == "machine-0" and len(trials) == 7
    retry = next(t for t in done if optuna.storages.RetryHeartbeatStaleTrialCallback.retried_trial_number(t) == killed.number)
    assert retry.params == killed.params
    assert {t.user_attrs["host"] for t in done} <= {"machine-1", "machine-2"}
    for trial in done:  # each parameter set its own run folder, with its own value
        assert yaml.safe_load(open(trial.user_attrs["run"] + "/config.yaml").read())["x"] == trial.params["x"]
    assert len({t.user_attrs["run"] for t in done}) == 6


def test_workers_asking_at_once_on_a_server_take_each_point_once(postgres):
    trials = ask_at_once(postgres, 9, separate=True)  # SELECT ... FOR UPDATE on the study's row
    assert sorted(t.system_attrs["grid_id"] for t in trials if "grid_id" in t.system_attrs) == list(range(6))
    assert sum(bool(t.user_attrs.get("spare")) for t in trials) == 3
