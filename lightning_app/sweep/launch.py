"""How and where a trial's process starts: a fresh Python (``subprocess``) or a fork of a preloaded
one (``fork``), on each worker's own GPUs and share of the cores.

A fresh ``python -m lightning_app fit`` spends seconds importing torch, Lightning, W&B and the
project before it trains; on a small model that is most of a trial. With ``--launcher fork`` (the
default for trials that run ``python -m lightning_app``) the sweep starts one multiprocessing
fork server that imports all that once, and each trial is a fork of it: still its own process,
so a crash, an out-of-memory kill or a ``kill -9`` of a trial fails that trial only. The child
takes the trial's environment (``CUDA_VISIBLE_DEVICES``, ``OMP_NUM_THREADS``, ``WANDB_*``) before
anything initialises CUDA (the server imports torch but never touches a device), its working
folder, and writes its output to the trial's log; its exit code is the run's, and a signal that
kills it reads as ``-signal``, as with a subprocess. Trials that log to W&B share one W&B service,
started by the sweep (``share_wandb_service``), as W&B does for the child processes of a process.
"""

import json
import multiprocessing
import os
import signal
import subprocess
import sys
import tempfile
import threading
from multiprocessing import forkserver
from pathlib import Path

# What the fork server imports: every module a trial imports, and the trials' command line parsed once
# (warm.py: from the sweep command's arguments, WARM).
PRELOAD = ["lightning_app.sweep.warm"]
WARM = "LIGHTNING_APP_SWEEP_WARM"
_context = None
_starting = threading.Lock()


def start_server(sweep_arguments: list[str] | None = None):
    """Starts the trials' fork server, unless it runs already, and returns its context. It loads for
    seconds, beside this process: ``python -m lightning_app.sweep`` starts it before its own imports.
    ``sweep_arguments``: the sweep command's, from which it finds the trials' command line to parse once."""
    global _context
    with _starting:  # the two checks ask at once (checks.py)
        if _context is None:
            context = multiprocessing.get_context("forkserver")
            context.set_forkserver_preload(PRELOAD)
            os.environ[WARM] = json.dumps(sweep_arguments)  # the server is started with this environment
            try:
                forkserver.ensure_running()
            finally:
                del os.environ[WARM]
            _context = context
    return _context


def asks_for_subprocesses(sweep_arguments: list[str]) -> bool:
    """Whether the sweep's command line says ``--launcher subprocess`` (as argparse reads it, an
    abbreviation such as ``--launch=subprocess`` too), before the overrides after ``--``."""
    arguments = sweep_arguments[: sweep_arguments.index("--")] if "--" in sweep_arguments else sweep_arguments
    for index, argument in enumerate(arguments):
        flag, equals, value = argument.partition("=")
        if len(flag) >= 3 and "--launcher".startswith(flag):
            value = value if equals else (arguments[index + 1] if index + 1 < len(arguments) else "")
            if value == "subprocess":
                return True
    return False


def stop_server() -> None:
    """Ends the fork server now, where no trial will fork it (another launcher or program, a sweep that
    stops before its first trial): it would otherwise load on for seconds, holding the sweep's output
    open, so that a pipe or ``subprocess.run`` would wait for it. Never while forked trials run: the
    server reports their exit codes."""
    global _context
    with _starting:
        server = forkserver._forkserver
        if getattr(server, "_forkserver_pid", None) is not None:
            try:
                os.kill(server._forkserver_pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            server._stop()  # reaps it, closes its pipe and removes its socket
        _context = None


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


def share_wandb_service() -> None:
    """Starts W&B's service in this process, once for every trial.

    ``wandb.setup()`` puts the service's address in ``WANDB_SERVICE``, which each trial's environment
    takes from this one: a trial connects to it rather than starting and awaiting its own (0.2 s a
    trial). The service ends with this process (W&B's exit hook); a trial that dies leaves it running.
    """
    try:
        import wandb

        wandb.setup()
    except Exception:  # noqa: BLE001 - then each trial starts its own, and says what is wrong
        pass


def _run_cli(arguments: list[str], environment: dict[str, str], folder: str, log: str) -> None:
    """The forked child: becomes ``python -m lightning_app ARGUMENTS`` with its own environment and log."""
    os.chdir(folder)
    os.environ.clear()
    os.environ.update(environment)
    output = os.open(log, os.O_WRONLY | os.O_APPEND)
    for stream in (1, 2):
        os.dup2(output, stream)
    os.close(output)
    signal.signal(signal.SIGINT, signal.default_int_handler)  # Ctrl-C stops the run, as in its own Python
    import torch

    if "OMP_NUM_THREADS" in environment:  # torch read it when the server imported it
        torch.set_num_threads(int(environment["OMP_NUM_THREADS"]))
    import lightning_app.__main__ as entry

    sys.argv = [entry.__file__, *arguments]  # what a DDP launcher restarts for the other ranks
    entry.run()  # as `python -m lightning_app`: the server's modules frozen out of the collector's reach


class ForkedRun:
    """A trial forked from the preloaded server; used as a ``subprocess.Popen`` (``pid``, ``send_signal``, ``wait``)."""

    def __init__(self, arguments: list[str], environment: dict[str, str], log: Path) -> None:
        self.process = start_server().Process(
            target=_run_cli, args=(arguments, environment, os.getcwd(), str(log)), daemon=False
        )
        self.process.start()
        self.pid = self.process.pid

    def send_signal(self, signum: int) -> None:
        try:
            os.kill(self.pid, signum)
        except ProcessLookupError:  # it has just ended
            pass

    def wait(self, timeout: float | None = None) -> int | None:
        """The exit code; None while it still runs after ``timeout`` seconds."""
        self.process.join(timeout)
        return self.process.exitcode


def parse_in_fork(arguments: list[str], sweep_arguments: list[str] | None = None) -> tuple[int, str]:
    """``--print_config`` of these CLI arguments in a fork of the preloaded server (started with
    ``sweep_arguments`` unless it runs): (exit code, its output)."""
    start_server(sweep_arguments)
    with tempfile.NamedTemporaryFile("r", suffix=".log") as log:
        code = ForkedRun([*arguments, "--print_config"], dict(os.environ), Path(log.name)).wait()
        return code, log.read()


def start(command: list[str], cli_arguments: list[str] | None, environment: dict[str, str], log: Path, output,
          launcher: str):  # fmt: skip
    """The trial's process: forked when ``launcher`` is ``fork`` and it runs ``python -m lightning_app``."""
    if launcher == "fork" and cli_arguments is not None:
        return ForkedRun(cli_arguments, environment, log)
    return subprocess.Popen(command, stdout=output, stderr=subprocess.STDOUT, env=environment)
