"""The suite's own check: a test without the `slow` mark that starts a process fails, naming itself."""

import contextlib
import multiprocessing
import os
import subprocess
import sys
from types import SimpleNamespace

import pytest

from tests.conftest import UnmarkedProcessStart, refuse_process_starts, refused_unless_slow

# Each is refused before a process exists, so none of them runs here.
STARTS = {
    "subprocess.Popen": lambda: subprocess.run([sys.executable, "-c", "pass"]),
    "multiprocessing Process.start": lambda: multiprocessing.get_context("spawn").Process(target=print).start(),
    "os.fork": lambda: os.fork(),
    "os.posix_spawn": lambda: os.posix_spawn(sys.executable, [sys.executable, "-c", "pass"], os.environ),
}


def fake_item(marker=None):
    return SimpleNamespace(nodeid="tests/test_x.py::test_y", get_closest_marker=lambda name: marker)


@pytest.mark.parametrize("how", STARTS)
def test_a_process_start_is_refused_and_names_the_test(how):
    popen_init = subprocess.Popen.__init__
    with refuse_process_starts("tests/test_x.py::test_y") as refused:
        with pytest.raises(UnmarkedProcessStart, match=rf"tests/test_x.py::test_y starts a process \({how}.*mark it @pytest.mark.slow"):
            STARTS[how]()
    assert len(refused) == 1
    assert subprocess.Popen.__init__ is popen_init  # restored after the test


def test_a_refusal_the_test_caught_still_fails_it():
    phase = refused_unless_slow(fake_item())
    next(phase)  # the test runs
    with contextlib.suppress(UnmarkedProcessStart):
        STARTS["subprocess.Popen"]()
    with pytest.raises(pytest.fail.Exception, match=r"tests/test_x.py::test_y starts a process \(subprocess.Popen"):
        phase.send(None)


def test_a_slow_test_may_start_processes():
    popen_init = subprocess.Popen.__init__
    phase = refused_unless_slow(fake_item(marker=pytest.mark.slow))
    next(phase)
    assert subprocess.Popen.__init__ is popen_init
    with pytest.raises(StopIteration):
        phase.send(None)
