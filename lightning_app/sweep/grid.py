"""A grid search whose every point is run once, however many workers and machines share the study.

Optuna's GridSampler gives trial N the N-th point and, once the numbers pass the grid's size,
a point no trial holds yet, or, when there is none, a running one again: two workers that finish
at the same moment both start the last point (its docs say so). Here a point is chosen under a
lock that every worker of the study takes: a ``SELECT ... FOR UPDATE`` of the study's row in a
server database, ``flock`` on the folder of a SQLite one. A trial created when every point is held
(another worker took the last one after this worker counted the study) gets no point: it is
``spare``, the runner does not run it, and neither the tally nor the report counts it.
"""

import contextlib
import fcntl
import os
import threading
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path

import optuna
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

SPARE = "spare"  # the user attribute of a trial that found no point left


def sqlite_file(url: str) -> Path | None:
    """The database file of a SQLite ``url``; None for another database, or SQLite in memory."""
    parsed = make_url(url)
    if not parsed.drivername.startswith("sqlite") or parsed.database in (None, "", ":memory:"):
        return None
    return Path(parsed.database)


class SharedGrid(optuna.samplers.GridSampler):
    """Each point once, in one shuffled order that every worker shares.

    Args:
        grid: Each parameter's values.
        url: The study's storage URL (SQLAlchemy), which says how to lock it.
    """

    def __init__(self, grid: Mapping[str, Sequence], url: str) -> None:
        super().__init__(grid, seed=0)
        self.url = url
        self.threads = threading.Lock()  # --workers N: N threads of this process ask at once
        self.engine = None  # a server database's connections for the lock, made at the first trial

    def before_trial(self, study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
        if "grid_id" in trial.system_attrs or "fixed_params" in trial.system_attrs:
            return  # a retry keeps its point; an enqueued trial has its own
        storage = study._storage  # as GridSampler itself reads the study
        with self.threads, self.locked(study._study_id):
            trials = storage.get_all_trials(study._study_id, deepcopy=False)
            held = {t.system_attrs["grid_id"] for t in trials if "grid_id" in t.system_attrs}
            free = [point for point in range(len(self._all_grids)) if point not in held]
            if not free:
                storage.set_trial_user_attr(trial._trial_id, SPARE, True)
                trial.user_attrs = {**trial.user_attrs, SPARE: True}  # the Trial's cached copy, which the runner reads
                return
            storage.set_trial_system_attr(trial._trial_id, "search_space", self._search_space)
            storage.set_trial_system_attr(trial._trial_id, "grid_id", free[0])  # committed before the lock goes

    @contextlib.contextmanager
    def locked(self, study_id: int) -> Iterator[None]:
        """Holds the study's lock: other workers wait here, on this machine or another."""
        url = make_url(self.url)
        if url.get_backend_name() == "sqlite":
            database = sqlite_file(self.url)
            if database is None:  # in memory, one process: the thread lock is all
                yield
                return
            # The database's folder, not its file: closing any descriptor of the file would drop the
            # fcntl locks SQLite's connections in this process hold on it (SQLite's "POSIX locks" caveat).
            descriptor = os.open(database.absolute().parent, os.O_RDONLY)
            try:
                fcntl.flock(descriptor, fcntl.LOCK_EX)
                yield
            finally:
                os.close(descriptor)  # and the lock with it
            return
        self.engine = self.engine or create_engine(url)
        with self.engine.connect() as connection, connection.begin():
            query = text("SELECT study_id FROM studies WHERE study_id = :id FOR UPDATE")
            connection.execute(query, {"id": study_id})
            yield  # the transaction ends (and the row lock goes) after the point is written
