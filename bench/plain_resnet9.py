"""ResNet-9 of ``configs/cifar10_resnet.yaml`` and its training epoch, written as plain PyTorch.

The reference ``bench/cifar_gpu.py`` times our CLI against: no Lightning, no data module, the
whole uint8 training split already on the device, augmentation (pad-4 crop, flip, 8x8 cutout)
on each batch with plain tensor indexing, the same optimizer, per-step warm-up + cosine schedule,
label smoothing, logit scale, precision, compilation and memory format.
"""

import math
import time
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn


def conv_bn(c_in: int, c_out: int) -> list[nn.Module]:
    # The bias stays despite the batch norm: our CNN keeps it, and the parameter counts must agree.
    return [nn.Conv2d(c_in, c_out, 3, padding=1), nn.BatchNorm2d(c_out), nn.ReLU()]


class Residual(nn.Module):
    def __init__(self, channels: int) -> None:
        super().__init__()
        self.f = nn.Sequential(*conv_bn(channels, channels), *conv_bn(channels, channels))

    def forward(self, x: Tensor) -> Tensor:
        return x + self.f(x)


def resnet9(channels: Sequence[int], num_classes: int) -> nn.Sequential:
    """prep -> layer1 (pool, residual) -> layer2 (pool) -> layer3 (pool, residual) -> global max pool -> linear."""
    c1, c2, c3, c4 = channels
    return nn.Sequential(
        *conv_bn(3, c1),
        *conv_bn(c1, c2), nn.MaxPool2d(2), Residual(c2),
        *conv_bn(c2, c3), nn.MaxPool2d(2),
        *conv_bn(c3, c4), nn.MaxPool2d(2), Residual(c4),
        nn.AdaptiveMaxPool2d(1), nn.Flatten(), nn.Linear(c4, num_classes),
    )  # fmt: skip


def augment(images: Tensor, padding: int = 4, cutout: int = 8) -> Tensor:
    """uint8 ``(B, C, H, W)``: a random crop of the zero-padded image, a flip with probability 1/2, a black square."""
    b, c, h, w = images.shape
    device = images.device
    padded = F.pad(images, (padding,) * 4)  # (B, C, H + 2p, W + 2p)
    dy, dx = torch.randint(0, 2 * padding + 1, (2, b, 1, 1, 1), device=device)  # (B, 1, 1, 1) each
    ys, xs = torch.arange(h, device=device).view(1, 1, h, 1), torch.arange(w, device=device).view(1, 1, 1, w)
    batch, channel = torch.arange(b, device=device).view(b, 1, 1, 1), torch.arange(c, device=device).view(1, c, 1, 1)
    crops = padded[batch, channel, dy + ys, dx + xs]  # (B, C, H, W)
    crops = torch.where(torch.rand(b, 1, 1, 1, device=device) < 0.5, crops.flip(3), crops)
    cy, cx = torch.randint(0, h, (2, b, 1, 1, 1), device=device)  # the square's centre
    half = cutout // 2
    square = (ys >= cy - half) & (ys < cy + half) & (xs >= cx - half) & (xs < cx + half)  # (B, 1, H, W)
    return crops.masked_fill(square, 0)


def warmup_cosine(warmup: int, total: int):
    """The config's schedule: linear warm-up to the peak, then a cosine down to zero at ``total``."""

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        return 0.5 * (1 + math.cos(math.pi * min(1.0, (step - warmup) / max(1, total - warmup))))

    return factor


def train_epoch(model, optimizer, scheduler, images: Tensor, labels: Tensor, batch_size: int, mean: Tensor, std: Tensor,
                autocast: torch.dtype | None, channels_last: bool, label_smoothing: float,
                logit_scale: float) -> tuple[float, int]:  # fmt: skip
    """One shuffled pass over the device-resident split; returns its seconds (the device synchronised) and samples."""
    sync = torch.cuda.synchronize if images.device.type == "cuda" else lambda: None
    sync()
    start = time.perf_counter()
    for batch in torch.randperm(len(images), device=images.device).split(batch_size):
        x = (augment(images[batch]).float() / 255.0 - mean) / std
        if channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        with torch.autocast(images.device.type, dtype=autocast or torch.float32, enabled=autocast is not None):
            loss = F.cross_entropy(model(x) * logit_scale, labels[batch], label_smoothing=label_smoothing)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        scheduler.step()
    sync()
    return time.perf_counter() - start, len(images)
