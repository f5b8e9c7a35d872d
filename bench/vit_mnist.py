"""Test accuracy of configs/mnist_vit.yaml on the real MNIST 8,000 / 2,000 split.

    python bench/vit_mnist.py [--epochs 10] [--accelerator cpu] [--threads 1]

The first 8,000 images of the real MNIST test set train (10% of them validate), the last 2,000
are held out for testing (``bench/real_data.py``; full MNIST is not available offline). One
``fit`` through the CLI, then a test of the best checkpoint.
"""

import argparse
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
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--accelerator", default="cpu")
    parser.add_argument("--cli", default="", help="more CLI arguments, e.g. '--model.init_args.patch_size=7'")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (a shared CPU runs faster on 1)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        data_dir = write_mnist_split(Path(tmp) / "mnist")
        start = time.perf_counter()
        cli = cli_main([
            "fit", "--config", str(ROOT / "configs" / "mnist_vit.yaml"), "--data.data_dir", str(data_dir),
            "--trainer.max_epochs", str(args.epochs), "--lr_scheduler.init_args.T_max", str(args.epochs),
            "--trainer.accelerator", args.accelerator, "--trainer.logger", "false",
            "--trainer.enable_progress_bar", "false", "--trainer.enable_model_summary", "false",
            "--trainer.default_root_dir", tmp, *args.cli.split(),
        ])  # fmt: skip
        seconds = time.perf_counter() - start
    metrics = cli.trainer.callback_metrics
    parameters = sum(p.numel() for p in cli.model.parameters())
    print(describe("cuda" if args.accelerator == "gpu" else "cpu"))
    print(f"mnist_vit.yaml, {parameters / 1e3:.0f}K parameters, {args.epochs} epochs on 7,200 images, {args.accelerator}")
    print(f"test accuracy {float(metrics['test/acc']):.4f} (2,000 held-out images), "
          f"best val accuracy {float(cli.trainer.checkpoint_callback.best_model_score):.4f}, {seconds:.0f} s")


if __name__ == "__main__":
    main()
