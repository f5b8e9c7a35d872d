"""The trials' fork server's preload (lightning_app/sweep/warm.py), in a fresh Python."""

import subprocess
import sys
from pathlib import Path

import pytest

from tests.lightning_app.test_main import spy

ROOT = Path(__file__).parents[3]


@pytest.mark.slow
def test_the_fork_server_loads_with_the_collector_off_then_freezes_what_it_loaded(monkeypatch):
    monkeypatch.delenv("LIGHTNING_APP_SWEEP_WARM", raising=False)
    seen = spy("lightning_app.sweep.warm", ["torch", "lightning", "wandb"], [])
    assert seen["seen"] == {"torch": False, "lightning": False, "wandb": False}
    assert seen["on"] and seen["frozen"] > 100_000  # every trial, a fork, starts with them frozen


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
    assert started and not servers_of(marker)
