"""``python -m lightning_app.sweep SWEEP.yaml --trials 20``: a W&B sweep file, run without a W&B server.

Optuna does the search (grid, random, TPE for ``bayes``; successive halving for ``early_terminate``)
and keeps the study in a database: SQLite under ``runs/sweeps/<name>/`` by default, or any
PostgreSQL/MySQL URL that workers on several machines share. Rerunning the command, or starting
it on another machine, continues the same study to ``--trials`` (study.py). Every trial is a
normal ``fit`` run in its own process (trials.py); the results go to ``runs/sweeps/<name>/``
(report.py).
"""

import argparse
import contextlib
import functools
import gc
import io
import math
import os
import re
import signal
import sys
import threading
import warnings
from concurrent.futures import ThreadPoolExecutor, wait
from pathlib import Path

try:
    import optuna
except ImportError:
    raise SystemExit("python -m lightning_app.sweep needs Optuna: pip install -e '.[sweep]'") from None

from lightning_app.record.read import check_config_files
from lightning_app.sweep import launch
from lightning_app.sweep.checks import (
    CheckFailed,
    check_arguments,
    check_command,
    check_storage,
    cli_arguments,
    parse_here,
    wandb_off,
)
from lightning_app.sweep.file import SweepFile, SweepFileError, read_sweep_or_config
from lightning_app.sweep.grid import SPARE
from lightning_app.sweep.launch import parse_in_fork, share_wandb_service
from lightning_app.sweep.report import preload as preload_report
from lightning_app.sweep.report import report
from lightning_app.sweep.study import (
    fail_orphans,
    draft_study,
    hidden,
    new_database_file,
    open_study,
    publish_draft,
    remove_database_file,
    requeue,
    tally,
)
from lightning_app.sweep.study import preload as preload_storage
from lightning_app.sweep.trials import Interrupted, SweepStopped, TrialFailed, TrialRunner, extra_arguments

warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)  # heartbeats, retries
STATES = optuna.trial.TrialState
PRUNE_DEFAULT = {"min_resource": 1, "reduction_factor": 3}  # --prune without early_terminate
CHECK_RUN = ("check", "check")  # the W&B run id and name on the check's command lines (nothing is logged)


def check_extra(overrides: list[str], name: str, wandb: bool, seeds: list[int] | None) -> list[str]:
    """What the sweep adds to the check's command lines: the trials' own additions, with ``CHECK_RUN``
    for the W&B run and the first seed. The check and the fork server's warm-up parse the same."""
    return extra_arguments(overrides, name, wandb, *CHECK_RUN, seeds[0] if seeds else None)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m lightning_app.sweep", description=__doc__.split("\n")[0])
    parser.add_argument("sweep", help="a W&B sweep file, e.g. configs/sweeps/digits_mlp_sweep.yaml, or a fit "
                        "config (configs/mnist_mlp.yaml) to repeat over seeds")  # fmt: skip
    parser.add_argument("--trials", type=int, help="trials in the whole study, over every run and machine "
                        "(default: the file's run_cap; a grid: each combination once)")  # fmt: skip
    parser.add_argument("--workers", type=int, default=1, help="trials at once here, each on its own GPUs or CPU cores")
    parser.add_argument("--storage", help="Optuna storage URL: sqlite:///path.db, postgresql://user:pw@host/db, "
                        "mysql://... (default: sqlite under runs/sweeps/NAME/)")  # fmt: skip
    parser.add_argument("--name", help="the study, its W&B group and runs/sweeps/NAME/ (default: the file's stem)")
    parser.add_argument("--seed", type=int, default=0, help="seeds random and bayes (one per machine)")
    parser.add_argument("--prune", action=argparse.BooleanOptionalAction,
                        help="stop unpromising trials early (default: when the file has early_terminate)")  # fmt: skip
    parser.add_argument("--repeats", type=int, help="runs per configuration, with --seed_everything 0..N-1; "
                        "the study optimises their metric's mean")  # fmt: skip
    parser.add_argument("--seeds", help="runs per configuration with these seeds, e.g. 3,7,9 (instead of --repeats)")
    parser.add_argument("--metric", default="val/acc_best", help="for a fit config: the metric whose mean and spread "
                        "are reported (a sweep file names its own)")  # fmt: skip
    parser.add_argument("--goal", default="maximize", choices=["maximize", "minimize"], help="for a fit config: "
                        "the --metric's better direction")  # fmt: skip
    parser.add_argument("--launcher", choices=["fork", "subprocess"], default="fork", help="how a trial of "
                        "`python -m lightning_app` starts: a fork of a process that imported torch and Lightning "
                        "once (seconds less per trial), or a fresh Python")  # fmt: skip
    parser.add_argument("--heartbeat", type=int, default=60, help="seconds between a worker's signs of life")
    parser.epilog = "Arguments after -- are overrides for every trial: -- --trainer.max_epochs=5"
    argv = sys.argv[1:] if argv is None else argv
    split = argv.index("--") if "--" in argv else len(argv)
    args = parser.parse_args(argv[:split])
    args.overrides = argv[split + 1 :]
    if args.repeats is not None and args.seeds is not None:
        parser.error("give --repeats N or --seeds A,B,C, not both")
    if args.seeds is not None:
        try:
            args.seeds = [int(seed) for seed in args.seeds.split(",")]
        except ValueError:
            parser.error(f"--seeds {args.seeds!r}: integers separated by commas, e.g. --seeds 3,7,9")
        if len(set(args.seeds)) < len(args.seeds):
            parser.error(f"--seeds {args.seeds}: a seed repeats")
    elif args.repeats is not None:
        args.seeds = list(range(args.repeats))
    for flag in ("trials", "workers", "heartbeat", "repeats"):
        if getattr(args, flag) is not None and getattr(args, flag) < 1:
            parser.error(f"--{flag} must be at least 1")
    if args.name is not None and not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]*", args.name):
        parser.error(f"--name {args.name!r}: letters, digits, '_', '.' and '-' only (it names a folder and W&B runs)")
    return args


