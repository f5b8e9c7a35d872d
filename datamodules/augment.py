"""Augmentations of whole batches, on whatever device the batch is on.

Each function draws a few random numbers per image from ``generator`` and transforms the
batch with a handful of tensor operations: no loop over images, no copy back to the CPU.
They run on the uint8 batch, before normalisation, where a batch is a quarter of the bytes
of its float32 form; padding and cutout fill with 0 (black). ``generator=None`` draws from
torch's global generator.
"""

import lightning as L
import torch
from torch import Tensor


def training_batch_index(trainer: L.Trainer) -> int:
    """The index of the training batch being transferred among all training batches of the run.

    The training loader counts the batches it has yielded since the start of the run
    (``BatchLoader.drawn``, restored from checkpoints). Lightning draws a sized loader's batches
    one at a time and transfers each before drawing the next, so the batch being transferred is
    the last one drawn. ``tests/datamodules/test_augment.py`` pins what it counts, across epochs,
    under gradient accumulation and after a mid-epoch resume.
    """
    return trainer.train_dataloader.drawn - 1


def augment_generator(device: torch.device, seed: int, step: int, rank: int) -> torch.Generator:
    """A generator on ``device`` whose draws depend on the seed, the batch's global index and the rank.

    The batch index counts every training batch since the start of the run (across epochs and
    restored on resume), so a rerun with the same seed augments every batch identically, and
    each DDP rank draws its own numbers.
    """
    mixed = hash((seed, step, rank)) & (2**63 - 1)  # ints hash the same in every process
    return torch.Generator(device=device).manual_seed(mixed)


def random_crop_flip(images: Tensor, padding: int, flip: bool, generator: torch.Generator | None = None) -> Tensor:
    """Pads by ``padding`` zeros on every side, cuts each image back to its size at a random offset
    and, if ``flip``, mirrors it left to right with probability 1/2.

    Every output row is a run of ``W`` consecutive bytes of the padded batch, read forwards (or,
    when mirrored, forwards in a reversed copy of the batch), so the whole batch is one
    ``index_select`` of such runs: a row copy instead of a per-pixel gather.
    """
    if padding == 0 and not flip:
        return images
    b, c, h, w = images.shape
    device = images.device
    padded_h, padded_w = h + 2 * padding, w + 2 * padding
    n = b * c * padded_h * padded_w
    # One buffer: the padded batch, then (to flip) the same bytes reversed, where each row reads backwards.
    source = images.new_zeros(2 * n if flip else n)
    source[:n].view(b, c, padded_h, padded_w)[:, :, padding : padding + h, padding : padding + w] = images
    if flip:
        source[n:] = source[:n].flip(0)
    offsets = torch.randint(0, 2 * padding + 1, (2, b, 1, 1), device=device, generator=generator)
    planes = torch.arange(b * c, device=device).view(b, c, 1) * padded_h  # first padded row of each (b, c)
    rows = planes + offsets[0] + torch.arange(h, device=device)  # (B, C, H) padded row of each output row
    starts = rows * padded_w + offsets[1]  # (B, C, H) its first byte
    if flip:
        mirrored = torch.rand(b, 1, 1, device=device, generator=generator) < 0.5
        # Reversed, the row's last byte start + w - 1 sits at n + (n - 1 - (start + w - 1)).
        starts = torch.where(mirrored, 2 * n - starts - w, starts)
    runs = source.unfold(0, w, 1)  # (len - w + 1, W): every run of W bytes, a view without copying
    return runs.index_select(0, starts.view(-1)).view(b, c, h, w)


def cutout(images: Tensor, size: int, generator: torch.Generator | None = None) -> Tensor:
    """Zeroes one ``size`` x ``size`` square per image, centred anywhere (so it may be clipped at the edge)."""
    if size == 0:
        return images
    b, c, h, w = images.shape
    device = images.device
    centres = torch.rand(2, b, 1, device=device, generator=generator)
    square = torch.arange(size, device=device) - size // 2
    # Clamping folds the part of a square beyond the edge onto the edge row or column, which the square covers anyway.
    rows = ((centres[0] * h).long() + square).clamp(0, h - 1)  # (B, size)
    cols = ((centres[1] * w).long() + square).clamp(0, w - 1)
    planes = torch.arange(b * c, device=device).view(b, c, 1, 1) * h  # first row of each (b, c) plane
    index = (planes + rows[:, None, :, None]) * w + cols[:, None, None, :]  # (B, C, size, size) into the flat batch
    flat = images.clone(memory_format=torch.contiguous_format).view(-1)
    return flat.index_fill_(0, index.view(-1), 0).view(b, c, h, w)
