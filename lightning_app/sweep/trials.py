"""One sweep trial = one ``fit`` process per seed, so a crash or kill of a trial cannot take the sweep down.

The trial runs the sweep file's ``command`` with its values as ``--key=value`` (what ``wandb agent``
would run), plus its W&B run id and name, the sweep's W&B group, and the SweepTrial callback; with
repeats, once per seed (``--seed_everything``), its value their mean. A run is a fresh Python or a
fork of a preloaded one (launch.py). Its output goes to ``runs/sweeps/<name>/logs/trial-<number>.log``
(``trial-<number>-seed<S>.log``); its result is the metric in its ``summary.json``. Each of the
``--workers`` slots has its own GPUs (``CUDA_VISIBLE_DEVICES``) and its share of the CPU cores
(``OMP_NUM_THREADS``, which sets torch's threads): launch.py. A slot without GPUs starts its next
trial when the last one's training is over, while that one tests (handoff.py).
"""

import json
import os
import queue
import secrets
import shutil
import signal
import socket
import statistics
import subprocess
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import optuna

from lightning_app.compare import read_dict
from lightning_app.record.read import replace_file
from lightning_app.sweep import launch
from lightning_app.sweep.checks import cli_arguments
from lightning_app.sweep.file import SweepFile
from lightning_app.sweep.grid import SPARE
from lightning_app.sweep.handoff import Tails, trained_run, wait_for_training
from lightning_app.sweep.launch import visible_gpus, worker_environments

# Tells machines apart (a sweep fails at once only its own machine's orphans); the variable is for
# containers that share a host name, and for tests that play several machines.
HOST = os.environ.get("LIGHTNING_APP_SWEEP_HOST") or socket.gethostname()
ENV = "LIGHTNING_APP_SWEEP"  # how a trial learns its study: see callback.py
CALLBACK = "lightning_app.sweep.callback.SweepTrial"  # not imported here: it imports Lightning (seconds)


def extra_arguments(overrides: list[str], group: str, wandb: bool, run_id: str, run_name: str,
                    seed: int | None) -> list[str]:  # fmt: skip
    """What the sweep adds to a run's command line after the user's ``overrides``: the seed, the W&B
    run's id, name and ``group`` (with ``wandb``), and the trial's callback."""
    logger = [
        f"--trainer.logger.init_args.id={run_id}",
        f"--trainer.logger.init_args.name={run_name}",
        f"--trainer.logger.init_args.group={group}",
    ]
    seeding = [f"--seed_everything={seed}"] if seed is not None else []
    return [*overrides, *seeding, *(logger if wandb else []), f"--trainer.callbacks+={CALLBACK}"]


class TrialFailed(Exception):
    """The run exited with an error, or did not record the sweep metric."""


class Spare(TrialFailed):
    """A grid trial that found every point held (grid.py): it runs nothing, and ends this worker's search."""


class Interrupted(Exception):
    """The sweep was stopped (Ctrl-C, SIGTERM) while this trial ran."""


def _tail(path: Path, lines: int = 15) -> str:
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:]) if path.exists() else ""


class SweepStopped(Exception):
    """A trial showed that no trial can succeed (e.g. the metric is not logged): the sweep stops."""


