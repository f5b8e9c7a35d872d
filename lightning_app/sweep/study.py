"""The study's bookkeeping: opening it, counting its trials, and queueing again the trials of dead sweeps.

``--trials`` counts the whole study: finished trials (complete, pruned, or failed by themselves)
and running ones, on any machine. A trial whose sweep process died is failed and queued again
with the same parameters (up to 3 times): the retry replaces it in the count. Optuna notices a
dead sweep by its trial's heartbeat going stale; on the machine it ran on, a sweep that finds
the process gone does not wait for that.
"""

import copy
import json
import os
import random
import time
import warnings
from pathlib import Path
from typing import Any

import optuna
from sqlalchemy.engine import make_url
from sqlalchemy.exc import SQLAlchemyError

from lightning_app.sweep.file import SweepFile
from lightning_app.sweep.grid import SPARE, SharedGrid, sqlite_file
from lightning_app.sweep.trials import HOST

STATES = optuna.trial.TrialState
with warnings.catch_warnings():  # experimental in Optuna, and stable enough for this
    warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
    RETRY = optuna.storages.RetryHeartbeatStaleTrialCallback(max_retry=3)  # then a trial counts as failed


# What a database says when another worker created its tables (or stamped its version) at the same moment.
CREATED_BESIDE = ("already exists", "UNIQUE constraint failed", "duplicate key")


def preload() -> None:
    """Imports what opening a study's database imports (Optuna's table models, alembic: 0.2 s); the driver
    calls it on a thread while it waits for the trials' fork server."""
    try:
        import alembic.command  # noqa: F401
        import alembic.runtime.environment  # noqa: F401
        import optuna.storages._rdb.models  # noqa: F401
    except ImportError:  # open_storage meets it again and says what is missing
        pass


def new_database_file(url: str) -> Path | None:
    """The file of a SQLite ``url`` that does not exist yet (opening the study creates it); else None."""
    path = sqlite_file(url)
    return None if path is None or path.exists() else path


def draft_study(sweep: SweepFile, name: str, path: Path) -> None:
    """Writes the new SQLite file ``path`` as opening the study would: its tables, the study and its
    sweep (0.15-0.2 s, mostly creating and syncing the tables), and closes it. The sweep drafts it
    under a name of its own while its checks run; ``publish_draft`` names it once they pass."""
    storage = open_storage(f"sqlite:///{path}")
    try:
        study = optuna.create_study(storage=storage, study_name=name, direction=sweep.goal)
        study.set_user_attr("sweep", json.loads(json.dumps(sweep.identity)))
    finally:
        storage.engine.dispose()


def publish_draft(draft: Path, final: Path) -> None:
    """Gives a drafted study file its name, unless a file has it already (another sweep of the same
    study, started meanwhile: its study is opened instead); removes the draft's own name."""
    try:
        os.link(draft, final)  # atomic, and never over an existing file
    except OSError:  # the name is taken, or this filesystem has no hard links: the study opens as usual
        pass
    finally:
        remove_database_file(draft)


def remove_database_file(path: Path) -> None:
    """Removes a SQLite file that this sweep created, and its journals."""
    for name in (path.name, *(path.name + suffix for suffix in ("-journal", "-wal", "-shm"))):
        path.with_name(name).unlink(missing_ok=True)


def open_storage(url: str, **heartbeat: Any):
    """Optuna's database storage; SQLite waits for the other workers' writes instead of failing at once.

    Workers that open a new database at the same moment all create its tables; those that find them
    made by another while they did open it again, after a moment (a few times: others may race too).
    """
    engine = {"connect_args": {"timeout": 60}} if url.startswith("sqlite") else {}
    for attempt in range(5):
        try:
            return optuna.storages.RDBStorage(url, engine_kwargs=engine, **heartbeat)
        except SQLAlchemyError as error:
            if attempt == 4 or not any(text in str(error) for text in CREATED_BESIDE):
                raise
            time.sleep(random.uniform(0.05, 0.3))


