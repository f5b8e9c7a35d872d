"""The callbacks every trainer gets: the checkpoint group unless checkpointing is off, the timed bar unless another."""

from pathlib import Path

import pytest
from lightning.pytorch.callbacks import ModelCheckpoint, ProgressBar, TQDMProgressBar

from lightning_app.checkpoints import ModelCheckpointLast
from lightning_app.cli import AppCLI
from lightning_app.checkpoints import FaultTolerance
from lightning_app.defaults import TimedProgressBar
from lightning_app.record.logger import SaveRunConfig

CONFIG = str(Path(__file__).parents[2] / "configs" / "digits_mlp.yaml")
pytestmark = pytest.mark.usefixtures("in_tmp")  # a built CLI locks its run folder under runs/


def trainer(*args: str):
    """The trainer the CLI builds for the quickstart config, without running anything."""
    return AppCLI(args=["--config", CONFIG, "--trainer.logger", "false", *args], run=False).trainer


def kinds(callbacks) -> list[type]:
    return [type(callback) for callback in callbacks]


def test_the_default_trainer_has_each_project_callback_once():
    callbacks = trainer("--checkpoint.monitor", "val/loss", "--checkpoint.mode", "min").callbacks
    for kind in (ModelCheckpointLast, TimedProgressBar, FaultTolerance, SaveRunConfig):
        assert kinds(callbacks).count(kind) == 1, kind
    (checkpoint,) = [c for c in callbacks if isinstance(c, ModelCheckpoint)]
    assert (checkpoint.monitor, checkpoint.mode) == ("val/loss", "min")  # the `checkpoint` group's values


def test_checkpointing_off_builds_a_trainer_without_checkpoints():
    built = trainer("--trainer.enable_checkpointing", "false")  # Lightning refuses a ModelCheckpoint with the flag
    assert built.checkpoint_callback is None
    assert not any(isinstance(c, ModelCheckpoint) for c in built.callbacks)
    assert FaultTolerance in kinds(built.callbacks)


def test_a_bar_of_ones_own_replaces_the_timed_one():
    built = trainer("--trainer.callbacks+=lightning.pytorch.callbacks.TQDMProgressBar", "--trainer.callbacks.refresh_rate", "1")
    bars = [c for c in built.callbacks if isinstance(c, ProgressBar)]
    assert kinds(bars) == [TQDMProgressBar] and bars[0].refresh_rate == 1


def test_no_bar_when_the_bar_is_off():
    assert not any(isinstance(c, ProgressBar) for c in trainer("--trainer.enable_progress_bar", "false").callbacks)


def test_an_empty_callback_list_still_gets_the_project_callbacks():
    callbacks = trainer("--trainer.callbacks=[]").callbacks
    assert {ModelCheckpointLast, TimedProgressBar, FaultTolerance} <= set(kinds(callbacks))
