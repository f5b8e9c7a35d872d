"""One sweep trial = one ``fit`` subprocess, so a crash or kill of a trial cannot take the sweep down.

The trial runs the sweep file's ``command`` with its values as ``--key=value`` (what ``wandb agent``
would run), plus its W&B run id and name, the sweep's W&B group, and the SweepTrial callback. Its
output goes to ``runs/sweeps/<name>/logs/trial-<number>.log``; its result is the metric in its
``summary.json``. Each of the ``--workers`` slots has its own GPUs (``CUDA_VISIBLE_DEVICES``) and
its share of the CPU cores (``OMP_NUM_THREADS``, which sets torch's threads).
"""

import json
import os
import queue
import secrets
import signal
import socket
import subprocess
from pathlib import Path
from typing import Any

import optuna

from lightning_app.compare import read_dict
from lightning_app.sweep.file import SweepFile

HOST = socket.gethostname()
ENV = "LIGHTNING_APP_SWEEP"  # how a trial learns its study: see callback.py
CALLBACK = "lightning_app.sweep.callback.SweepTrial"  # not imported here: it imports Lightning (seconds)


def open_storage(url: str, **heartbeat: Any):
    """Optuna's database storage; SQLite waits for the other workers' writes instead of failing at once."""
    engine = {"connect_args": {"timeout": 60}} if url.startswith("sqlite") else {}
    return optuna.storages.RDBStorage(url, engine_kwargs=engine, **heartbeat)


class TrialFailed(Exception):
    """The run exited with an error, or did not record the sweep metric."""


class Interrupted(Exception):
    """The sweep was stopped (Ctrl-C, SIGTERM) while this trial ran."""


def visible_gpus() -> list[str]:
    if "CUDA_VISIBLE_DEVICES" in os.environ:
        return [gpu for gpu in os.environ["CUDA_VISIBLE_DEVICES"].split(",") if gpu.strip()]
    if not (Path("/proc/driver/nvidia").exists() or Path("/dev/kfd").exists()):
        return []  # no GPU driver: skip importing torch, which takes seconds
    import torch

    return [str(index) for index in range(torch.cuda.device_count())]


def worker_environments(workers: int, gpus: list[str], cores: int) -> list[dict[str, str]]:
    """Each worker's devices: a contiguous share of the GPUs (shared round-robin when fewer than workers) and cores."""
    threads = str(max(1, cores // workers))
    environments = []
    for worker in range(workers):
        environment = {"OMP_NUM_THREADS": threads, "MKL_NUM_THREADS": threads}
        if gpus:
            first, end = worker * len(gpus) // workers, (worker + 1) * len(gpus) // workers
            share = [gpus[worker % len(gpus)]] if workers >= len(gpus) else gpus[first:end]
            environment["CUDA_VISIBLE_DEVICES"] = ",".join(share)
        environments.append(environment)
    return environments


def _tail(path: Path, lines: int = 15) -> str:
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:]) if path.exists() else ""


