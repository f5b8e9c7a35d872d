import gc
import json
import subprocess
import sys

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
# started to load, runs `python -m COMMAND ARGUMENTS` in this process, and prints what it saw.
SPY = """
import gc, json, runpy, sys
command, modules, arguments = sys.argv[1], json.loads(sys.argv[2]), json.loads(sys.argv[3])
seen = {}

class Spy:
    def find_spec(self, name, path=None, target=None):
        if name in modules and name not in seen:
            seen[name] = gc.isenabled()

sys.meta_path.insert(0, Spy())
sys.argv = [command, *arguments]
try:
    runpy.run_module(command, run_name="__main__")
except SystemExit:
    pass
print(json.dumps({"seen": seen, "on": gc.isenabled(), "frozen": gc.get_freeze_count()}), flush=True)
"""


def spy(command: str, modules: list[str], arguments: list[str]) -> dict:
    """What SPY saw of the collector in ``python -m COMMAND ARGUMENTS``, in a fresh Python."""
    run = subprocess.run([sys.executable, "-c", SPY, command, json.dumps(modules), json.dumps(arguments)],
                         capture_output=True, text=True, check=True)  # fmt: skip
    return json.loads(run.stdout.strip().splitlines()[-1])


@pytest.mark.slow
def test_the_command_loads_torch_and_lightning_with_the_collector_off_and_runs_with_it_on():
    seen = spy("lightning_app", ["torch", "lightning"], ["fit", "--help"])
    assert seen["seen"] == {"torch": False, "lightning": False}  # no full collection walks them while they load
    assert seen["on"] and seen["frozen"] > 100_000  # then they are frozen out of its reach, and it is on