def plan(argv: list[str] | None) -> tuple[argparse.Namespace, SweepFile, bool]:
    """The command line's arguments (``name`` filled in), its sweep, and whether the trials log to W&B;
    SystemExit naming what is wrong."""
    args = parse_args(argv)
    try:
        sweep = read_sweep_or_config(args.sweep, args.metric, args.goal)
        no_wandb = wandb_off(sweep, args.overrides)
    except (SweepFileError, CheckFailed) as error:
        raise SystemExit(f"error: {error}") from None
    args.name = args.name or Path(args.sweep).stem
    return args, sweep, not no_wandb


def forks(args: argparse.Namespace, sweep: SweepFile) -> bool:
    """Whether the trials fork the preloaded server: the fork launcher, and trials of ``python -m lightning_app``."""
    return args.launcher == "fork" and cli_arguments(sweep.command_line({}, [])) is not None


def first_check_arguments(argv: list[str]) -> list[str]:
    """The CLI arguments the check parses first for the sweep command ``argv`` (none where it parses
    nothing, or where the command is wrong: the sweep says so itself). The fork server parses them as
    it loads (warm.py), so that what the parser loads and caches lazily is there for every trial."""
    try:
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
            args, sweep, wandb = plan(argv)
        extra = check_extra(args.overrides, args.name, wandb, args.seeds)
        first = (check_arguments(sweep, extra) or [[]])[0]
        check_config_files(first)  # the parser would wait on a FIFO for ever
    except (SystemExit, Exception):  # noqa: BLE001 - the sweep's own check reports it
        return []
    return first


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
        if all(t.user_attrs.get(SPARE) for t in study.get_trials(deepcopy=False)[before:]):  # a grid with nothing left
            return


def run_trials(study: optuna.Study, admin: optuna.Study, runner: TrialRunner, target: int, workers: int) -> None:
    """``optimize``, and on Ctrl-C or a stopped sweep the trials that were stopped queued again."""
    try:
        optimize(study, admin, runner, target, workers)
    except KeyboardInterrupt:
        requeue(admin, runner.stopped)  # so that rerunning the command runs them again
    except (SweepStopped, Interrupted):  # the first to reach here: a stopped trial of another worker may be
        if runner.interrupted:
            requeue(admin, runner.stopped)
        elif not runner.halted:
            raise


def first_failure(study: optuna.Study) -> str:
    """The first failed trial's error, its last line (the exception a traceback ends with)."""
    failed = [t for t in study.get_trials(deepcopy=False, states=(STATES.FAIL,)) if t.user_attrs.get("error")]
    if not failed:
        return "no trial ran"
    lines = failed[0].user_attrs["error"].strip().splitlines()
    head = lines[0].split(";")[0]  # "trial 0 exited with code 1"
    return head if len(lines) == 1 else f"{head}: {lines[-1].strip()} (log: {failed[0].user_attrs.get('log')})"


def prepare(wandb: bool) -> None:
    """What the trials and the study need, while the driver waits for the trials' fork server: the
    storage's modules (the study opens right after the checks) and W&B's service (launch.py).

    The command runs with the garbage collector off until then (``__main__.py``): each full
    collection would walk every object loaded so far, and one came in the middle of the first
    trial's start (0.1 s). What was loaded is then frozen out of the collector's reach, and the
    collector is on again. A driver called from Python (the collector on) is left as it is."""
    try:
        preload_storage()
        if wandb:
            share_wandb_service()
    finally:
        if not gc.isenabled():
            gc.freeze()
            gc.enable()


