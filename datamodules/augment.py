"""Augmentations of whole batches, on whatever device the batch is on.

Each function draws one random number (or pair) per image from ``generator`` and
transforms the batch with a handful of tensor operations: no loop over images, no copy
back to the CPU. ``generator=None`` draws from torch's global generator.
"""

import torch
from torch import Tensor


def augment_generator(device: torch.device, seed: int, step: int, rank: int) -> torch.Generator:
    """A generator on ``device`` whose draws depend on the seed, the batch's global index and the rank.

    The batch index counts every training batch since the start of the run (across epochs and
    restored on resume), so a rerun with the same seed augments every batch identically, and
    each DDP rank draws its own numbers.
    """
    mixed = hash((seed, step, rank)) & (2**63 - 1)  # ints hash the same in every process
    return torch.Generator(device=device).manual_seed(mixed)


def random_crop(images: Tensor, padding: int, generator: torch.Generator | None = None) -> Tensor:
    """Pads by ``padding`` zeros on every side, then cuts each image back to its size at a random offset.

    On a normalised batch zero is the mean colour, so the revealed border carries no signal.
    """
    if padding == 0:
        return images
    b, c, h, w = images.shape
    padded = torch.nn.functional.pad(images, (padding, padding, padding, padding))  # (B, C, H+2p, W+2p)
    offsets = torch.randint(0, 2 * padding + 1, (2, b), device=images.device, generator=generator)
    rows = offsets[0, :, None] + torch.arange(h, device=images.device)  # (B, H)
    cols = offsets[1, :, None] + torch.arange(w, device=images.device)  # (B, W)
    batch = torch.arange(b, device=images.device)[:, None, None, None]
    channel = torch.arange(c, device=images.device)[None, :, None, None]
    return padded[batch, channel, rows[:, None, :, None], cols[:, None, None, :]]  # (B, C, H, W)


def random_flip(images: Tensor, generator: torch.Generator | None = None) -> Tensor:
    """Mirrors each image left to right with probability 1/2."""
    flip = torch.rand(len(images), device=images.device, generator=generator) < 0.5
    return torch.where(flip[:, None, None, None], images.flip(-1), images)


def cutout(images: Tensor, size: int, generator: torch.Generator | None = None) -> Tensor:
    """Zeroes one ``size`` x ``size`` square per image, centred anywhere (so it may be clipped at the edge)."""
    if size == 0:
        return images
    b, _, h, w = images.shape
    centres = torch.rand(2, b, 1, device=images.device, generator=generator)
    top = (centres[0] * h).long() - size // 2  # (B, 1)
    left = (centres[1] * w).long() - size // 2
    rows = torch.arange(h, device=images.device)
    cols = torch.arange(w, device=images.device)
    inside_rows = (rows >= top) & (rows < top + size)  # (B, H)
    inside_cols = (cols >= left) & (cols < left + size)  # (B, W)
    square = inside_rows[:, None, :, None] & inside_cols[:, None, None, :]  # (B, 1, H, W)
    return images.masked_fill(square, 0.0)
