"""Training-loader throughput with augmentation on CIFAR-sized data: whole-batch path vs per-sample Dataset.

    python bench/cifar_loader.py [--rounds 3] [--device cpu|cuda] [--workers 0] [--threads 1]

Candidate: ``datamodules.CIFAR10``'s loader (batches by indexing one uint8 tensor) with its
``augment`` (crop with padding 4, flip, 8x8 cutout) and ``normalize`` on the whole batch.
Baseline: the common pipeline, a ``Dataset`` whose ``__getitem__`` augments and normalises one
image (the same three augmentations, in plain torch) behind a shuffling ``DataLoader``.
Both run full epochs over 50,000 x 3 x 32 x 32 synthetic images, interleaved, ``--rounds`` times;
the ratio of samples per second is reported per round and as the median. Both run on one
torch thread by default: a DataLoader worker uses one, and on a shared CPU a second thread
mostly waits for the other processes.
"""

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch
from torch.utils.data import DataLoader, Dataset

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench.machine import describe  # noqa: E402
from datamodules import CIFAR10  # noqa: E402


class PerSampleCIFAR(Dataset):
    """The per-image pipeline: pad-and-crop, flip, cutout, normalise, one sample at a time."""

    def __init__(self, images, labels, mean, std, padding=4, cutout=8):
        self.images, self.labels, self.padding, self.cutout = images, labels, padding, cutout
        self.mean, self.std = torch.tensor(mean).view(-1, 1, 1), torch.tensor(std).view(-1, 1, 1)

    def __len__(self):
        return len(self.images)

    def __getitem__(self, i):
        p, size = self.padding, self.cutout
        padded = torch.nn.functional.pad(self.images[i], (p, p, p, p))  # (3, 40, 40) uint8
        top, left = torch.randint(0, 2 * p + 1, (2,)).tolist()
        image = padded[:, top : top + 32, left : left + 32]
        if torch.rand(()) < 0.5:
            image = image.flip(-1)
        y, x = torch.randint(0, 32, (2,)).tolist()
        image = image.clone()
        image[:, max(0, y - size // 2) : y + size // 2, max(0, x - size // 2) : x + size // 2] = 0
        return (image.float() / 255.0 - self.mean) / self.std, self.labels[i]


def time_epoch(batches, step) -> float:
    """Samples per second over one epoch; ``step`` finishes a batch (device transfer, augmentation)."""
    start, n = time.perf_counter(), 0
    for images, labels in batches:
        n += len(step(images, labels))
    return n / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--device", default="cpu", help="where the whole-batch path augments (cpu or cuda)")
    parser.add_argument("--workers", type=int, default=0, help="DataLoader worker processes of the baseline")
    parser.add_argument("--batch-size", type=int, default=512)
    parser.add_argument("--samples", type=int, default=50_000)
    parser.add_argument("--threads", type=int, default=1, help="torch threads for both (a DataLoader worker uses 1)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    generator = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (args.samples, 3, 32, 32), dtype=torch.uint8, generator=generator)
    labels = torch.randint(0, 10, (args.samples,), generator=generator)

    data = CIFAR10(batch_size=args.batch_size, crop_padding=4, flip=True, cutout=8)
    data.splits["train"] = (images, labels)

    def whole_batch(batch_images, batch_labels):
        batch_images = batch_images.to(device, non_blocking=True)
        out = data.normalize(data.augment(batch_images))
        if device.type == "cuda":
            torch.cuda.synchronize()
        return out

    dataset = PerSampleCIFAR(images, labels, data.mean, data.std)
    baseline = DataLoader(dataset, batch_size=args.batch_size, shuffle=True, num_workers=args.workers)

    print(describe(device))
    print(f"whole-batch on {device}, "
          f"baseline with {args.workers} workers, {args.samples} samples, batch {args.batch_size}")
    print("round  whole-batch samples/s  per-sample samples/s  ratio")
    ratios = []
    for round_ in range(1, args.rounds + 1):
        loader = data.train_dataloader()
        loader.set_epoch(round_)
        candidate = time_epoch(loader, whole_batch)
        reference = time_epoch(baseline, lambda x, y: x)
        ratios.append(candidate / reference)
        print(f"{round_:5d}  {candidate:21,.0f}  {reference:20,.0f}  {ratios[-1]:5.1f}x")
    print(f"median ratio: {statistics.median(ratios):.1f}x")


if __name__ == "__main__":
    main()
