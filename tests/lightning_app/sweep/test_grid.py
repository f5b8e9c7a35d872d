"""SharedGrid: workers asking at once take each grid point once; the late ones are spares."""

import threading
from concurrent.futures import ThreadPoolExecutor

import optuna
import pytest

from lightning_app.sweep.grid import SPARE, SharedGrid
from lightning_app.sweep.study import retry
from lightning_app.sweep.trials import open_storage

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
