"""W&B as every run uses it: no console capture or system metrics unless asked, no Launch import unless used."""

import http.server
import importlib
import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import yaml
from lightning.pytorch.callbacks import Callback

from lightning_app.cli import main
from lightning_app.record.logger import CONFIG_NAME, LAUNCH_INPUTS, skip_unused_launch_inputs, wandb_offline, wandb_settings

ROOT = Path(__file__).parents[3]


class PrintSettings(Callback):
    """Prints the W&B run's console and system-metric settings, as the run sees them."""

    def on_train_start(self, trainer, pl_module) -> None:
        settings = trainer.logger.experiment.settings
        print(f"W&B console={settings.console} x_disable_stats={settings.x_disable_stats}")


def test_console_capture_and_system_metrics_are_off_unless_asked(monkeypatch):
    for name in ("WANDB_CONSOLE", "WANDB_X_DISABLE_STATS", "WANDB__DISABLE_STATS"):
        monkeypatch.delenv(name, raising=False)
    assert wandb_settings(capture=False) == {"console": "off", "x_disable_stats": True}
    assert wandb_settings(capture=True) == {}  # W&B's own defaults
    monkeypatch.setenv("WANDB_CONSOLE", "wrap")
    monkeypatch.setenv("WANDB_X_DISABLE_STATS", "false")
    assert wandb_settings(capture=False) == {}  # the environment's choice stands


@pytest.mark.slow
def test_a_run_has_no_console_log_unless_asked(mnist_dir, tmp_path):
    # Each run in a fresh process, as a user starts it: W&B wraps the sys.stdout and sys.stderr it finds
    # when first imported, and in a pytest process those may be an earlier test's capsys streams.
    env = {k: v for k, v in os.environ.items() if k != "WANDB_SERVICE"}
    env.update(PYTHONPATH=str(ROOT), WANDB_MODE="offline")
    fit = [sys.executable, "-m", "lightning_app", "fit", "--config", str(ROOT / "configs/mnist_mlp.yaml"),
           "--data.data_dir", str(mnist_dir), "--trainer.max_epochs", "1", "--test_after_fit", "false",
           "--trainer.callbacks+=tests.lightning_app.record.test_logger.PrintSettings"]  # fmt: skip
    printed = []
    for command in (fit, [*fit, "--wandb_capture", "true"]):
        done = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=240)
        assert done.returncode == 0, done.stderr[-3000:]
        printed.append(done.stdout)
    off, wrap = "W&B console=off x_disable_stats=True", "W&B console=wrap x_disable_stats=False"
    assert off in printed[0] and wrap in printed[1]
    # Told apart by their configs: run folders are named by the second they start, and both may share it.
    runs = {yaml.safe_load((run / "files" / CONFIG_NAME).read_text())["wandb_capture"]: run
            for run in (tmp_path / "runs" / "wandb").glob("offline-run-*")}  # fmt: skip
    assert not (runs[False] / "files" / "output.log").exists()
    assert wrap in (runs[True] / "files" / "output.log").read_text()  # W&B's copy of what the run printed


IMPORTS_LAUNCH = """
import sys, wandb
from lightning_app.record.logger import LAUNCH_INPUTS, skip_unused_launch_inputs
if sys.argv[2] == "skip":
    skip_unused_launch_inputs()
wandb.init(mode="offline", dir=sys.argv[1], settings={"console": "off", "x_disable_stats": True}).finish()
print(LAUNCH_INPUTS in sys.modules)
"""


@pytest.mark.slow
@pytest.mark.parametrize("skip, imported", [("keep", "True"), ("skip", "False")])
def test_w_and_b_imports_launch_at_run_start_unless_skipped(skip, imported, tmp_path):
    # Pins the W&B behaviour that skip_unused_launch_inputs relies on: when "keep" prints False, W&B no
    # longer imports Launch at run start and the helper can go.
    env = {**{k: v for k, v in os.environ.items() if k != "WANDB_SERVICE"}, "PYTHONPATH": str(ROOT)}
    out = subprocess.run([sys.executable, "-c", IMPORTS_LAUNCH, str(tmp_path), skip], env=env, capture_output=True,
                         text=True, check=True)  # fmt: skip
    assert out.stdout.split()[-1] == imported


def test_staged_launch_inputs_are_still_applied(monkeypatch):
    from wandb.sdk.wandb_run import Run

    skip_unused_launch_inputs()
    wrapped = Run._detect_and_apply_job_inputs
    skip_unused_launch_inputs()
    assert Run._detect_and_apply_job_inputs is wrapped  # a second call wraps nothing
    internal = importlib.import_module(LAUNCH_INPUTS)  # as wandb.launch.manage_config_file does before staging
    assert internal.StagedLaunchInputs.__module__ == LAUNCH_INPUTS  # staging lives there and nowhere else
    applied = []
    monkeypatch.setattr(internal.StagedLaunchInputs, "apply", lambda self, run: applied.append(run))
    run = object()
    Run._detect_and_apply_job_inputs(run)
    assert applied == [run]


@pytest.fixture
def wandb_key(monkeypatch):
    monkeypatch.setenv("WANDB_API_KEY", "0" * 40)  # a fake key, never sent anywhere
    monkeypatch.delenv("WANDB_MODE", raising=False)
    monkeypatch.delenv("WANDB_DIR", raising=False)


def test_a_server_that_accepts_and_never_answers_sends_the_run_offline_within_seconds(wandb_key, monkeypatch):
    with socket.socket() as silent:  # the kernel accepts connections to a listening socket; nothing answers
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        monkeypatch.setenv("WANDB_BASE_URL", f"http://127.0.0.1:{silent.getsockname()[1]}")
        started = time.monotonic()
        with pytest.warns(UserWarning, match=r"did not answer within 1 s .*`wandb sync /data/runs/wandb/offline-run-\*`"):
            assert wandb_offline("/data/runs", timeout=1.0)
        assert time.monotonic() - started < 3


