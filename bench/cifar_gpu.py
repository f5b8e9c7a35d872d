"""Training throughput of configs/cifar10_resnet.yaml on synthetic CIFAR-sized data, against a plain PyTorch loop.

    python bench/cifar_gpu.py --accelerator gpu --precision bf16-mixed --epochs 3 --compile --channels-last
    python bench/cifar_gpu.py --smoke   # the same path on a CPU in seconds, to check the script

There is no CIFAR-10 on the GPU machine (no network), so this times the real training path
(the config's model, optimizer, schedule and on-device augmentation, through the CLI's
classes) on uniform random uint8 images of CIFAR-10's sizes; accuracy means nothing here.
Each epoch's training batches are timed from the first batch's start to the last batch's end
(validation excluded, the GPU synchronised); the first epoch includes warm-up and compilation.
Then the same network, written in plain PyTorch (bench/plain_resnet9.py), trains as many epochs
on as many images with the same settings, and the last epochs compare. Arguments it does not
know go to the CLI, e.g. ``--model.init_args.channels "[8, 8, 8, 8]"``.
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
from bench.machine import describe  # noqa: E402
from bench.plain_resnet9 import resnet9, train_epoch, warmup_cosine  # noqa: E402
from lightning_app.cli import AppCLI  # noqa: E402

SMOKE = ["--accelerator", "cpu", "--precision", "32-true", "--epochs", "2", "--samples", "600",
         "--model.init_args.channels", "[8, 8, 8, 8]", "--data.init_args.batch_size", "64"]  # fmt: skip


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


def ours(args, cli_args: list[str], generator: torch.Generator) -> tuple[AppCLI, list[tuple[float, int]]]:
    """The config through the CLI's classes on synthetic images; returns the CLI and each epoch's (seconds, samples)."""
    with tempfile.TemporaryDirectory() as tmp:
        cli = AppCLI(args=[
            "--config", args.config, "--trainer.logger", "false", "--trainer.max_epochs", str(args.epochs),
            "--trainer.accelerator", args.accelerator, "--trainer.devices", "1", "--trainer.precision", args.precision,
            "--trainer.benchmark", str(args.benchmark).lower(), "--trainer.enable_progress_bar", "false",
            "--trainer.default_root_dir", tmp, "--compile", str(args.compile).lower(), *cli_args,
        ], run=False)  # fmt: skip
        sizes = {"train": args.samples, "test": 1}

        def synthetic(split: str) -> tuple[torch.Tensor, torch.Tensor]:
            n = sizes[split]
            images = torch.randint(0, 256, (n, *cli.datamodule.input_shape), dtype=torch.uint8, generator=generator)
            return images, torch.randint(0, cli.datamodule.num_classes, (n,), generator=generator)

        cli.datamodule.prepare_data = lambda: None  # nothing to download
        cli.datamodule.load_split = synthetic
        if args.channels_last:
            cli.model.to(memory_format=torch.channels_last)
        timer = EpochTimer()
        cli.trainer.callbacks.append(timer)
        cli.trainer.fit(cli.model, datamodule=cli.datamodule)
    return cli, timer.epochs


def plain(args, cli: AppCLI, generator: torch.Generator) -> list[tuple[float, int]]:
    """The same network and settings as a plain loop over as many training images as ours saw per epoch."""
    device = torch.device("cuda" if args.accelerator in ("gpu", "cuda") else "cpu")
    hparams, data, config = cli.model.hparams, cli.datamodule, cli.config
    torch.backends.cudnn.benchmark = args.benchmark
    model = resnet9(hparams["channels"], data.num_classes).to(device)
    if sum(p.numel() for p in model.parameters()) != sum(p.numel() for p in cli.model.parameters()):
        raise SystemExit("the plain ResNet-9 differs from the config's network: change bench/plain_resnet9.py to match")
    if args.channels_last:
        model.to(memory_format=torch.channels_last)
    if args.compile:
        model.compile()
    n = len(data.splits["train"][0])
    images = torch.randint(0, 256, (n, *data.input_shape), dtype=torch.uint8, generator=generator).to(device)
    labels = torch.randint(0, data.num_classes, (n,), generator=generator).to(device)
    optimizer = getattr(torch.optim, config.optimizer.class_path.rsplit(".", 1)[1])(
        model.parameters(), **config.optimizer.init_args.as_dict()
    )
    total = -(-n // data.batch_size) * config.trainer.max_epochs
    schedule_args = config.lr_scheduler.init_args  # WarmupCosine's: warm-up steps, else a fraction of the run
    warmup = schedule_args.get("warmup_steps") or round(schedule_args.get("warmup_fraction", 0.0) * total)
    schedule = warmup_cosine(max(1, warmup), total)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, schedule)
    mean, std = (torch.tensor(v, device=device).view(1, -1, 1, 1) for v in (data.mean, data.std))
    autocast = torch.bfloat16 if args.precision.startswith("bf16") else None
    settings = (data.batch_size, mean, std, autocast, args.channels_last, hparams["label_smoothing"], hparams["logit_scale"])
    return [train_epoch(model, optimizer, scheduler, images, labels, *settings) for _ in range(args.epochs)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--config", default=str(ROOT / "configs" / "cifar10_resnet.yaml"))
    parser.add_argument("--accelerator", default="gpu")
    parser.add_argument("--precision", default="bf16-mixed")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--samples", type=int, default=50_000, help="synthetic training images (10%% validate)")
    parser.add_argument("--compile", action="store_true", help="compile both models (ours with --compile true)")
    parser.add_argument("--channels-last", action="store_true", help="both models and inputs in channels-last memory format")
    parser.add_argument("--benchmark", type=lambda v: v.lower() == "true", default=True, metavar="true|false",
                        help="cudnn.benchmark for both (our --trainer.benchmark)")  # fmt: skip
    parser.add_argument("--smoke", action="store_true", help="tiny widths, 600 images, 2 epochs on the CPU")
    args, cli_args = parser.parse_known_args()
    if args.smoke:
        args, cli_args = parser.parse_known_args([*SMOKE, *sys.argv[1:]])
    generator = torch.Generator().manual_seed(0)
    cli, ours_epochs = ours(args, cli_args, generator)
    plain_epochs = plain(args, cli, generator)
    device = "cuda" if args.accelerator in ("gpu", "cuda") else "cpu"
    print(describe(device))
    print(f"{Path(args.config).name}, {args.precision}, batch {cli.datamodule.batch_size}, compile {args.compile}, "
          f"channels-last {args.channels_last}, cudnn.benchmark {args.benchmark}")  # fmt: skip
    print("epoch  ours s  ours images/s  plain s  plain images/s  ours/plain time")
    for epoch, ((s1, n1), (s2, n2)) in enumerate(zip(ours_epochs, plain_epochs, strict=True)):
        print(f"{epoch:5d}  {s1:6.2f}  {n1 / s1:13,.0f}  {s2:7.2f}  {n2 / s2:14,.0f}  {(s1 / n1) / (s2 / n2):15.2f}")
    (s1, n1), (s2, n2) = ours_epochs[-1], plain_epochs[-1]
    epochs = yaml.safe_load(Path(args.config).read_text())["trainer"]["max_epochs"]
    print(f"last epoch: ours {n1 / s1:,.0f} images/s, plain {n2 / s2:,.0f} images/s, ours/plain time per image "
          f"{(s1 / n1) / (s2 / n2):.2f}x; the config's {epochs} epochs would take {s1 * epochs:.1f} s at our rate")


if __name__ == "__main__":
    main()
