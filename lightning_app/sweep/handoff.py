"""A CPU worker starts its next trial while the last one tests and draws, and trains it once that has exited.

A trial's run ends its training, then tests and draws its pictures (0.4 s for a small model). The
sweep does not wait for that:

- At the end of its training the run's SweepTrial callback writes its run folder into the trial's
  ``trained`` file. The sweep reads the metric from that run's ``summary.json`` (its ``last``
  values, final by then), gives it to Optuna, which samples the next trial knowing it, and starts
  the next trial on the same worker.
- Before it trains, a run takes its worker's turn: an exclusive lock on the worker's ``gate`` file,
  held until its process ends (the kernel drops it even on ``kill -9``). So the next run parses,
  starts W&B and reads its data while the last one tests, and trains alone on the worker's cores.
- The sweep still waits for the last run's exit (``Tails``) before its report: an exit code other
  than 0 (the test after fit or the pictures failed) is said on the console and at the end of the
  report; the trial keeps its metric, which its training produced.

Only on workers without GPUs: two runs on one GPU could run out of its memory. A sweep metric that
is not in ``last`` (a ``test/`` one) is read when the run has exited, as before.
"""

import fcntl
import subprocess
import threading
import warnings
from pathlib import Path
from typing import Callable, TextIO

from lightning_app.record.read import replace_file

POLL = 0.02  # seconds between the sweep's looks for the end of a run's training


def take_turn(gate: str | None) -> TextIO | None:
    """Waits until the worker's last run has exited; holds the turn until this process ends (keep the file)."""
    if not gate:
        return None
    try:
        file = open(gate, "a")
    except OSError as error:  # the sweep's folder is gone (a temp cleaner, a crashed sweep): nothing to wait for
        warnings.warn(f"sweep: cannot open the worker's turn {gate} ({error.strerror}); this run trains without it")
        return None
    fcntl.flock(file, fcntl.LOCK_EX)  # Ctrl-C still interrupts the wait
    return file


def say_trained(trained: str | None, run: Path) -> None:
    """Tells the sweep that this run's training is over and where its ``summary.json`` is."""
    if not trained:
        return
    try:
        replace_file(Path(trained), str(run))  # the sweep never reads half a path
    except OSError as error:  # the sweep's folder is gone: it waits for this run's exit instead
        warnings.warn(f"sweep: cannot write {trained} ({error.strerror}); the sweep waits for this run's exit")


def trained_run(trained: Path | None) -> Path | None:
    """The run folder a ``say_trained`` file names, once it is there."""
    try:
        return Path(trained.read_text()) if trained is not None else None
    except FileNotFoundError:  # not yet
        return None


def wait_for_training(child, trained: Path | None, has_metric: Callable[[Path | None], bool]) -> int | None:
    """The run's exit code; None, the run still going, once its ``trained`` file names a run folder
    that ``has_metric`` (the sweep metric in its summary). ``child``: a ``Popen`` or a ``ForkedRun``."""
    while (code := _exit_code(child, POLL if trained else None)) is None:
        run = trained_run(trained)
        if has_metric(run):
            return None
        if run is not None:  # trained, but its metric comes from its test: wait for its exit
            trained = None
    return code


def _exit_code(child, timeout: float | None) -> int | None:
    try:
        return child.wait(timeout)
    except subprocess.TimeoutExpired:
        return None


class Tails:
    """Runs whose trials are told but whose processes still test and draw; each watched on a thread."""

    def __init__(self) -> None:
        self.keys: set = set()  # the runs' keys in TrialRunner.children
        self.failures: list[str] = []
        self._threads: list[threading.Thread] = []

    def watch(self, key, wait: Callable[[], int], done: Callable[[int], str | None]) -> None:
        """``wait`` for the run's exit code, then ``done(code)``: what went wrong, or None."""
        self.keys.add(key)

        def tail() -> None:
            try:
                failure = done(wait())
            finally:
                self.keys.discard(key)
            if failure:
                print(failure, flush=True)
                self.failures.append(failure)

        thread = threading.Thread(target=tail, name=f"tail-{key}", daemon=True)
        thread.start()
        self._threads.append(thread)

    def join(self) -> None:
        for thread in self._threads:
            thread.join()