def test_any_http_answer_means_reachable(wandb_key, monkeypatch):
    class NotFound(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_error(404)

        def log_message(self, *args) -> None:
            pass

    with http.server.ThreadingHTTPServer(("127.0.0.1", 0), NotFound) as server:
        threading.Thread(target=server.serve_forever, daemon=True).start()
        monkeypatch.setenv("WANDB_BASE_URL", f"http://127.0.0.1:{server.server_port}")
        assert not wandb_offline("runs", timeout=5.0)
        server.shutdown()


def test_a_wandb_mode_that_is_not_one_is_named(monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "bogus")
    with pytest.raises(ValueError, match=r"WANDB_MODE='bogus' is not a W&B mode: set it to one of online, offline"):
        wandb_offline("runs")


def _config(class_path: str):
    from jsonargparse import Namespace

    return Namespace(trainer=Namespace(logger=Namespace(class_path=class_path, init_args=Namespace(offline=True))))


@pytest.mark.parametrize(
    "class_path, mode, rank, started",
    [
        ("lightning.pytorch.loggers.WandbLogger", "offline", 0, True),
        ("lightning.pytorch.loggers.WandbLogger", "disabled", 0, False),  # no service to start
        ("lightning.pytorch.loggers.WandbLogger", "offline", 1, False),  # the rank that logs starts it
        ("lightning.pytorch.loggers.CSVLogger", "offline", 0, False),
    ],
)
def test_the_service_starts_early_only_where_w_and_b_logs(class_path, mode, rank, started, monkeypatch):
    import wandb
    from lightning.pytorch.utilities import rank_zero_only

    from lightning_app.record import logger

    calls = []
    monkeypatch.setattr(wandb, "setup", lambda: calls.append(threading.current_thread().name))
    monkeypatch.setenv("WANDB_MODE", mode)
    monkeypatch.setattr(rank_zero_only, "rank", rank)
    logger.start_service(_config(class_path))
    logger.wait_for_service()
    assert calls == (["wandb-service"] if started else []) and logger._service is None


@pytest.mark.parametrize(
    "args, mode, key, rank, started",
    [
        (["fit", "--config", "x.yaml"], "offline", False, 0, True),
        (["test", "--config", "x.yaml"], "dryrun", True, 0, True),
        (["fit", "--config", "x.yaml"], None, False, 0, True),  # no key: offline, as the run will be
        (["fit", "--config", "x.yaml"], None, True, 0, False),  # a key: a request decides, after parsing
        (["fit", "--config", "x.yaml"], "online", True, 0, False),
        (["fit", "--config", "x.yaml"], "disabled", False, 0, False),
        (["fit", "--config", "x.yaml", "--trainer.logger", "false"], "offline", False, 0, False),
        (["fit", "--config", "x.yaml", "--trainer.logger=lightning.pytorch.loggers.CSVLogger"], "offline", False, 0, False),
        (["fit", "--config", "x.yaml", "--print_config"], "offline", False, 0, False),
        (["--config", "x.yaml"], "offline", False, 0, False),  # no subcommand: nothing runs
        (["fit", "--config", "x.yaml"], "offline", False, 1, False),  # the rank that logs starts it
    ],
)
def test_the_service_starts_before_parsing_only_where_the_environment_alone_says_offline(
    args, mode, key, rank, started, monkeypatch
):
    import wandb
    from lightning.pytorch.utilities import rank_zero_only

    from lightning_app.record import logger

    calls = []
    monkeypatch.setattr(wandb, "setup", lambda: calls.append(os.environ["WANDB_MODE"]))
    for variable, value in (("WANDB_MODE", mode), ("WANDB_API_KEY", "k" * 40 if key else None)):
        monkeypatch.setenv(variable, value) if value else monkeypatch.delenv(variable, raising=False)
    monkeypatch.setattr(logger, "_has_key", lambda: key)
    monkeypatch.setattr(rank_zero_only, "rank", rank)
    logger.start_service_early(args)
    logger.wait_for_service()
    assert calls == (["dryrun"] if started else [])


def test_with_no_key_and_no_wandb_mode_a_run_logs_offline(in_tmp, monkeypatch):
    """The quickstart on a fresh machine: W&B's service starts early (start_service) in the mode the run will use."""
    for variable in ("WANDB_MODE", "WANDB_API_KEY"):
        monkeypatch.delenv(variable, raising=False)
    monkeypatch.setenv("HOME", str(in_tmp))  # no ~/.netrc
    main(["fit", "--config", str(ROOT / "configs/digits_mlp.yaml"), "--trainer.max_epochs", "1", "--pictures", "false",
          "--trainer.enable_progress_bar", "false"])  # fmt: skip
    (run,) = (in_tmp / "runs" / "wandb").glob("offline-run-*")
    assert (run / "files" / CONFIG_NAME).is_file()


def test_a_first_run_prints_no_w_and_b_warning_about_settings_nobody_set(in_tmp, monkeypatch, capfd):
    monkeypatch.delenv("WANDB_SILENT", raising=False)  # W&B's warnings shown, as a user sees them
    main(["fit", "--config", str(ROOT / "configs/digits_mlp.yaml"), "--trainer.max_epochs", "1", "--pictures", "false",
          "--trainer.enable_progress_bar", "false"])  # fmt: skip
    printed = capfd.readouterr()
    shown = printed.out + printed.err
    assert "wandb" in shown  # W&B did print (its offline-run lines)
    assert "anonymous setting has no effect" not in shown and "git root" not in shown
