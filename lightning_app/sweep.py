"""``python -m lightning_app.sweep SWEEP.yaml --trials 20``: a W&B sweep file, run without a W&B server.

Optuna does the search (grid, random, TPE for ``bayes``; successive halving for ``early_terminate``)
and keeps the study in a database: SQLite under ``runs/sweeps/<name>/`` by default, or any
PostgreSQL/MySQL URL that workers on several machines share. Every trial is a normal ``fit`` run
(see sweep_trials.py). The study counts its trials: rerunning the command, or starting it on
another machine, continues the same study to ``--trials``. A trial whose sweep process died
(killed, preempted) is failed and queued again: at once when it ran on this machine, else once
its heartbeat is ``2 * --heartbeat`` seconds old.
"""

import argparse
import copy
import json
import math
import os
import re
import signal
import sys
import warnings
from pathlib import Path

try:
    import optuna
except ImportError:
    raise SystemExit("python -m lightning_app.sweep needs Optuna: pip install -e '.[sweep]'") from None
from sqlalchemy.engine import make_url
from sqlalchemy.exc import SQLAlchemyError

from lightning_app.sweep_file import SweepFile, SweepFileError
from lightning_app.sweep_report import report
from lightning_app.sweep_trials import HOST, TrialFailed, TrialRunner, open_storage

warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)  # heartbeats, retries
STATES = optuna.trial.TrialState
PRUNE_DEFAULT = {"min_resource": 1, "reduction_factor": 3}  # --prune without early_terminate
RETRY = optuna.storages.RetryHeartbeatStaleTrialCallback(max_retry=3)  # then a trial counts as failed


def retry(study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
    """Queues a failed trial again, same parameters; what its run recorded (host, run folder) is not copied."""
    fresh = copy.copy(trial)
    fresh.user_attrs = {}
    RETRY(study, fresh)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m lightning_app.sweep", description=__doc__.split("\n")[0])
    parser.add_argument("sweep", help="a W&B sweep file, e.g. configs/sweeps/digits_mlp_sweep.yaml")
    parser.add_argument("--trials", type=int, help="trials in the whole study, over every run and machine "
                        "(default: the file's run_cap; a grid: each combination once)")  # fmt: skip
    parser.add_argument("--workers", type=int, default=1, help="trials at once here, each on its own GPUs or CPU cores")
    parser.add_argument("--storage", help="Optuna storage URL: sqlite:///path.db, postgresql://user:pw@host/db, "
                        "mysql://... (default: sqlite under runs/sweeps/NAME/)")  # fmt: skip
    parser.add_argument("--name", help="the study, its W&B group and runs/sweeps/NAME/ (default: the file's stem)")
    parser.add_argument("--seed", type=int, default=0, help="seeds random and bayes (one per machine)")
    parser.add_argument("--prune", action=argparse.BooleanOptionalAction,
                        help="stop unpromising trials early (default: when the file has early_terminate)")  # fmt: skip
    parser.add_argument("--heartbeat", type=int, default=60, help="seconds between a worker's signs of life")
    parser.epilog = "Arguments after -- are overrides for every trial: -- --trainer.max_epochs=5"
    argv = sys.argv[1:] if argv is None else argv
    split = argv.index("--") if "--" in argv else len(argv)
    args = parser.parse_args(argv[:split])
    args.overrides = argv[split + 1 :]
    for flag in ("trials", "workers", "heartbeat"):
        if getattr(args, flag) is not None and getattr(args, flag) < 1:
            parser.error(f"--{flag} must be at least 1")
    if args.name is not None and not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]*", args.name):
        parser.error(f"--name {args.name!r}: letters, digits, '_', '.' and '-' only (it names a folder and W&B runs)")
    return args


def trial_count(sweep: SweepFile, trials: int | None) -> int:
    if sweep.method == "grid":
        size = math.prod(len(choices) for choices in sweep.grid.values())
        return min(trials or size, size)
    if trials or sweep.run_cap:
        return trials or sweep.run_cap
    raise SystemExit(f"error: {sweep.path}: a {sweep.method} search never ends by itself: give --trials N")


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
        sampler = optuna.samplers.GridSampler(sweep.grid, seed=0)  # one order on every worker, so they share it out
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
    """(finished, running) trials; a failed trial that was queued again counts through its retry."""
    trials = study.get_trials(deepcopy=False)
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
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


def requeue_orphans(admin: optuna.Study) -> None:
    """Requeues the running trials of this machine whose sweep process is gone, without waiting for their heartbeat."""
    dead = set()
    for trial in admin.get_trials(deepcopy=False, states=(STATES.RUNNING,)):
        # A trial just started may not have its driver_pid yet: taken for alive.
        if trial.user_attrs.get("host") == HOST and not alive(trial.user_attrs.get("driver_pid", os.getpid())):
            dead.add(trial.number)
    requeue(admin, dead)


def optimize(study: optuna.Study, admin: optuna.Study, runner: TrialRunner, target: int, workers: int) -> None:
    """Starts trials until the study holds ``target`` of them, finished or running (on any machine)."""

    def stop_when_full(study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
        if sum(tally(study)) >= target:  # other machines count too
            study.stop()

    while True:
        requeue_orphans(admin)
        optuna.storages.fail_stale_trials(study)  # other machines' dead trials, by their heartbeat
        remaining = target - sum(tally(study))
        if remaining <= 0:
            return
        before = len(study.get_trials(deepcopy=False))
        study.optimize(runner, n_trials=remaining, n_jobs=min(workers, remaining), catch=(TrialFailed,),
                       callbacks=[runner.announce, stop_when_full])  # fmt: skip
        if len(study.get_trials(deepcopy=False)) == before:  # e.g. a grid with nothing left
            return


def main(argv: list[str] | None = None) -> optuna.Study:
    """Runs the sweep; ``argv`` as on the command line (``["configs/sweeps/x.yaml", "--trials", "4"]``)."""
    args = parse_args(argv)
    try:
        sweep = SweepFile.read(args.sweep)
    except SweepFileError as error:
        raise SystemExit(f"error: {error}") from None
    name = args.name or Path(args.sweep).stem
    target = trial_count(sweep, args.trials)
    pruning = None if args.prune is False else sweep.pruning or (PRUNE_DEFAULT if args.prune else None)
    folder = Path("runs/sweeps") / name
    folder.mkdir(parents=True, exist_ok=True)
    url = args.storage or f"sqlite:///{folder / 'study.db'}"
    optuna.logging.set_verbosity(optuna.logging.ERROR)  # trials are announced here, one line each
    study, admin = open_study(sweep, name, url, args.seed, args.heartbeat)
    runner = TrialRunner(sweep, name, folder, url, pruning, args.workers, args.overrides)
    print(f"sweep {name}: {sweep.method} search for {target} trials, {args.workers} at once, "
          f"{'pruning ' + str(pruning) if pruning else 'no pruning'}, study in {hidden(url)}", flush=True)  # fmt: skip
    handlers = {signum: signal.signal(signum, runner.on_signal) for signum in (signal.SIGINT, signal.SIGTERM)}
    try:
        optimize(study, admin, runner, target, args.workers)
    except KeyboardInterrupt:
        requeue(admin, runner.stopped)  # so that rerunning the command runs them again
    finally:
        for signum, handler in handlers.items():
            signal.signal(signum, handler)
    print(report(study, sweep, folder), flush=True)
    if runner.interrupted:
        raise SystemExit(130)  # the shell's code for Ctrl-C
    return study


if __name__ == "__main__":
    main()
