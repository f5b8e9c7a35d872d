"""Training throughput of configs/cifar10_resnet.yaml on synthetic CIFAR-sized data, images per second.

    python bench/cifar_gpu.py --accelerator gpu --precision bf16-mixed --epochs 3 --trainer.benchmark true

There is no CIFAR-10 on the GPU machine (no network), so this times the real training path
(the config's model, optimizer, schedule and on-device augmentation, through the CLI's
classes) on uniform random uint8 images of CIFAR-10's sizes; accuracy means nothing here.
Each epoch's training batches are timed from the first batch's start to the last batch's end
(validation excluded, the GPU synchronised); the first epoch includes warm-up. Arguments it
does not know go to the CLI, e.g. ``--model.init_args.channels "[8, 8, 8, 8]"`` for a CPU smoke run.
"""

import argparse
import sys
import tempfile
import time
from pathlib import Path

import lightning as L
import torch
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from lightning_app.cli import AppCLI  # noqa: E402


class EpochTimer(L.Callback):
    """Seconds and samples of each epoch's training batches."""

    def __init__(self) -> None:
        self.epochs: list[tuple[float, int]] = []

    def _sync(self, module: L.LightningModule) -> float:
        if module.device.type == "cuda":
            torch.cuda.synchronize(module.device)
        return time.perf_counter()

    def on_train_batch_start(self, trainer, module, batch, batch_idx) -> None:
        if batch_idx == 0:
            self.start, self.samples = self._sync(module), 0

    def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx) -> None:
        self.samples += len(batch[0])
        if batch_idx == trainer.num_training_batches - 1:
            self.epochs.append((self._sync(module) - self.start, self.samples))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--config", default=str(ROOT / "configs" / "cifar10_resnet.yaml"))
    parser.add_argument("--accelerator", default="gpu")
    parser.add_argument("--precision", default="bf16-mixed")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--samples", type=int, default=50_000, help="synthetic training images (10%% validate)")
    args, cli_args = parser.parse_known_args()
    generator = torch.Generator().manual_seed(0)
    with tempfile.TemporaryDirectory() as tmp:
        cli = AppCLI(args=[
            "--config", args.config, "--trainer.logger", "false", "--trainer.max_epochs", str(args.epochs),
            "--trainer.accelerator", args.accelerator, "--trainer.devices", "1", "--trainer.precision", args.precision,
            "--trainer.enable_progress_bar", "false", "--trainer.default_root_dir", tmp, *cli_args,
        ], run=False)
        sizes = {"train": args.samples, "test": 1}

        def synthetic(split: str) -> tuple[torch.Tensor, torch.Tensor]:
            n = sizes[split]
            images = torch.randint(0, 256, (n, *cli.datamodule.input_shape), dtype=torch.uint8, generator=generator)
            return images, torch.randint(0, cli.datamodule.num_classes, (n,), generator=generator)

        cli.datamodule.prepare_data = lambda: None  # nothing to download
        cli.datamodule.load_split = synthetic
        timer = EpochTimer()
        cli.trainer.callbacks.append(timer)
        cli.trainer.fit(cli.model, datamodule=cli.datamodule)
    device = torch.cuda.get_device_name() if args.accelerator in ("gpu", "cuda") else "cpu"
    batch = cli.datamodule.batch_size
    print(f"{Path(args.config).name} on {device}, {args.precision}, batch {batch}, torch {torch.__version__}")
    print("epoch  seconds  images/s")
    for epoch, (seconds, samples) in enumerate(timer.epochs):
        print(f"{epoch:5d}  {seconds:7.2f}  {samples / seconds:8,.0f}")
    seconds, samples = timer.epochs[-1]
    epochs = yaml.safe_load(Path(args.config).read_text())["trainer"]["max_epochs"]
    print(f"last epoch: {samples / seconds:,.0f} images/s; the config's {epochs} epochs of training batches "
          f"would take {seconds * epochs:.1f} s at that rate")


if __name__ == "__main__":
    main()