def retry(study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
    """Queues a failed trial again, same parameters; what its run recorded (host, run folder) is not copied."""
    fresh = copy.copy(trial)
    fresh.user_attrs = {}
    RETRY(study, fresh)


def hidden(url: str) -> str:
    try:
        return make_url(url).render_as_string(hide_password=True)
    except SQLAlchemyError:
        return "the --storage URL"


def open_study(sweep: SweepFile, name: str, url: str, seed: int, heartbeat: int) -> tuple[optuna.Study, optuna.Study]:
    """The study with this sweep's sampler, and the same study with a RandomSampler, for bookkeeping.

    The second one fails and requeues trials: a GridSampler's ``tell`` stops the optimize loop,
    which is not running then.
    """
    if sweep.method == "grid":
        sampler = SharedGrid(sweep.grid, url)  # each point once, on any number of machines
    elif sweep.method == "random":
        sampler = optuna.samplers.RandomSampler(seed=seed)
    else:  # the constant liar keeps parallel workers off each other's running points
        sampler = optuna.samplers.TPESampler(seed=seed, constant_liar=True)
    try:
        storage = open_storage(url, heartbeat_interval=heartbeat, grace_period=2 * heartbeat,
                               heartbeat_stale_trial_callback=retry)  # fmt: skip
        study = optuna.create_study(storage=storage, sampler=sampler, study_name=name, direction=sweep.goal,
                                    load_if_exists=True)  # fmt: skip
    except (SQLAlchemyError, ImportError, ValueError) as error:
        raise SystemExit(f"error: cannot open study {name!r} in {hidden(url)}: {error}") from None
    identity = json.loads(json.dumps(sweep.identity))  # as the storage returns it
    stored = study.user_attrs.get("sweep")
    if stored is None:
        study.set_user_attr("sweep", identity)
    elif stored != identity:
        raise SystemExit(f"error: study {name!r} in {hidden(url)} comes from another sweep (method, metric or "
                         "parameters differ): give this one its own --name")  # fmt: skip
    return study, optuna.load_study(study_name=name, storage=storage, sampler=optuna.samplers.RandomSampler())


def tally(study: optuna.Study) -> tuple[int, int]:
    """(finished, running) trials; a failed trial that was queued again counts through its retry, a spare not."""
    trials = [t for t in study.get_trials(deepcopy=False) if SPARE not in t.user_attrs]
    retried = {number for trial in trials for number in RETRY.retry_history(trial)}
    done = (STATES.COMPLETE, STATES.PRUNED)
    finished = sum(t.state in done or (t.state == STATES.FAIL and t.number not in retried) for t in trials)
    return finished, sum(t.state == STATES.RUNNING for t in trials)


def requeue(admin: optuna.Study, numbers: set[int]) -> None:
    """Fails these trials if they still run, and queues each again (same parameters) for the next worker."""
    for number in sorted(numbers):
        if admin.get_trials(deepcopy=False)[number].state == STATES.RUNNING:
            admin.tell(number, state=STATES.FAIL, skip_if_finished=True)  # another sweep may have just done it
        trials = admin.get_trials(deepcopy=False)
        if trials[number].state == STATES.FAIL and not any(number in RETRY.retry_history(t) for t in trials):
            retry(admin, trials[number])


def alive(pid: int) -> bool:
    if pid <= 0:  # not a process (kill() would read it as a process group)
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


def fail_orphans(admin: optuna.Study) -> None:
    """Fails and requeues the running trials of this machine whose sweep process is gone."""
    # Optuna's heartbeat waits 2 x --heartbeat (120 s): a rerun sooner counts the dead trial as running and ends short.
    dead = set()
    for trial in admin.get_trials(deepcopy=False, states=(STATES.RUNNING,)):
        # A trial just started may not have its driver_pid yet: taken for alive.
        if trial.user_attrs.get("host") == HOST and not alive(trial.user_attrs.get("driver_pid", os.getpid())):
            dead.add(trial.number)
    requeue(admin, dead)
