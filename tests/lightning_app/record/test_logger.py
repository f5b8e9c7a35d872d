"""W&B as every run uses it: no console capture or system metrics unless asked, no Launch import unless used."""

import importlib
import os
import subprocess
import sys
from pathlib import Path

import pytest
from lightning.pytorch.callbacks import Callback

from lightning_app.cli import main
from lightning_app.record.logger import LAUNCH_INPUTS, skip_unused_launch_inputs, wandb_settings

ROOT = Path(__file__).parents[3]


class RecordSettings(Callback):
    """Keeps the W&B run's console and system-metric settings, as the run sees them."""

    seen: list[tuple[str, bool]] = []

    def on_train_start(self, trainer, pl_module) -> None:
        settings = trainer.logger.experiment.settings
        RecordSettings.seen.append((settings.console, settings.x_disable_stats))


def test_console_capture_and_system_metrics_are_off_unless_asked(monkeypatch):
    for name in ("WANDB_CONSOLE", "WANDB_X_DISABLE_STATS", "WANDB__DISABLE_STATS"):
        monkeypatch.delenv(name, raising=False)
    assert wandb_settings(capture=False) == {"console": "off", "x_disable_stats": True}
    assert wandb_settings(capture=True) == {}  # W&B's own defaults
    monkeypatch.setenv("WANDB_CONSOLE", "wrap")
    monkeypatch.setenv("WANDB_X_DISABLE_STATS", "false")
    assert wandb_settings(capture=False) == {}  # the environment's choice stands


def test_a_run_has_no_console_log_unless_asked(mnist_dir, in_tmp):
    fit = ["fit", "--config", str(ROOT / "configs/mnist_mlp.yaml"), "--data.data_dir", str(mnist_dir),
           "--trainer.max_epochs", "1", "--test_after_fit", "false",
           "--trainer.callbacks+=tests.lightning_app.record.test_logger.RecordSettings"]  # fmt: skip
    RecordSettings.seen = []
    main(fit)
    main([*fit, "--wandb_capture", "true"])
    assert RecordSettings.seen == [("off", True), ("wrap", False)]
    quiet, captured = sorted((in_tmp / "runs" / "wandb").glob("offline-run-*"))
    assert not (quiet / "files" / "output.log").exists()
    assert (captured / "files" / "output.log").is_file()


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
