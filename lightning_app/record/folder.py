"""The run folder: where a run writes, what it is called, and the lock that keeps it one run's.

A W&B run writes ``<save_dir>/<project>/<run id>/``; a run without a logger gets its own
``<default_root_dir>/lightning_app/<experiment>-<time>_<random>/`` (as its trainer's root). The
experiment is the config file's name (or ``<data>-<model>``): the W&B group, and how
``--ckpt_path last`` finds a run (``lightning_app/checkpoints/ckpt_path.py``).

Two processes that resolve to the same run folder (two ``fit --ckpt_path last`` of one experiment, or
the same ``--trainer.logger.init_args.id``) would interleave one ``metrics.jsonl`` and overwrite each
other's checkpoints. So a run holds an exclusive ``flock`` on ``<run folder>/run.lock`` from its
start to its end, and a second process fails at once, naming the folder and the PID that holds it
(the holder writes it into the file). The kernel releases the lock when its process ends, however it
ends (SIGKILL included): a lock left behind by a killed run is stale by construction and never blocks
the next one. Only global rank 0 locks; the other ranks of a DDP run write nothing into the folder.
"""

import fcntl
import os
import re
import secrets
import socket
import time
from pathlib import Path

from lightning.fabric.plugins.environments import SLURMEnvironment
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.utilities import rank_zero_warn

PROJECT = "lightning_app"  # the W&B project, and the folder under the runs root that holds the run folders
LOCK_NAME = "run.lock"


RUN_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]*")  # a folder name: no separator, no leading dot (`..`)


def check_run_name(value: object, argument: str) -> None:
    """Fails when ``value``, a run id or name that becomes a folder name, could leave the runs root."""
    if value is not None and not (isinstance(value, str) and len(value) <= 128 and RUN_NAME.fullmatch(value)):
        raise ValueError(
            f"{argument} {value!r} is not a run name: use letters, digits, `_`, `.` and `-` only (not starting "
            "with `.` or `-`), at most 128 characters; it names the run's folder"
        )


def check_logger_names(logger) -> None:
    """Fails before any file is made when the logger's run id, version, name or project could leave the runs
    root (``--trainer.logger.init_args.id ../../x`` would lock ``../../x/run.lock``)."""
    init_args = (logger.get("init_args") or {}) if hasattr(logger, "get") else {}
    for key in ("id", "version", "name", "project"):
        value = init_args.get(key)
        if not isinstance(value, int):  # a version number is a folder name too, and always a safe one
            check_run_name(value, f"--trainer.logger.init_args.{key}")


def experiment_name(config) -> str:
    """The config file's name, or ``<data>-<model>`` without one: the W&B group, and how ``last`` matches runs."""
    if config.get("config"):
        return Path(str(config.config[-1])).stem
    return f"{config.data.class_path.rsplit('.', 1)[-1]}-{config.model.class_path.rsplit('.', 1)[-1]}"


def new_run_id(experiment: str) -> str:
    """A folder name for a run without a logger; under SLURM the job's, so a requeued job finds its folder."""
    if SLURMEnvironment.detect():  # Lightning's SLURM auto-resume looks for its checkpoint in default_root_dir
        array = os.environ.get("SLURM_ARRAY_JOB_ID")
        job = f"{array}_{os.environ['SLURM_ARRAY_TASK_ID']}" if array else os.environ["SLURM_JOB_ID"]
        return f"{experiment}-slurm_{job}"
    return f"{experiment}-{time.strftime('%Y%m%d_%H%M%S')}_{secrets.token_hex(2)}"


def run_dir(trainer) -> Path:
    """The folder that holds a run's ``checkpoints/``, as ModelCheckpoint chooses it."""
    logger = trainer.logger
    if logger is None:
        return Path(trainer.default_root_dir)
    version = logger.version if isinstance(logger.version, str) else f"version_{logger.version}"
    return Path(logger.save_dir or trainer.default_root_dir) / str(logger.name) / version


def lock_folder(folder: Path):
    """Takes ``folder``'s lock; returns the open file that holds it (closing it releases the lock)."""
    folder.mkdir(parents=True, exist_ok=True)
    file = open(folder / LOCK_NAME, "a+")
    try:
        fcntl.flock(file, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        file.seek(0)
        holder = file.read().strip() or "another process"
        file.close()
        raise RuntimeError(
            f"{folder} is in use by {holder}: another run is training there. Wait for it to end, or start "
            "a new run (without --ckpt_path last, or with another --trainer.logger.init_args.id)"
        ) from None
    except OSError as error:  # a filesystem without locks
        file.close()
        rank_zero_warn(f"cannot lock {folder} ({error}): make sure no other run uses it at the same time")
        return None
    file.truncate(0)
    file.write(f"PID {os.getpid()} on {socket.gethostname()}\n")
    file.flush()
    return file


class RunLock(Callback):
    """Holds the run folder's lock until ``teardown`` (or an exception), on global rank 0.

    The CLI takes it as soon as the folder is known, before a logger starts (a W&B run resumed by a
    second process would otherwise be opened before that process fails); a new W&B run's folder
    exists only once the run does, so then it is taken in ``setup``, before anything is written there.
    """

    def __init__(self) -> None:
        self._file = None

    def acquire(self, trainer) -> None:
        if trainer.is_global_zero and self._file is None:
            self._file = lock_folder(run_dir(trainer))

    def setup(self, trainer, pl_module, stage: str) -> None:
        self.acquire(trainer)

    def _release(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None

    def teardown(self, trainer, pl_module, stage: str) -> None:
        self._release()

    def on_exception(self, trainer, pl_module, exception: BaseException) -> None:
        self._release()