class TrialRunner:
    """The Optuna objective: runs one trial in a worker slot and returns its metric.

    Args:
        sweep: The parsed sweep file.
        study_name: The study, the W&B group and the prefix of the trials' run ids.
        folder: ``runs/sweeps/<name>``, for the trials' logs.
        storage_url: The study's storage, for the trials' pruning callback.
        pruning: SuccessiveHalvingPruner arguments, or None.
        workers: Trials run at once.
        overrides: Extra ``--key=value`` arguments for every trial.
    """

    def __init__(self, sweep: SweepFile, study_name: str, folder: Path, storage_url: str,
                 pruning: dict[str, int] | None, workers: int, overrides: list[str]) -> None:  # fmt: skip
        self.sweep, self.name, self.folder, self.overrides = sweep, study_name, folder, overrides
        self.trial_spec = {"study": study_name, "storage": storage_url, "metric": sweep.metric, "pruning": pruning}
        self.slots: queue.SimpleQueue = queue.SimpleQueue()
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1  # not on macOS
        for slot in enumerate(worker_environments(workers, visible_gpus(), cores)):
            self.slots.put(slot)
        self.children: dict[int, subprocess.Popen] = {}  # trial number -> its run, while it runs
        self.stopped: set[int] = set()  # trials that were running when the sweep was interrupted
        self.interrupted = False

    def __call__(self, trial: optuna.Trial) -> float:
        if self.interrupted:  # started while the sweep stops: queued again like the running ones
            self.stopped.add(trial.number)
            raise Interrupted(f"trial {trial.number} was not started: the sweep is stopping")
        values = self.sweep.values(trial)
        run_id = f"{self.name}-{trial.number}-{secrets.token_hex(3)}"  # unique even if the study is recreated
        log = self.folder / "logs" / f"trial-{trial.number}.log"
        for key, value in {"run_id": run_id, "host": HOST, "driver_pid": os.getpid(), "log": str(log)}.items():
            trial.set_user_attr(key, value)
        extra = [
            *self.overrides,
            f"--trainer.logger.init_args.id={run_id}",
            f"--trainer.logger.init_args.name={self.name}-{trial.number}",
            f"--trainer.logger.init_args.group={self.name}",
            f"--trainer.callbacks+={CALLBACK}",
        ]
        command = self.sweep.command_line(values, extra)
        # The trial's id is Optuna's storage key, which the public API does not expose.
        spec = {**self.trial_spec, "trial_id": trial._trial_id, "driver_pid": os.getpid()}
        worker, environment = self.slots.get()
        try:
            print(f"trial {trial.number} started (worker {worker}): {' '.join(command)}", flush=True)
            returncode = self._run(trial.number, command, {**os.environ, **environment, ENV: json.dumps(spec)}, log)
        finally:
            self.slots.put((worker, environment))
        try:
            return self._result(trial, returncode, run_id, log)
        except (TrialFailed, Interrupted) as error:
            trial.set_user_attr("error", str(error))
            raise

    def _run(self, number: int, command: list[str], environment: dict[str, str], log: Path) -> int:
        log.parent.mkdir(parents=True, exist_ok=True)
        with open(log, "w") as output:
            child = subprocess.Popen(command, stdout=output, stderr=subprocess.STDOUT, env=environment)
            self.children[number] = child
            try:
                return child.wait()
            except KeyboardInterrupt:  # one worker: the signal came to this thread, and was passed on to the run
                child.wait()
                raise
            finally:
                del self.children[number]

    def _result(self, trial: optuna.Trial, returncode: int, run_id: str, log: Path) -> float:
        if trial.number in self.stopped:
            raise Interrupted(f"trial {trial.number} was stopped with the sweep")
        reported = trial.study.get_trials(deepcopy=False)[trial.number].user_attrs  # as the run itself set them
        run = Path(reported["run"]) if "run" in reported else next(Path().glob(f"*/*/{run_id}"), None)
        if run is not None and "run" not in reported:  # the run reported its own folder already
            trial.set_user_attr("run", str(run))
        if returncode != 0:
            raise TrialFailed(f"trial {trial.number} exited with code {returncode}; the end of {log}:\n{_tail(log)}")
        if run is None or not (run / "summary.json").exists():
            raise TrialFailed(f"trial {trial.number} wrote no summary.json (run: {run}): sweeps need the W&B logger")
        try:
            summary = read_dict(run / "summary.json", json.loads)
        except (OSError, ValueError) as error:  # a broken summary fails the trial, not the sweep
            raise TrialFailed(f"trial {trial.number}: {error}") from None
        metrics = {**summary.get("last", {}), **summary.get("test", {})}
        if self.sweep.metric not in metrics:
            logged = sorted(metrics)
            raise TrialFailed(f"trial {trial.number} did not log {self.sweep.metric!r} (logged: {logged}): fix `metric.name`")
        value = metrics[self.sweep.metric]
        trial.set_user_attr("value", value)
        if "pruned_at" in reported:
            summary["status"] = f"pruned after validation {reported['pruned_at']}"
            (run / "summary.json.part").write_text(json.dumps(summary, indent=1))
            os.replace(run / "summary.json.part", run / "summary.json")  # a reader never sees half a file
            raise optuna.TrialPruned(summary["status"])
        return value

    def announce(self, study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
        """An Optuna callback: one line per finished trial."""
        value = trial.user_attrs.get("value")
        if value is None:  # failed: why, with the end of its log
            result = trial.user_attrs.get("error", "")
        else:
            result = f"{self.sweep.metric} = {value:.4f}, {trial.user_attrs['run']}"
        print(f"trial {trial.number} {trial.state.name.lower()}: {result}", flush=True)

    def on_signal(self, signum: int, frame: Any) -> None:
        """Ctrl-C or SIGTERM: stop the runs (gracefully; forcibly on a second signal) and the sweep."""
        first = not self.interrupted
        self.interrupted = True
        running = dict(self.children)
        self.stopped.update(running)
        for child in running.values():
            child.send_signal(signal.SIGINT if first else signal.SIGKILL)
        if first:
            raise KeyboardInterrupt
