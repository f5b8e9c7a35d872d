"""Test accuracy of configs/mnist_cnn.yaml (LeNet-5) on the real MNIST 8,000 / 2,000 split.

    python bench/cnn_mnist.py [--epochs 10] [--seeds 0 1 2] [--accelerator cpu] [--threads 1]

The first 8,000 images of the real MNIST test set train (10% of them validate), the last 2,000
are held out for testing (``bench/real_data.py``; full MNIST is not available offline). Each seed
is a full ``fit`` through the CLI, then a test of the best checkpoint.
"""

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from bench.machine import describe  # noqa: E402
from bench.real_data import write_mnist_split  # noqa: E402
from lightning_app.cli import main as cli_main  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--config", default=str(ROOT / "configs" / "mnist_cnn.yaml"))
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--accelerator", default="cpu")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (a shared CPU runs faster on 1)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        data_dir = write_mnist_split(Path(tmp) / "mnist")
        print(describe("cuda" if args.accelerator == "gpu" else "cpu"))
        print(f"{Path(args.config).name}, {args.epochs} epochs, {args.accelerator}")
        print("seed  test acc  best val acc  seconds")
        accuracies = []
        for seed in args.seeds:
            start = time.perf_counter()
            cli = cli_main([
                "fit", "--config", args.config, "--seed_everything", str(seed), "--data.seed", str(seed),
                "--data.data_dir", str(data_dir), "--trainer.max_epochs", str(args.epochs),
                "--trainer.accelerator", args.accelerator, "--trainer.logger", "false",
                "--trainer.enable_progress_bar", "false", "--trainer.enable_model_summary", "false",
                "--trainer.default_root_dir", str(Path(tmp) / f"run{seed}"),
            ])
            metrics = cli.trainer.callback_metrics
            accuracies.append(float(metrics["test/acc"]))
            best_val = float(cli.trainer.checkpoint_callback.best_model_score)
            print(f"{seed:4d}  {accuracies[-1]:8.4f}  {best_val:12.4f}  {time.perf_counter() - start:7.1f}")
        print(f"mean test accuracy {statistics.mean(accuracies):.4f} over {len(accuracies)} seeds "
              f"(min {min(accuracies):.4f}, max {max(accuracies):.4f})")


if __name__ == "__main__":
    main()