def _spread(values: list[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (0 for one value), as ``compare`` computes them."""
    return statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else 0.0


class TrialRunner:
    """The Optuna objective: runs one trial (one run per seed) in the worker slots and returns its metric.

    Args:
        sweep: The parsed sweep file.
        study_name: The study, the W&B group and the prefix of the trials' run ids.
        folder: ``runs/sweeps/<name>``, for the trials' logs.
        storage_url: The study's storage, for the trials' pruning callback.
        pruning: SuccessiveHalvingPruner arguments, or None.
        workers: Runs at once.
        overrides: Extra ``--key=value`` arguments for every trial.
        seeds: With repeats, the ``--seed_everything`` of each run of a configuration (the trial's
            value is their metric's mean); None for one run with the config's seed.
        wandb: Whether the trials log to W&B (not with ``-- --trainer.logger=false``).
        launcher: ``fork``: trials of ``python -m lightning_app`` fork a preloaded process (launch.py);
            ``subprocess``: each starts a fresh Python.
    """

    def __init__(self, sweep: SweepFile, study_name: str, folder: Path, storage_url: str,
                 pruning: dict[str, int] | None, workers: int, overrides: list[str],
                 seeds: list[int] | None = None, wandb: bool = True, launcher: str = "fork") -> None:  # fmt: skip
        self.sweep, self.name, self.folder, self.overrides = sweep, study_name, folder, overrides
        self.seeds, self.wandb, self.launcher = seeds, wandb, launcher
        self.trial_spec = {"study": study_name, "storage": storage_url, "metric": sweep.metric, "pruning": pruning}
        self.slots: queue.SimpleQueue = queue.SimpleQueue()
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1  # not on macOS
        for slot in enumerate(worker_environments(workers, visible_gpus(), cores)):
            self.slots.put(slot)
        self.children: dict[tuple[int, int | None], subprocess.Popen | launch.ForkedRun] = {}  # (trial, seed) -> its run, while it runs
        self.stopped: set[int] = set()  # trials that were running when the sweep was interrupted
        self.interrupted = False
        self.halted: str | None = None  # why the sweep stopped itself
        self.tails = Tails()  # told trials whose runs still test and draw (handoff.py)
        self.handoff: Path | None = None  # a folder for the workers' gates and the trained files, made on first use

    def extra(self, run_id: str, run_name: str, seed: int | None) -> list[str]:
        """What the sweep adds to a run's command line after the user's overrides."""
        return extra_arguments(self.overrides, self.name, self.wandb, run_id, run_name, seed)

    def __call__(self, trial: optuna.Trial) -> float:
        if trial.user_attrs.get(SPARE):
            trial.study.stop()
            raise Spare(f"trial {trial.number}: every grid point is taken")
        if self.interrupted or self.halted:  # started while the sweep stops: queued again like the running ones
            self.stopped.add(trial.number)
            raise Interrupted(f"trial {trial.number} was not started: the sweep is stopping")
        values = self.sweep.values(trial)
        for key, value in {"host": HOST, "driver_pid": os.getpid()}.items():
            trial.set_user_attr(key, value)
        try:
            if self.seeds is None:
                return self._run_seed(trial, values, None)
            with ThreadPoolExecutor(len(self.seeds)) as pool:  # the worker slots decide how many run at once
                results = list(pool.map(lambda seed: self._run_seed(trial, values, seed), self.seeds))
            mean, std = _spread(results)
            for key, value in {"value": mean, "std": std, "n": len(results), "values": results}.items():
                trial.set_user_attr(key, value)
            return mean
        except (TrialFailed, Interrupted, SweepStopped) as error:
            trial.set_user_attr("error", str(error))
            if isinstance(error, SweepStopped):
                self.halt(str(error))
            raise

    def _run_seed(self, trial: optuna.Trial, values: dict[str, Any], seed: int | None) -> float:
        label = f"{trial.number}" if seed is None else f"{trial.number}-seed{seed}"
        run_id = f"{self.name}-{label}-{secrets.token_hex(3)}"  # unique even if the study is recreated
        log = self.folder / "logs" / f"trial-{label}.log"
        first = seed is None or seed == self.seeds[0]
        if first:  # what the table and best.yaml show; each seed's run is in `runs`
            trial.set_user_attr("run_id", run_id)
            trial.set_user_attr("log", str(log))
        command = self.sweep.command_line(values, self.extra(run_id, f"{self.name}-{label}", seed))
        run_attr = "run" if seed is None else f"run/seed{seed}"
        # The trial's id is Optuna's storage key, which the public API does not expose.
        spec = {**self.trial_spec, "trial_id": trial._trial_id, "driver_pid": os.getpid(), "run_attr": run_attr}
        if seed is not None:
            spec["pruning"] = None  # the seeds would report to one trial: the driver turns pruning off
        worker, environment = self.slots.get()
        trained = None
        try:
            if self.interrupted or self.halted:
                self.stopped.add(trial.number)
                raise Interrupted(f"trial {label} was not started: the sweep is stopping")
            print(f"trial {label} started (worker {worker}): {' '.join(command)}", flush=True)
            if "CUDA_VISIBLE_DEVICES" not in environment:  # no GPU: the next trial may start while this one tests
                self.handoff = self.handoff or Path(tempfile.mkdtemp(prefix="lightning_app-sweep-"))
                trained = self.handoff / f"trial-{label}.trained"
                spec.update(gate=str(self.handoff / f"worker-{worker}.gate"), trained=str(trained))
            key = (trial.number, seed)
            returncode = self._run(key, command, {**os.environ, **environment, ENV: json.dumps(spec)}, log, trained)
        finally:
            self.slots.put((worker, environment))

        def after(code: int) -> str | None:
            return self._after_tail(trial, key, label, run_attr, log, code)

        if returncode is None:  # its training is over: it tests and draws while the next trial starts
            self.tails.watch(key, self.children[key].wait, after)
        elif returncode != 0 and trial.number not in self.stopped and self._has_metric(trained_run(trained)):
            self.tails.watch(key, lambda: returncode, after)  # it failed after its training, before the sweep looked:
            returncode = None  # the same as when it fails later
        return self._result(trial, label, run_attr, returncode, run_id, log, first)

    def _run(self, key: tuple[int, int | None], command: list[str], environment: dict[str, str], log: Path,
             trained: Path | None) -> int | None:  # fmt: skip
        """The run's exit code; None (the run still in ``children``) once its ``trained`` file names a
        run folder whose summary holds the sweep metric."""
        log.parent.mkdir(parents=True, exist_ok=True)
        with open(log, "w") as output:
            child = launch.start(command, cli_arguments(command), environment, log, output, self.launcher)
            self.children[key] = child
            code = None
            try:
                code = wait_for_training(child, trained, self._has_metric)
                return code
            except KeyboardInterrupt:  # one worker: the signal came to this thread, and was passed on to the run
                code = child.wait()
                raise
            finally:
                if code is not None:
                    del self.children[key]

    def _has_metric(self, run: Path | None) -> bool:
        if run is None:
            return False
        try:
            return self.sweep.metric in read_dict(run / "summary.json", json.loads).get("last", {})
        except (OSError, ValueError):  # the run's exit decides, as without a handoff
            return False

    def _after_tail(self, trial: optuna.Trial, key: tuple[int, int | None], label: str, run_attr: str, log: Path,
                    code: int) -> str | None:  # fmt: skip
        """When a told trial's run has exited: a pruned run's summary says so; a failure is returned."""
        self.children.pop(key, None)
        reported = trial.study.get_trials(deepcopy=False)[trial.number].user_attrs
        if "pruned_at" in reported and run_attr in reported:
            _mark_pruned(Path(reported[run_attr]), reported["pruned_at"])
        if code != 0:
            return (f"trial {label}: its run exited with code {code} after its training (the test after fit or the "
                    f"pictures); the trial keeps its metric; the end of {log}:\n{_tail(log)}")  # fmt: skip
        return None

    def _result(self, trial: optuna.Trial, label: str, run_attr: str, returncode: int | None, run_id: str, log: Path,
                first: bool) -> float:  # fmt: skip
        """The trial's metric from its summary; ``returncode`` None: the run has said its training is over."""
        if trial.number in self.stopped:
            raise Interrupted(f"trial {label} was stopped with the sweep")
        reported = trial.study.get_trials(deepcopy=False)[trial.number].user_attrs  # as the run itself set them
        if "metric_missing" in reported:
            raise SweepStopped(f"trial {label}: {reported['metric_missing']}")
        run = Path(reported[run_attr]) if run_attr in reported else next(Path().glob(f"*/*/{run_id}"), None)
        if run is not None and first:
            trial.set_user_attr("run", str(run))
        if returncode not in (0, None):
            raise TrialFailed(f"trial {label} exited with code {returncode}; the end of {log}:\n{_tail(log)}")
        if run is None or not (run / "summary.json").exists():
            raise TrialFailed(f"trial {label} wrote no summary.json (run: {run}): the run must record its folder")
        try:
            summary = read_dict(run / "summary.json", json.loads)
        except (OSError, ValueError) as error:  # a broken summary fails the trial, not the sweep
            raise TrialFailed(f"trial {label}: {error}") from None
        metrics = {**summary.get("last", {}), **summary.get("test", {})}
        if self.sweep.metric not in metrics:  # every trial logs the same metrics: none would have it
            logged = sorted(metrics)
            raise SweepStopped(f"trial {label} did not log {self.sweep.metric!r} (logged: {logged}): fix `metric.name`")
        value = metrics[self.sweep.metric]
        if self.seeds is None:
            trial.set_user_attr("value", value)
        if "pruned_at" in reported:
            if returncode is not None:  # else once the run has exited, which writes its summary last
                _mark_pruned(run, reported["pruned_at"])
            raise optuna.TrialPruned(f"pruned after validation {reported['pruned_at']}")
        return value

    def announce(self, study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
        """An Optuna callback: one line per finished trial."""
        if SPARE in trial.user_attrs:
            return
        value = trial.user_attrs.get("value")
        if value is None:  # failed: why, with the end of its log
            result = trial.user_attrs.get("error", "")
        elif "n" in trial.user_attrs:
            result = f"{self.sweep.metric} = {value:.4f} ± {trial.user_attrs['std']:.4f} (n={trial.user_attrs['n']})"
        else:
            result = f"{self.sweep.metric} = {value:.4f}, {trial.user_attrs['run']}"
        print(f"trial {trial.number} {trial.state.name.lower()}: {result}", flush=True)

    def halt(self, reason: str) -> None:
        """Stops the sweep by itself: no new trial starts, and the running ones are stopped."""
        self.halted = reason
        for (number, seed), child in dict(self.children).items():
            if (number, seed) in self.tails.keys:  # a finished trial's test: let it end
                continue
            self.stopped.add(number)
            child.send_signal(signal.SIGINT)

    def on_signal(self, signum: int, frame: Any) -> None:
        """Ctrl-C or SIGTERM: stop the runs (gracefully; forcibly on a second signal) and the sweep."""
        first = not self.interrupted
        self.interrupted = True
        running = dict(self.children)
        self.stopped.update(number for number, seed in running if (number, seed) not in self.tails.keys)  # told: kept
        for child in running.values():
            child.send_signal(signal.SIGINT if first else signal.SIGKILL)
        if first:
            raise KeyboardInterrupt

    def close(self) -> None:
        """Waits for the runs that still test (the report is shown after them); removes the gates."""
        self.tails.join()
        if self.handoff is not None:
            shutil.rmtree(self.handoff, ignore_errors=True)


def _mark_pruned(run: Path, at: int) -> None:
    """Says in the run's summary that the sweep pruned it after validation ``at``."""
    try:
        summary = read_dict(run / "summary.json", json.loads)
    except (OSError, ValueError):
        return
    summary["status"] = f"pruned after validation {at}"
    replace_file(run / "summary.json", json.dumps(summary, indent=1))