def check(sweep: SweepFile, url: str, runner: TrialRunner, argv: list[str]) -> threading.Thread:
    """What every trial shares (checks.py): fails the sweep before its first trial. Returns the thread
    that prepares the study and the trials meanwhile: joined before either starts. With the fork
    launcher the parses run in forks of the trials' server: started here, unless the command started
    it already, from ``argv`` (the sweep command's arguments), from which it finds what to parse as
    it loads; and where the study is a new SQLite file (the default), it is drafted while they wait,
    under a name of its own, and named once the checks pass (a failed check leaves no study behind)."""
    threading.Thread(target=preload_report, name="preload-report", daemon=True).start()  # by the sweep's end
    preparing = threading.Thread(target=prepare, args=(runner.wandb,), name="prepare", daemon=True)
    preparing.start()
    drafting, final = None, None
    try:
        check_storage(url)
        fork = runner.launcher == "fork"
        final = new_database_file(url)
        if final is not None and fork:  # 0.15-0.2 s that the wait for the fork server hides (a parse here would not)
            draft = final.with_name(f".{final.name}.{os.getpid()}.draft")
            pool = ThreadPoolExecutor(1, thread_name_prefix="draft-study")
            drafting = pool.submit(draft_study, sweep, runner.name, draft)
            pool.shutdown(wait=False)  # its thread ends with the draft
        extra = check_extra(runner.overrides, runner.name, runner.wandb, runner.seeds)
        parse = functools.partial(parse_in_fork, sweep_arguments=argv) if fork else parse_here
        check_command(sweep, extra, parse, at_once=fork)
    except BaseException as error:  # a failed check, Ctrl-C: the draft goes
        if drafting is not None:
            wait([drafting])
            remove_database_file(draft)
        if isinstance(error, CheckFailed):
            raise SystemExit(f"error: {error}") from None
        raise
    if drafting is not None:
        try:
            drafting.result()
        except Exception:  # noqa: BLE001 - opening the study meets it again, and says what it is
            remove_database_file(draft)
        else:
            publish_draft(draft, final)
    return preparing


def main(argv: list[str] | None = None) -> optuna.Study:
    """Runs the sweep; ``argv`` as on the command line (``["configs/sweeps/x.yaml", "--trials", "4"]``)."""
    argv = sys.argv[1:] if argv is None else argv
    args, sweep, wandb = plan(argv)
    name = args.name
    if not forks(args, sweep):
        launch.stop_server()  # the command started it before knowing (__main__.py)
    target = trial_count(sweep, args.trials)
    pruning = None if args.prune is False else sweep.pruning or (PRUNE_DEFAULT if args.prune else None)
    if args.seeds and pruning:  # every seed would report to the one trial: the pruner would compare a mix
        print(f"sweep {name}: no pruning with --repeats/--seeds (the seeds of a configuration share its trial)")
        pruning = None
    folder = Path("runs/sweeps") / name
    folder.mkdir(parents=True, exist_ok=True)
    url = args.storage or f"sqlite:///{folder / 'study.db'}"
    runner = TrialRunner(sweep, name, folder, url, pruning, args.workers, args.overrides, args.seeds, wandb,
                         args.launcher)  # fmt: skip
    optuna.logging.set_verbosity(optuna.logging.ERROR)  # trials are announced here, one line each
    check(sweep, url, runner, argv).join()
    study, admin = open_study(sweep, name, url, args.seed, args.heartbeat)
    seeds = f", seeds {args.seeds} per configuration" if args.seeds else ""
    print(f"sweep {name}: {sweep.method} search for {target} trials, {args.workers} at once{seeds}, "
          f"{'pruning ' + str(pruning) if pruning else 'no pruning'}, study in {hidden(url)}", flush=True)  # fmt: skip
    handlers = {signum: signal.signal(signum, runner.on_signal) for signum in (signal.SIGINT, signal.SIGTERM)}
    try:
        run_trials(study, admin, runner, target, args.workers)
        text = report(study, sweep, folder)  # while the last runs still test: it needs only their trials
    finally:
        runner.close()  # the runs still testing end before the report is shown (a second Ctrl-C kills them)
        for signum, handler in handlers.items():
            signal.signal(signum, handler)
    print(text, flush=True)
    for failure in runner.tails.failures:  # said when it happened too
        print(failure.split("; the end of")[0], flush=True)
    if runner.interrupted:
        raise SystemExit(130)  # the shell's code for Ctrl-C
    if runner.halted:
        raise SystemExit(f"error: sweep {name} stopped: {runner.halted}")
    if not any(t.state in (STATES.COMPLETE, STATES.PRUNED) for t in study.get_trials(deepcopy=False)):
        raise SystemExit(f"error: sweep {name}: no trial finished; the first failure: {first_failure(study)}")
    return study
