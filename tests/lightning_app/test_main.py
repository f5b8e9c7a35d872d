import gc
import json
import subprocess
import sys
from pathlib import Path

import pytest

import lightning_app.__main__ as entry


def test_the_entry_point_freezes_the_imported_objects_before_the_run_and_after_it(monkeypatch):
    seen, made = [], []

    def main() -> None:
        seen.append(gc.get_freeze_count())
        made.extend([] for _ in range(1000))  # what a run leaves until exit

    monkeypatch.setattr(entry, "main", main)
    monkeypatch.setattr(entry, "fix_malloc_thresholds", lambda: True)  # this test process's allocator stays as it is
    gc.unfreeze()
    try:
        entry.run()
        after = gc.get_freeze_count()
    finally:
        gc.unfreeze()  # this test process collects as usual again
    assert seen[0] > 100_000  # torch's and Lightning's objects, frozen when the run starts
    assert after >= seen[0] + len(made)  # and what the run made, frozen at its end


def test_the_entry_point_fixes_the_malloc_thresholds_before_the_run(monkeypatch):
    calls = []
    monkeypatch.setattr(entry, "fix_malloc_thresholds", lambda: calls.append("malloc"))
    monkeypatch.setattr(entry, "main", lambda: calls.append("main"))
    monkeypatch.setattr(entry.gc, "freeze", lambda: None)
    entry.run()
    assert calls == ["malloc", "main"]


def test_the_entry_point_turns_the_collector_on_for_the_run(monkeypatch):
    seen = []
    monkeypatch.setattr(entry, "main", lambda: seen.append(gc.isenabled()))
    monkeypatch.setattr(entry, "fix_malloc_thresholds", lambda: True)
    gc.disable()  # as the command leaves it while torch and Lightning load
    try:
        entry.run()
        after = gc.isenabled()
    finally:
        gc.enable()
        gc.unfreeze()
    assert seen == [True] and after


# Run as `python -c SPY COMMAND MODULES ARGUMENTS`: notes whether the collector was on as each of MODULES
# started to load, runs `python -m COMMAND ARGUMENTS` in this process, and prints what it saw once the
# module returns, or as the process exits (a command that completes ends through quick_exit, which
# runs the atexit handlers and no code after it).
SPY = """
import atexit, gc, json, runpy, sys
command, modules, arguments = sys.argv[1], json.loads(sys.argv[2]), json.loads(sys.argv[3])
seen, reported = {}, []

class Spy:
    def find_spec(self, name, path=None, target=None):
        if name in modules and name not in seen:
            seen[name] = gc.isenabled()

def report():
    if reported:
        return
    reported.append(True)
    signal = type(sys.modules.get("scipy.signal")).__name__  # "Deferred": a stand-in (lightning_app/deferred.py)
    loaded = sorted(name for name in sys.modules if name.startswith("scipy.signal."))
    print(json.dumps({"seen": seen, "on": gc.isenabled(), "frozen": gc.get_freeze_count(), "scipy.signal": signal,
                      "scipy.signal.*": loaded}), flush=True)

atexit.register(report)
sys.meta_path.insert(0, Spy())
sys.argv = [command, *arguments]
try:
    runpy.run_module(command, run_name="__main__")
except SystemExit:
    pass
report()
"""


def spy(command: str, modules: list[str], arguments: list[str], cwd=None) -> dict:
    """What SPY saw of the collector in ``python -m COMMAND ARGUMENTS``, in a fresh Python."""
    run = subprocess.run([sys.executable, "-c", SPY, command, json.dumps(modules), json.dumps(arguments)],
                         capture_output=True, text=True, check=True, cwd=cwd)  # fmt: skip
    return json.loads(run.stdout.strip().splitlines()[-1])


@pytest.mark.slow
def test_the_command_loads_torch_and_lightning_with_the_collector_off_and_runs_with_it_on():
    seen = spy("lightning_app", ["torch", "lightning"], ["fit", "--help"])
    assert seen["seen"] == {"torch": False, "lightning": False}  # no full collection walks them while they load
    assert seen["on"] and seen["frozen"] > 100_000  # then they are frozen out of its reach, and it is on


@pytest.mark.slow
def test_a_run_never_loads_scipy_signal_which_importing_lightning_would(tmp_path):
    config = str(Path(__file__).parents[2] / "configs/digits_mlp.yaml")
    seen = spy("lightning_app", [], ["fit", "--config", config, "--trainer.fast_dev_run", "2"], cwd=tmp_path)
    assert seen["scipy.signal"] == "Deferred" and seen["scipy.signal.*"] == []  # the test after fit and pictures too
    assert list(tmp_path.glob("runs/**/summary.json"))  # the run did run


@pytest.mark.slow
def test_text_generation_never_loads_scipy_signal_either():
    seen = spy("lightning_app.generate", [], ["--help"])
    assert seen["scipy.signal"] == "Deferred" and seen["scipy.signal.*"] == []
    # What loads it when it is used: the whole module, with the window torchmetrics adds.
    code = ("from lightning_app.deferred import defer_unused_imports; defer_unused_imports(); import torchmetrics, "
            "sys; from scipy.signal import butter; s = sys.modules['scipy.signal']; print(type(s).__name__, "
            "[round(float(x), 6) for x in s.hamming(3)])")  # fmt: skip
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert out[0] == "module" and out[1:] == ["[0.08,", "1.0,", "0.08]"]
