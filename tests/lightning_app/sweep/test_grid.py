"""SharedGrid: workers asking at once take each grid point once; the late ones are spares."""

import os
import subprocess
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import optuna
import pytest

from lightning_app.sweep.grid import SPARE, SharedGrid, sqlite_file
from lightning_app.sweep.study import open_storage, retry

GRID = {"x": [1, 2, 3, 4, 5, 6]}


def ask_at_once(url: str, askers: int, separate: bool) -> list[optuna.trial.FrozenTrial]:
    """``askers`` threads start a trial at the same moment, on one study object or each on its own."""
    optuna.create_study(storage=open_storage(url), study_name="grid", sampler=SharedGrid(GRID, url))
    shared = optuna.load_study(storage=open_storage(url), study_name="grid", sampler=SharedGrid(GRID, url))
    barrier = threading.Barrier(askers)

    def ask(_):
        own = separate and optuna.load_study(storage=open_storage(url), study_name="grid", sampler=SharedGrid(GRID, url))
        study = own or shared
        barrier.wait()
        return study.ask().number

    with ThreadPoolExecutor(askers) as pool:
        list(pool.map(ask, range(askers)))
    return shared.get_trials(deepcopy=False)


@pytest.mark.parametrize("separate", [False, True], ids=["one process's threads", "separate studies (the file lock)"])
def test_every_point_once_and_the_rest_spare(tmp_path, separate):
    trials = ask_at_once(f"sqlite:///{tmp_path / 'study.db'}", 9, separate)
    points = [t.system_attrs["grid_id"] for t in trials if "grid_id" in t.system_attrs]
    assert sorted(points) == list(range(6))  # Optuna's GridSampler gives trials 6-8 running points again
    assert sorted(t.number for t in trials if t.user_attrs.get(SPARE)) == sorted(
        t.number for t in trials if "grid_id" not in t.system_attrs
    ) and len(trials) == 9


def test_a_retry_keeps_its_point_and_no_fresh_trial_takes_it(tmp_path):
    url = f"sqlite:///{tmp_path / 'study.db'}"
    study = optuna.create_study(storage=url, study_name="grid", sampler=SharedGrid(GRID, url))
    first = study.ask()
    first.suggest_categorical("x", GRID["x"])
    study.tell(first, state=optuna.trial.TrialState.FAIL)
    frozen = study.get_trials(deepcopy=False)[0]
    retry(study, frozen)  # as the sweep queues a trial again (its point in its system attributes)
    again = study.ask()
    assert again.suggest_categorical("x", GRID["x"]) == frozen.params["x"]
    others = [study.ask() for _ in range(6)]
    values = [t.suggest_categorical("x", GRID["x"]) for t in others[:5]]
    assert sorted([*values, frozen.params["x"]]) == GRID["x"] and others[5].user_attrs.get(SPARE)


@pytest.mark.slow
def test_three_sweeps_started_at_once_on_a_new_sqlite_study_run_each_point_once(write_sweep, in_tmp):
    """They create the study's tables at once (open_storage retries), and lock the grid, not SQLite's own file."""
    path = write_sweep(x={"values": [1, 2, 3, 4, 5, 6, 7, 8]})
    command = [sys.executable, "-m", "lightning_app.sweep", path, "--workers", "2"]
    sweeps = [subprocess.Popen(command, env={**os.environ, "LIGHTNING_APP_SWEEP_HOST": host}, stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, text=True) for host in "abc"]  # fmt: skip
    outputs = [sweep.communicate(timeout=300)[0] for sweep in sweeps]
    assert [sweep.returncode for sweep in sweeps] == [0, 0, 0], outputs
    trials = optuna.load_study(study_name="sweep", storage="sqlite:///runs/sweeps/sweep/study.db").get_trials()
    assert sorted(t.params["x"] for t in trials if t.state.name == "COMPLETE") == list(range(1, 9))
    assert all(t.user_attrs.get(SPARE) for t in trials if t.state.name != "COMPLETE")
    rows = (in_tmp / "runs/sweeps/sweep/trials.md").read_text().splitlines()[2:]
    assert len(rows) == 8 and all("| complete |" in row for row in rows)  # spares are not in the table


def test_the_sqlite_file_of_a_url_is_found_once_for_the_check_the_draft_and_the_lock():
    assert sqlite_file("sqlite:///runs/sweeps/s/study.db") == Path("runs/sweeps/s/study.db")
    assert sqlite_file("sqlite:////tmp/study.db") == Path("/tmp/study.db")
    assert sqlite_file("sqlite+pysqlite:///study.db") == Path("study.db")
    for other in ("sqlite://", "sqlite:///:memory:", "postgresql+psycopg://user:pw@host/db"):
        assert sqlite_file(other) is None
