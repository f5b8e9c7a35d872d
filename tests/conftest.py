import contextlib
import multiprocessing.process
import os
import platform
import subprocess
from collections.abc import Iterator
from pathlib import Path

import joblib
import pytest
import torch

from tests.fakes import write_mnist

os.environ.setdefault("WANDB_MODE", "offline")
os.environ.setdefault("WANDB_SILENT", "true")
# W&B reads the code's git state with `git` processes; it plays no part in a test.
os.environ.setdefault("WANDB_DISABLE_GIT", "true")

ROOT = Path(__file__).parents[1]
# Where a run writes when it is started from the checkout with the defaults.
OUTPUT_FOLDERS = ("runs", "wandb", "lightning_logs")
# Written by Python and pytest themselves, not by a test.
TOOL_FILES = ("__pycache__", ".pytest_cache")
CHECKOUT_BEFORE = pytest.StashKey[set[Path]]()
CHECKOUT_CREATED = pytest.StashKey[list[Path]]()


class UnmarkedProcessStart(Exception):
    """A test without the `slow` mark started a process."""


def is_wandb_service(args) -> bool:
    """W&B's `wandb-core` service: started once per session by whichever test first logs to W&B, and
    shared by all later ones, so it is no one test's process."""
    program = args if isinstance(args, (str, os.PathLike)) else next(iter(args), "")
    return Path(os.fsdecode(program)).name == "wandb-core"


@contextlib.contextmanager
def refuse_process_starts(test: str) -> Iterator[list[str]]:
    """While active, every way Python starts a process raises ``UnmarkedProcessStart`` before the
    process exists; yields the messages, so that a refusal the code under test caught still fails."""
    refused: list[str] = []

    def refuse(how: str) -> None:
        refused.append(f"{test} starts a process ({how}): mark it @pytest.mark.slow")
        raise UnmarkedProcessStart(refused[-1])

    popen_init = subprocess.Popen.__init__

    def checked_popen_init(self, *args, **kwargs):
        command = kwargs["args"] if "args" in kwargs else args[0]
        if not is_wandb_service(command):
            refuse(f"subprocess.Popen {command!r}")
        popen_init(self, *args, **kwargs)

    def refuser(how: str):
        return lambda *args, **kwargs: refuse(how)

    patches = [(subprocess.Popen, "__init__", checked_popen_init)]
    patches += [(multiprocessing.process.BaseProcess, "start", refuser("multiprocessing Process.start"))]
    patches += [(os, name, refuser(f"os.{name}")) for name in ("fork", "forkpty", "posix_spawn", "posix_spawnp") if hasattr(os, name)]
    originals = [(owner, name, getattr(owner, name)) for owner, name, _ in patches]
    for owner, name, replacement in patches:
        setattr(owner, name, replacement)
    try:
        yield refused
    finally:
        for owner, name, original in originals:
            setattr(owner, name, original)


def refused_unless_slow(item: pytest.Item):
    """One phase of a test run under ``refuse_process_starts``, unless the test is marked `slow`."""
    if item.get_closest_marker("slow"):
        return (yield)
    with refuse_process_starts(item.nodeid) as refused:
        result = yield  # raises when the phase failed, a refusal included
    if refused:
        pytest.fail(refused[0], pytrace=False)
    return result


@pytest.hookimpl(wrapper=True)
def pytest_runtest_setup(item):
    return (yield from refused_unless_slow(item))


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item):
    return (yield from refused_unless_slow(item))


def checkout_outputs() -> set[Path]:
    """The checkout's top-level entries and everything under the folders a run writes to by default."""
    found = {path for path in ROOT.iterdir() if path.name not in TOOL_FILES}
    for name in OUTPUT_FOLDERS:
        found.update((ROOT / name).rglob("*"))
    return found


def pytest_sessionstart(session):
    # Libraries probe the machine once per process through a short-lived child and keep the answer
    # (`platform.processor()`, which W&B asks, runs `uname -p`; joblib counts cores with `lscpu`):
    # asked here, so that no test is blamed for being the first to ask.
    platform.processor()
    joblib.cpu_count(only_physical_cores=True)
    session.config.stash[CHECKOUT_BEFORE] = checkout_outputs()


def pytest_sessionfinish(session):
    created = sorted(checkout_outputs() - session.config.stash[CHECKOUT_BEFORE])
    session.config.stash[CHECKOUT_CREATED] = created
    if created:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


def pytest_terminal_summary(terminalreporter, config):
    created = config.stash.get(CHECKOUT_CREATED, [])
    if created:
        terminalreporter.section("tests wrote into the checkout", red=True)
        for path in created[:20]:
            terminalreporter.line(str(path.relative_to(ROOT)))
        terminalreporter.line("run them from a temporary folder (the `in_tmp` fixture) or give them a tmp_path root")


@pytest.fixture
def mnist_dir(tmp_path):
    """A folder with the four MNIST IDX files: 200 training and 100 test images of fake digits."""
    return write_mnist(tmp_path / "mnist")


@pytest.fixture
def in_tmp(tmp_path, monkeypatch):
    """Runs the test from an empty folder, so `runs/` lands there."""
    monkeypatch.chdir(tmp_path)
    return tmp_path


@pytest.fixture
def one_thread():
    """Runs the test on one torch thread: a tiny model's step gains nothing from a second, which only
    waits for the first (on a busy 2-core CPU a test of tiny runs took 8 times longer with two)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
