"""WarmupCosine's shape, and its length and warm-up taken from the run by the CLI."""

import csv
import math
from pathlib import Path

import pytest
import torch
import yaml

from datamodules import CIFAR10
from lightning_app.cli import main
from lightning_app.schedules import WarmupCosine
from tests.fakes import accept_archive, write_cifar10_archive, write_text

CONFIGS = Path(__file__).parents[2] / "configs"
QUIET = ["--trainer.enable_progress_bar", "false", "--test_after_fit", "false"]
pytestmark = pytest.mark.usefixtures("one_thread")  # tiny models' runs: a second thread only waits


def optimizer(lr: float = 0.4) -> torch.optim.Optimizer:
    return torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=lr)


def lrs(scheduler, steps):
    values = []
    for _ in range(steps):
        values.append(scheduler.optimizer.param_groups[0]["lr"])
        scheduler.optimizer.step()
        scheduler.step()
    return values


def test_warmup_then_cosine_to_the_final_ratio_at_the_last_step():
    values = lrs(WarmupCosine(optimizer(), warmup_steps=4, total_steps=15, final_lr_ratio=0.1), 17)
    assert values[:5] == pytest.approx([0.1, 0.2, 0.3, 0.4, 0.4])
    assert values[9] == pytest.approx(0.04 + 0.36 * 0.5 * (1 + math.cos(math.pi * 0.5)))  # half-way down
    assert values[13] > 0.04 and values[14:] == pytest.approx([0.04] * 3)  # step 14 is the last: the floor


def test_warmup_fraction_is_a_share_of_the_length_set_later():
    scheduler = WarmupCosine(optimizer(), warmup_fraction=0.25)
    assert scheduler.total_steps is None  # built before the run is known
    scheduler.set_total_steps(16)
    assert scheduler.warmup() == 4 and lrs(scheduler, 5) == pytest.approx([0.1, 0.2, 0.3, 0.4, 0.4])
    explicit = WarmupCosine(optimizer(), warmup_fraction=0.25, warmup_steps=2, total_steps=16)
    assert explicit.warmup() == 2  # the user's explicit value wins


def test_a_resumed_schedule_sets_the_current_lr_to_its_new_length():
    first = optimizer()
    scheduler = WarmupCosine(first, warmup_fraction=0.1)
    scheduler.set_total_steps(21)
    lrs(scheduler, 21)  # to the end: the final rate
    second = optimizer()
    resumed = WarmupCosine(second, warmup_fraction=0.1)
    resumed.set_total_steps(42)
    second.load_state_dict(first.state_dict())  # Lightning restores the optimizer first, then the schedule
    resumed.load_state_dict(scheduler.state_dict())
    assert second.param_groups[0]["lr"] == pytest.approx(0.4 * resumed.lr_factor(21))  # step 21 of 42, not the old end


def test_missing_total_steps_is_a_clear_error_once_needed():
    scheduler = WarmupCosine(optimizer(), warmup_steps=2)
    assert lrs(scheduler, 1) == pytest.approx([0.2]) and scheduler.get_last_lr() == pytest.approx([0.4])  # warming up
    with pytest.raises(RuntimeError, match="total_steps is not set"):
        scheduler.step()


@pytest.mark.parametrize(
    ("arguments", "message"),
    [({"warmup_fraction": 1.0}, "warmup_fraction=1.0 must be in"), ({"total_steps": 0}, "total_steps=0 is out of range"),
     ({"warmup_steps": -1}, "warmup_steps=-1"), ({"final_lr_ratio": -0.1}, "final_lr_ratio=-0.1")],
)  # fmt: skip
def test_bad_arguments_name_the_argument(arguments, message):
    with pytest.raises(ValueError, match=message):
        WarmupCosine(optimizer(), **arguments)


def test_cli_sets_the_length_and_steps_per_batch(in_tmp, monkeypatch):
    archive = write_cifar10_archive(in_tmp / "cifar", n_per_file=16)  # 80 training images: 72 train, 8 validate
    accept_archive(monkeypatch, archive, CIFAR10)
    cli = main([
        "fit", "--config", str(CONFIGS / "cifar10_mlp.yaml"), "--trainer.logger", "false", *QUIET,
        "--trainer.max_epochs", "3", "--data.data_dir", str(in_tmp / "cifar"), "--data.batch_size", "16",
        "--model.init_args.hidden_sizes", "[8]", "--lr_scheduler.init_args.warmup_fraction", "0.2",
    ])  # fmt: skip
    scheduler = cli.trainer.lr_scheduler_configs[0].scheduler
    assert scheduler.total_steps == cli.trainer.estimated_stepping_batches == 15  # 3 epochs x ceil(72 / 16)
    assert scheduler.warmup() == 3 and scheduler.last_epoch == 15  # stepped after every batch, not every epoch
    assert cli.trainer.optimizers[0].param_groups[0]["lr"] == pytest.approx(0.0)  # the cosine ran to its end


