"""The trials' fork server's preload (lightning_app/sweep/warm.py), in a fresh Python."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from lightning_app.sweep.launch import asks_for_subprocesses
from tests.lightning_app.test_main import spy

ROOT = Path(__file__).parents[3]


@pytest.mark.slow
def test_the_fork_server_loads_with_the_collector_off_then_freezes_what_it_loaded(monkeypatch):
    monkeypatch.delenv("LIGHTNING_APP_SWEEP_WARM", raising=False)
    seen = spy("lightning_app.sweep.warm", ["torch", "lightning", "wandb"], [])
    assert seen["seen"] == {"torch": False, "lightning": False, "wandb": False}
    assert seen["on"] and seen["frozen"] > 100_000  # every trial, a fork, starts with them frozen
    assert seen["scipy.signal"] == "Deferred"  # which importing Lightning would load, and no trial uses


def servers_of(marker: str) -> list[int]:
    """The live processes started with ``marker`` in their fork-server warm-up variable."""
    found = []
    for environ in Path("/proc").glob("[0-9]*/environ"):
        try:
            variables = environ.read_bytes().split(b"\0")
        except OSError:  # ended meanwhile, or not ours to read
            continue
        if any(v.startswith(b"LIGHTNING_APP_SWEEP_WARM=") and marker.encode() in v for v in variables):
            found.append(int(environ.parent.name))
    return found


@pytest.mark.slow
@pytest.mark.parametrize("launcher", ["fork", "subprocess"])
def test_the_command_starts_the_server_first_and_ends_it_with_a_sweep_that_fails_early(in_tmp, launcher):
    # The storage's folder is missing: the sweep fails in its check, while the server it started
    # first thing is still loading. That server must not live on (it would hold the sweep's output).
    sweep = (ROOT / "configs/sweeps/digits_mlp_sweep.yaml").read_text()
    (in_tmp / "sweep.yaml").write_text(sweep.replace("configs/digits_mlp.yaml", str(ROOT / "configs/digits_mlp.yaml")))
    marker = str(in_tmp / "nowhere")
    command = [sys.executable, "-m", "lightning_app.sweep", "sweep.yaml", "--trials", "2", "--storage", f"sqlite:///{marker}/study.db",
               "--launcher", launcher]  # fmt: skip
    sweep_process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    started = []
    while sweep_process.poll() is None:  # the server shows while the sweep runs (it is started from the command line)
        started = started or servers_of(marker)
    output = sweep_process.stdout.read()  # to the end: every process that held the output has ended
    assert sweep_process.returncode == 1 and f"the folder {marker} does not exist" in output
    assert bool(started) == (launcher == "fork") and not servers_of(marker)  # none for subprocess trials


@pytest.mark.slow
@pytest.mark.parametrize("after", [0.0, 1.0])  # seconds: the sweep imports, then (on this machine) waits for the server
def test_ctrl_c_while_the_server_loads_ends_the_sweep_and_the_server_quietly(in_tmp, after):
    sweep = (ROOT / "configs/sweeps/digits_mlp_sweep.yaml").read_text()
    (in_tmp / "sweep.yaml").write_text(sweep.replace("configs/digits_mlp.yaml", str(ROOT / "configs/digits_mlp.yaml")))
    marker = str(in_tmp / "sweep.yaml")
    command = [sys.executable, "-m", "lightning_app.sweep", marker, "--trials", "2"]
    sweep_process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                     start_new_session=True)  # fmt: skip
    while not servers_of(marker) and sweep_process.poll() is None:
        pass
    time.sleep(after)
    os.killpg(sweep_process.pid, signal.SIGINT)  # as a terminal's Ctrl-C: to the sweep and its server
    output = sweep_process.stdout.read()
    assert sweep_process.wait() == 130 and "sweep stopped (Ctrl-C) before its first trial" in output
    assert "Traceback" not in output and not servers_of(marker)


@pytest.mark.slow
def test_the_server_warms_up_with_the_sweeps_first_command_line_and_builds_a_parser_for_its_trials(in_tmp):
    sweep = (ROOT / "configs/sweeps/digits_mlp_sweep.yaml").read_text()
    (in_tmp / "sweep.yaml").write_text(sweep.replace("configs/digits_mlp.yaml", str(ROOT / "configs/digits_mlp.yaml")))
    load = "import lightning_app.sweep.warm, lightning_app.cli as cli; print(len(cli._PREBUILT))"
    for argv, built in ((["sweep.yaml", "--trials", "2"], "1"), (["missing.yaml"], "0")):
        env = {**os.environ, "LIGHTNING_APP_SWEEP_WARM": json.dumps(argv)}
        done = subprocess.run([sys.executable, "-c", load], env=env, capture_output=True, text=True, check=True)
        assert done.stdout.split() == [built], done.stderr[-2000:]  # nothing to warm up with for a missing file


@pytest.mark.parametrize(
    "argv, subprocesses",
    [
        (["s.yaml", "--launcher", "subprocess"], True),
        (["s.yaml", "--trials", "4", "--launcher=subprocess"], True),
        (["s.yaml", "--l", "subprocess"], True),  # argparse takes any unambiguous abbreviation
        (["s.yaml", "--launcher", "fork"], False),
        (["s.yaml", "--", "--launcher", "subprocess"], False),  # an override of the trials, not the sweep's
        (["s.yaml", "--launcher"], False),
    ],
)
def test_the_command_starts_no_fork_server_for_subprocess_trials(argv, subprocesses):
    assert asks_for_subprocesses(argv) == subprocesses
