"""``python -m lightning_app.sweep SWEEP.yaml --trials 20``: a W&B sweep file, run without a W&B server.

Optuna does the search (grid, random, TPE for ``bayes``; successive halving for ``early_terminate``)
and keeps the study in a database: SQLite under ``runs/sweeps/<name>/`` by default, or any
PostgreSQL/MySQL URL that workers on several machines share. Rerunning the command, or starting
it on another machine, continues the same study to ``--trials`` (study.py). Every trial is a
normal ``fit`` run in its own process (trials.py); the results go to ``runs/sweeps/<name>/``
(report.py).
"""

import argparse
import math
import re
import signal
import sys
import warnings
from pathlib import Path

try:
    import optuna
except ImportError:
    raise SystemExit("python -m lightning_app.sweep needs Optuna: pip install -e '.[sweep]'") from None

from lightning_app.sweep.file import SweepFile, SweepFileError
from lightning_app.sweep.report import report
from lightning_app.sweep.study import fail_orphans, hidden, open_study, requeue, tally
from lightning_app.sweep.trials import TrialFailed, TrialRunner

warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)  # heartbeats, retries
PRUNE_DEFAULT = {"min_resource": 1, "reduction_factor": 3}  # --prune without early_terminate


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


def optimize(study: optuna.Study, admin: optuna.Study, runner: TrialRunner, target: int, workers: int) -> None:
    """Starts trials until the study holds ``target`` of them, finished or running (on any machine)."""

    def stop_when_full(study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
        if sum(tally(study)) >= target:  # other machines count too
            study.stop()

    while True:
        fail_orphans(admin)  # this machine's dead sweeps' trials, at once
        optuna.storages.fail_stale_trials(study)  # any machine's, by their heartbeat
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
