"""Per-step schedules from the config: WarmupCosine's shape, its length filled in by the CLI."""

import math
from pathlib import Path

import pytest
import torch

from lightning_app.cli import main
from lightning_app.schedules import WarmupCosine
from datamodules import CIFAR10
from tests.fakes import accept_archive, write_cifar10_archive

CONFIGS = Path(__file__).parents[2] / "configs"


def lrs(scheduler, steps):
    values = []
    for _ in range(steps):
        values.append(scheduler.optimizer.param_groups[0]["lr"])
        scheduler.optimizer.step()
        scheduler.step()
    return values


def test_warmup_then_cosine_to_the_final_ratio():
    optimizer = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=0.4)
    values = lrs(WarmupCosine(optimizer, warmup_steps=4, total_steps=14, final_lr_ratio=0.1), 16)
    assert values[:5] == pytest.approx([0.1, 0.2, 0.3, 0.4, 0.4])
    assert values[9] == pytest.approx(0.04 + 0.36 * 0.5 * (1 + math.cos(math.pi * 0.5)))  # half-way down
    assert values[14:] == pytest.approx([0.04, 0.04])  # stays at the floor past total_steps


def test_missing_total_steps_is_a_clear_error_once_needed():
    optimizer = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=0.4)
    scheduler = WarmupCosine(optimizer, warmup_steps=2)
    assert lrs(scheduler, 2) == pytest.approx([0.2, 0.4])  # steps 0 and 1; step 2 is the peak
    with pytest.raises(RuntimeError, match="total_steps is not set"):
        scheduler.step()


def test_cli_sets_the_length_and_steps_per_batch(in_tmp, monkeypatch):
    archive = write_cifar10_archive(in_tmp / "cifar", n_per_file=16)  # 80 training images: 72 train, 8 validate
    accept_archive(monkeypatch, archive, CIFAR10)
    cli = main([
        "fit", "--config", str(CONFIGS / "cifar10_mlp.yaml"), "--trainer.logger", "false",
        "--trainer.max_epochs", "3", "--trainer.enable_progress_bar", "false", "--test_after_fit", "false",
        "--data.data_dir", str(in_tmp / "cifar"), "--data.batch_size", "16", "--model.init_args.hidden_sizes", "[8]",
        "--lr_scheduler.init_args.warmup_steps", "2",
    ])
    scheduler = cli.trainer.lr_scheduler_configs[0].scheduler
    assert scheduler.total_steps == cli.trainer.estimated_stepping_batches == 15  # 3 epochs x ceil(72 / 16)
    assert scheduler.last_epoch == 15  # stepped after every batch, not every epoch
    assert cli.trainer.optimizers[0].param_groups[0]["lr"] == pytest.approx(0.0)  # the cosine ran to its end
