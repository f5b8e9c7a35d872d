import subprocess
import sys
import textwrap
import threading
import time

import pytest

from lightning_app import quick_exit as module
from lightning_app.quick_exit import quick_exit


class Exited(Exception):
    pass


@pytest.fixture
def calls(monkeypatch):
    """What quick_exit does, in order, with the process's real exit and atexit handlers stood in for."""
    done: list[str] = []

    def exit_(code: int) -> None:
        done.append(f"exit {code}")
        raise Exited

    monkeypatch.setattr(module.os, "_exit", exit_)
    monkeypatch.setattr(module.atexit, "_run_exitfuncs", lambda: done.append("atexit"))
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    return done


def test_it_waits_for_the_threads_then_runs_the_atexit_handlers_then_exits_with_the_code(calls):
    def work() -> None:
        time.sleep(0.2)
        calls.append("thread done")

    threading.Thread(target=work).start()
    threading.Thread(target=time.sleep, args=(60,), daemon=True).start()  # a daemon is not waited for
    with pytest.raises(Exited):
        quick_exit(3)
    assert calls == ["thread done", "atexit", "exit 3"]


def test_a_process_of_a_distributed_job_exits_normally(calls, monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "2")
    assert quick_exit() is None
    assert calls == []


@pytest.mark.slow
def test_a_real_process_ends_with_its_output_its_atexit_handlers_and_its_code(tmp_path):
    script = textwrap.dedent(f"""
        import atexit, threading, time, sys
        from pathlib import Path
        from lightning_app.quick_exit import quick_exit
        folder = Path({str(tmp_path)!r})
        atexit.register(lambda: (folder / "atexit").write_text("ran"))
        threading.Thread(target=lambda: (time.sleep(0.3), (folder / "thread").write_text("ran"))).start()
        sys.stdout.write("buffered, no newline")
        quick_exit(5)
        (folder / "after").write_text("never")
    """)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert done.returncode == 5, done.stderr
    assert done.stdout == "buffered, no newline"
    assert sorted(path.name for path in tmp_path.iterdir()) == ["atexit", "thread"]
