"""How much does lightning_app cost over a plain PyTorch loop, and how fast does it start?

1. One training epoch of the 784-128-64-10 MLP on 60,000 x 28 x 28 uint8 images held in memory
   (MNIST's size; random pixels, since only the time matters), batch 256, Adam: through
   lightning_app (the `configs/mnist_mlp.yaml` config, the MNIST data module reading IDX files,
   Trainer with its metrics and progress bar) and through a plain loop over the same tensors that
   does the same work per batch (index, normalise, forward, loss, backward, step). Rounds
   alternate between the two; the ratio is the median over rounds.
2. Seconds from `python -m lightning_app fit` to the first training step, quickstart config.

    python bench/speed.py [--rounds 5]
"""

import argparse
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import lightning as L
import numpy as np
import torch
from torch import nn

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from lightning_app.cli import AppCLI  # noqa: E402
from tests.fakes import write_idx  # noqa: E402


class EpochTimer(L.Callback):
    """Wall time of each training epoch, from its first batch to its end."""

    def on_train_epoch_start(self, trainer, pl_module):
        self.start = time.perf_counter()

    def on_train_epoch_end(self, trainer, pl_module):
        self.seconds = time.perf_counter() - self.start


class FirstStep(L.Callback):
    """Prints the wall-clock time of the first training step and stops the run."""

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        print(f"FIRST_STEP {time.time()}", flush=True)
        os._exit(0)


def lightning_epoch(data_dir: str, batch_size: int) -> float:
    timer = EpochTimer()
    cli = AppCLI(
        args=["--config", str(ROOT / "configs/mnist_mlp.yaml"), "--data.data_dir", data_dir,
              "--data.batch_size", str(batch_size), "--data.val_split", "0.0", "--trainer.max_epochs", "1", "--trainer.logger", "false",
              "--trainer.limit_val_batches", "0", "--trainer.enable_checkpointing", "false",
              "--trainer.enable_model_summary", "false", "--trainer.accelerator", "cpu"],
        run=False,
    )
    cli.trainer.callbacks.append(timer)
    cli.trainer.fit(cli.model, datamodule=cli.datamodule)
    return timer.seconds


def plain_epoch(images: torch.Tensor, labels: torch.Tensor, batch_size: int = 256) -> float:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(784, 128), nn.ReLU(), nn.Linear(128, 64), nn.ReLU(), nn.Linear(64, 10))
    optimizer = torch.optim.Adam(model.parameters(), lr=1.0e-3)
    start = time.perf_counter()
    for batch in torch.randperm(len(images)).split(batch_size):
        x = (images[batch].float() / 255.0 - 0.1307) / 0.3081
        loss = nn.functional.cross_entropy(model(x), labels[batch])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return time.perf_counter() - start


def seconds_to_first_step() -> float:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "WANDB_MODE": "offline"}
    with tempfile.TemporaryDirectory() as cwd:
        start = time.time()
        out = subprocess.run(
            [sys.executable, "-m", "lightning_app", "fit", "--config", str(ROOT / "configs/digits_mlp.yaml"),
             "--trainer.callbacks+=bench.speed.FirstStep"],
            cwd=cwd, env=env, capture_output=True, text=True, check=True,
        )
    return float(re.search(r"FIRST_STEP (\d+\.\d+)", out.stdout).group(1)) - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--batch-size", type=int, default=256, help="256 is configs/mnist_mlp.yaml's")
    args = parser.parse_args()
    torch.set_num_threads(os.cpu_count() or 1)
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (60000, 28, 28), dtype=np.uint8)
    labels = rng.integers(0, 10, 60000, dtype=np.uint8)
    with tempfile.TemporaryDirectory() as data_dir:
        for prefix, n in (("train", 60000), ("t10k", 100)):
            write_idx(Path(data_dir) / f"{prefix}-images-idx3-ubyte.gz", images[:n])
            write_idx(Path(data_dir) / f"{prefix}-labels-idx1-ubyte.gz", labels[:n])
        x, y = torch.from_numpy(images).unsqueeze(1), torch.from_numpy(labels.astype(np.int64))
        ours, plain = [], []
        for round_ in range(args.rounds):
            plain.append(plain_epoch(x, y, args.batch_size))
            ours.append(lightning_epoch(data_dir, args.batch_size))
            print(f"round {round_}: plain {plain[-1]:.2f} s, lightning_app {ours[-1]:.2f} s, ratio {ours[-1] / plain[-1]:.3f}")
    ratios = [o / p for o, p in zip(ours, plain)]
    print(f"\nMLP epoch, 60,000 x 28 x 28, batch {args.batch_size}: plain {statistics.median(plain):.2f} s, lightning_app "
          f"{statistics.median(ours):.2f} s, median ratio {statistics.median(ratios):.3f} (target <= 1.15)")
    starts = [seconds_to_first_step() for _ in range(3)]
    print(f"fit to first training step (digits_mlp): median {statistics.median(starts):.2f} s over 3 (target < 5 s)")
    print(f"machine: {os.cpu_count()} CPU cores, torch {torch.__version__}, {torch.get_num_threads()} threads")


if __name__ == "__main__":
    main()