def test_a_run_resumed_with_more_epochs_stretches_its_schedule(in_tmp):
    digits = ["fit", "--config", str(CONFIGS / "digits_mlp.yaml"), "--trainer.logger", "false", *QUIET]
    digits += ["--lr_scheduler", "lightning_app.schedules.WarmupCosine", "--lr_interval", "step"]
    first = main([*digits, "--trainer.max_epochs", "1"])  # 21 steps, ending at a learning rate of 0
    weights = {name: value.clone() for name, value in first.model.state_dict().items()}
    last = first.trainer.checkpoint_callback.last_model_path
    resumed = main([*digits, "--trainer.max_epochs", "2", "--ckpt_path", last])
    scheduler = resumed.trainer.lr_scheduler_configs[0].scheduler
    assert scheduler.total_steps == 42 and scheduler.last_epoch == 42  # this run's length, stepped to its end
    changed = [name for name, value in resumed.model.state_dict().items() if not torch.equal(value, weights[name])]
    assert changed  # the second epoch trained: its learning rates came from the stretched schedule, not 0


ONE_CYCLE = ["--lr_scheduler", "torch.optim.lr_scheduler.OneCycleLR", "--lr_scheduler.init_args.max_lr", "0.01"]
COSINE = ["--lr_scheduler", "lightning_app.schedules.WarmupCosine"]


@pytest.mark.parametrize(
    ("schedule", "message"),
    [([*ONE_CYCLE, "--lr_scheduler.init_args.total_steps", "5", "--lr_interval", "step"],
      "OneCycleLR has total_steps=5, but the run takes 21 optimizer steps: it would fail at step 6"),
     ([*COSINE, "--lr_interval", "epoch", "--trainer.max_epochs", "-1", "--trainer.max_steps", "9"],
      "the run's length in epochs is -1: set --trainer.max_epochs")],
)  # fmt: skip
def test_a_schedule_that_cannot_cover_the_run_fails_before_training(schedule, message, in_tmp):
    digits = ["fit", "--config", str(CONFIGS / "digits_mlp.yaml"), "--trainer.logger", "false", *QUIET]
    with pytest.raises(ValueError, match=message):
        main([*digits, "--trainer.max_epochs", "1", *schedule])  # Digits: 1,294 training images, 21 batches of 64


def test_shakespeare_gpt_longer_than_shipped_ends_its_schedule_on_the_last_step(in_tmp):
    config = CONFIGS / "shakespeare_gpt.yaml"
    shipped = yaml.safe_load(config.read_text())
    shipped_steps = shipped["trainer"]["max_epochs"] * shipped["data"]["init_args"]["batches_per_epoch"]
    main([
        "fit", "--config", str(config), *QUIET, "--data.init_args.path", str(write_text(in_tmp / "verse.txt")),
        "--data.init_args.batches_per_epoch", "410", "--trainer.max_epochs", "5",  # 2,050 steps, more than shipped
        "--trainer.limit_val_batches", "1", "--data.init_args.block_size", "8", "--data.init_args.batch_size", "2",
        "--model.init_args.num_layers", "1", "--model.init_args.d_model", "8", "--model.init_args.nhead", "1",
        "--trainer.logger", "lightning.pytorch.loggers.CSVLogger", "--trainer.logger.save_dir", "logs",
    ])  # fmt: skip
    rows = [row for row in csv.DictReader(next(Path("logs").rglob("metrics.csv")).open()) if row.get("lr-AdamW")]
    lr = {int(row["step"]): float(row["lr-AdamW"]) for row in rows}  # the config logs every 50 steps
    peak, ratio = shipped["optimizer"]["init_args"]["lr"], shipped["lr_scheduler"]["init_args"]["final_lr_ratio"]
    assert 2049 > shipped_steps and max(lr) == 2049  # trained to the end, with the last step logged
    assert lr[2049] == pytest.approx(peak * ratio)  # the schedule's end value, on the run's last step
    assert lr[shipped_steps - 1] > 1.01 * peak * ratio  # still decaying where the shipped length ended
