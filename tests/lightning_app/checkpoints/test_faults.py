"""Crashes while a checkpoint is written never corrupt it; a NaN loss stops the run with a clear message;
the checkpoint callback's per-step hook does Lightning's work only where it can save."""

import os
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import pytest
import torch
from lightning.pytorch.callbacks import ModelCheckpoint

from lightning_app.cli import main
from lightning_app.checkpoints import AtomicCheckpointIO, ModelCheckpointLast, load_checkpoint

ROOT = Path(__file__).parents[3]
DIGITS = ["fit", "--config", str(ROOT / "configs/digits_mlp.yaml"), "--trainer.logger", "false", "--trainer.max_epochs", "1"]
DIGITS += ["--trainer.enable_progress_bar", "false"]
GOOD = {"state_dict": {"weight": torch.arange(6.0)}, "global_step": 5}


class FailsToPickle:
    def __reduce__(self):
        raise RuntimeError("disk full")


def test_error_mid_write_keeps_the_previous_checkpoint(tmp_path):
    path = tmp_path / "checkpoints" / "last.ckpt"
    AtomicCheckpointIO().save_checkpoint(GOOD, path)
    with pytest.raises(RuntimeError, match="disk full"):
        AtomicCheckpointIO().save_checkpoint({"state_dict": {"weight": torch.zeros(10_000)}, "x": FailsToPickle()}, path)
    assert torch.equal(load_checkpoint(path)["state_dict"]["weight"], GOOD["state_dict"]["weight"])  # record matches
    assert sorted(os.listdir(path.parent)) == ["last.ckpt", "last.ckpt.sha256"]  # the partial file is gone


# Writes half of the new checkpoint's bytes, then dies by SIGKILL: no cleanup code can run.
KILLED_MID_WRITE = """
import io, os, signal, sys, torch
from lightning_app.checkpoints import AtomicCheckpointIO
real_save = torch.save
def half_then_die(obj, file):
    buffer = io.BytesIO()
    real_save(obj, buffer)
    file.write(buffer.getvalue()[: len(buffer.getvalue()) // 2])
    file.flush()
    os.kill(os.getpid(), signal.SIGKILL)
torch.save = half_then_die
AtomicCheckpointIO().save_checkpoint({"state_dict": {"weight": torch.ones(100_000)}, "global_step": 9}, sys.argv[1])
"""


@pytest.mark.slow
def test_sigkill_mid_write_leaves_a_whole_last_checkpoint(tmp_path):
    path = tmp_path / "last.ckpt"
    AtomicCheckpointIO().save_checkpoint(GOOD, path)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    process = subprocess.run([sys.executable, "-c", KILLED_MID_WRITE, str(path)], env=env, capture_output=True)
    assert process.returncode == -9, process.stderr.decode()[-2000:]
    partial = tmp_path / "last.ckpt.part"
    assert partial.stat().st_size > 100_000  # the crash did happen in the middle of writing
    assert torch.load(path, weights_only=True)["global_step"] == 5
    assert list(tmp_path.glob("*.ckpt")) == [path]  # the partial file is never named like a checkpoint


def test_nan_loss_stops_before_the_step_with_a_clear_message(in_tmp):
    # lr 1e30: the first step sends the weights to inf, so the second batch's loss is NaN.
    args = [*DIGITS, "--optimizer.init_args.lr", "1.0e30", "--faults.last_every_n_steps", "1"]
    with pytest.raises(FloatingPointError, match=r"training loss is nan at epoch 0, global step 1: lower the learning"):
        main(args)
    (last,) = in_tmp.glob("runs/lightning_app/digits_mlp-*/checkpoints/last.ckpt")
    last = torch.load(last, weights_only=True)
    assert last["global_step"] == 1  # nothing was saved after the bad batch


def test_nan_loss_can_be_allowed(in_tmp):
    args = [*DIGITS, "--optimizer.init_args.lr", "1.0e30", "--faults.nonfinite_loss", "warn", "--test_after_fit", "false"]
    with pytest.warns(UserWarning, match="training loss is nan"):
        cli = main([*args, "--trainer.max_steps", "3"])
    assert cli.trainer.global_step == 3
    assert isinstance(cli.trainer.strategy.checkpoint_io, AtomicCheckpointIO)



def test_64_true_with_float32_batches_is_refused_at_the_first_batch(in_tmp):
    with pytest.raises(ValueError, match=r"--trainer.precision 64-true: Digits gives torch.float32 batches to a "
                                         r"float64 model; .*32-true"):  # fmt: skip
        main([*DIGITS, "--trainer.precision", "64-true"])
    assert not list(in_tmp.glob("runs/lightning_app/*/checkpoints/*.ckpt"))  # refused before any step


def test_a_nan_loss_before_any_update_points_at_the_inputs_first():
    from types import SimpleNamespace

    from lightning_app.checkpoints.faults import FaultTolerance

    trainer = SimpleNamespace(world_size=1, current_epoch=0, global_step=0)
    with pytest.raises(FloatingPointError, match=r"^check the inputs first: training loss is nan at epoch 0, global step 0"):
        FaultTolerance().on_before_backward(trainer, None, torch.tensor(float("nan")))


@pytest.mark.parametrize(
    "kwargs, runs", [({}, False), ({"every_n_train_steps": 4}, True), ({"train_time_interval": timedelta(minutes=5)}, True)]
)
def test_the_per_step_hook_runs_lightnings_only_where_it_can_save(kwargs, runs, monkeypatch):
    calls = []
    monkeypatch.setattr(ModelCheckpoint, "on_train_batch_end", lambda self, *args: calls.append(args))
    ModelCheckpointLast(**kwargs).on_train_batch_end("trainer", "module", "outputs", "batch", 0)
    assert calls == ([("trainer", "module", "outputs", "batch", 0)] if runs else [])


def test_checkpoints_every_n_train_steps_are_still_written_mid_epoch(in_tmp):
    # Digits at batch 128: 11 steps an epoch; the checkpoints of steps 5 and 10 come from the per-step hook alone.
    args = ["--checkpoint.every_n_train_steps", "5", "--checkpoint.monitor", "step", "--checkpoint.save_top_k", "-1"]
    cli = main([*DIGITS, "--data.batch_size", "128", "--test_after_fit", "false", *args])
    names = sorted(p.name for p in Path(cli.trainer.checkpoint_callback.dirpath).glob("epoch*.ckpt"))
    assert names == ["epoch0-step10.ckpt", "epoch0-step5.ckpt"]
