"""What every in-memory image data module shares: whole-split uint8 tensors, batches by indexing.

A split is one ``(N, C, H, W)`` uint8 tensor and one ``(N,)`` int64 label tensor. A batch is
``images[indices]``: no per-sample ``__getitem__``, no collate, no worker processes. Batches
travel to the device as uint8 (a quarter of the bytes of float32) and are augmented (training
batches), then converted and normalised there, on the whole batch.
"""

import math
import os
from pathlib import Path

import lightning as L
import torch
import torch.nn.functional as F
from lightning.pytorch.utilities import rank_zero_warn
from torch import Tensor


class BatchLoader:
    """Yields ``(images, labels)`` batches from whole-split tensors.

    Every rank draws the same seeded permutation for an epoch and keeps its own interleaved
    shard (``perm[rank::world_size]``). Training shards are cut to one length so every rank
    takes the same number of optimizer steps (DDP needs that); evaluation shards are not
    padded, so no sample is counted twice in a synchronised metric.

    It is resumable mid-epoch: ``state_dict`` counts the batches yielded in the current epoch,
    and after ``load_state_dict`` the next pass over that same epoch skips them, so a run
    restored from a mid-epoch checkpoint sees exactly the batches it had not yet trained on.
    ``drawn`` counts the batches yielded since the start of the run, over every epoch, and is
    restored with the rest: it seeds the augmentation of each training batch.
    """

    def __init__(
        self,
        tensors: tuple[Tensor, ...],
        batch_size: int,
        shuffle: bool = False,
        seed: int = 0,
        rank: int = 0,
        world_size: int = 1,
    ) -> None:
        self.tensors = tensors
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.seed = seed
        self.rank = rank
        self.world_size = world_size
        dropped = len(tensors[0]) % world_size if shuffle else 0
        if dropped:
            rank_zero_warn(
                f"{len(tensors[0])} training samples over {world_size} devices: every epoch leaves out {dropped} "
                "(different ones each epoch) so all devices take the same steps, and a kNN memorises the rest only; "
                f"use a device count that divides {len(tensors[0])} to see every sample every epoch"
            )
        self.epoch = 0
        self.yielded = 0  # batches yielded so far in this epoch's pass
        self.drawn = 0  # batches yielded so far in the run, over all epochs
        self._resume: dict[str, int] | None = None
        # Lightning calls `set_epoch` on a loader's `sampler` (and `batch_sampler.sampler`) at every epoch start.
        self.sampler = self.batch_sampler = self

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def _indices(self) -> Tensor:
        n = len(self.tensors[0])
        if self.shuffle:
            generator = torch.Generator().manual_seed(self.seed + self.epoch)
            indices = torch.randperm(n, generator=generator)
        else:
            indices = torch.arange(n)
        if self.shuffle and self.world_size > 1:  # equal shards: drop the remainder this epoch
            indices = indices[: n - n % self.world_size]
        return deal(indices, self.rank, self.world_size)

    def __len__(self) -> int:
        n = len(self.tensors[0])
        if self.shuffle:
            shard = n // self.world_size if self.world_size > 1 else n
        else:
            shard = len(range(self.rank, n, self.world_size))
        return math.ceil(shard / self.batch_size)

    def __iter__(self):
        # Runs at the first `next`, after Lightning's `set_epoch`: a pass over another epoch skips nothing.
        resume, self._resume = self._resume, None
        skip = resume["yielded"] if resume and resume["epoch"] == self.epoch else 0
        self.yielded = skip
        for batch in self._indices().split(self.batch_size)[skip:]:
            self.yielded += 1
            self.drawn += 1
            yield tuple(t.index_select(0, batch) for t in self.tensors)  # ~20x faster than t[batch] on CPU

    def state_dict(self) -> dict[str, int]:
        return {"epoch": self.epoch, "yielded": self.yielded, "drawn": self.drawn}

    def load_state_dict(self, state: dict[str, int]) -> None:
        self.epoch = state["epoch"]
        # A state without the run's count: every earlier epoch was drawn whole.
        self.drawn = state.get("drawn", state["epoch"] * len(self) + state["yielded"])
        self._resume = dict(state)


def run_seed(default: int) -> int:
    """The run's seed: the ``seed_everything`` value, else ``default`` (the data module's own seed).

    ``seed_everything`` puts its seed in ``PL_GLOBAL_SEED``; every DDP rank runs it with the same
    value (and spawned ranks inherit the variable), and a resumed run is given the same value
    again, so every rank draws the same permutations and a resumed run the uninterrupted one's.
    ``torch.initial_seed()`` would not do: it changes whenever anything reseeds torch.
    """
    seed = os.environ.get("PL_GLOBAL_SEED")
    return int(seed) if seed is not None else default


def check_finite(images: Tensor, split: str, source: str) -> None:
    """Raises if a float split holds a NaN or an infinity, naming the split, the first bad sample and its source.

    Integer images (the uint8 splits of every shipped data module) cannot hold either: nothing to check.
    """
    if not images.is_floating_point():
        return
    bad = ~torch.isfinite(images.flatten(1)).all(1)  # (N,)
    if bad.any():
        first = int(bad.nonzero()[0])
        raise ValueError(
            f"{source}: the {split} split holds {int(bad.sum())} samples with NaN or infinite values, "
            f"the first at index {first}; fix or drop them in the data before training"
        )


def data_folder(data_dir: str) -> Path:
    """``data_dir`` as a Path, checked: a file there is an error (a missing folder is created when needed)."""
    path = Path(data_dir)
    if path.exists() and not path.is_dir():
        raise NotADirectoryError(f"data_dir {data_dir} is a file: give a folder (it is created when missing)")
    return path


def deal(items: Tensor, rank: int, world_size: int) -> Tensor:
    """Rank ``rank``'s shard of ``items``: every ``world_size``-th item from position ``rank``.

    The one place that fixes how ``BatchLoader`` deals samples to ranks; ``gather_shards`` undoes it.
    """
    return items[rank::world_size]


def gather_shards(module: L.LightningModule, *shards: Tensor) -> tuple[Tensor, ...]:
    """Under DDP, every rank's ``(n_r, ...)`` shards of one loader joined in the single-process order.

    Each shard holds the first ``n_r`` rows its rank was dealt (shards may differ in length); the
    gathered rows are put back in the order of the items they were dealt from. Unchanged on one device.
    """
    world = module.trainer.world_size
    if world == 1:
        return shards
    device = shards[0].device
    lengths = module.all_gather(torch.tensor(len(shards[0]), device=device))  # (W,)
    longest = int(lengths.max())
    dealt = torch.arange(longest * world, device=device)
    position = torch.stack([deal(dealt, rank, world) for rank in range(world)])  # (W, L) where each row came from
    valid = torch.arange(longest, device=device)[None] < lengths[:, None]  # (W, L)
    order = position[valid].argsort()
    gathered = []
    for shard in shards:
        padding = [0, 0] * (shard.dim() - 1) + [0, longest - len(shard)]
        gathered.append(module.all_gather(F.pad(shard, padding))[valid][order])  # (W, L, ...) -> (sum n_r, ...)
    return tuple(gathered)


def split_train_val(
    images: Tensor, labels: Tensor, val_split: float, seed: int
) -> tuple[tuple[Tensor, Tensor], tuple[Tensor, Tensor]]:
    """Carves a validation set out of a training split: the same samples for the same seed."""
    if not 0.0 <= val_split < 1.0:
        raise ValueError(f"val_split must be in [0, 1), got {val_split}")
    n_val = round(len(images) * val_split)
    perm = torch.randperm(len(images), generator=torch.Generator().manual_seed(seed))
    val, train = perm[:n_val], perm[n_val:]
    return (images[train], labels[train]), (images[val], labels[val])


class ImageDataModule(L.LightningDataModule):
    """Base for image classification data held in memory.

    Subclasses set ``input_shape``, ``num_classes``, ``mean`` and ``std`` (per channel, on the
    0-1 scale) and implement ``load_split("train" | "test")``; they may override ``augment`` and
    ``source``. ``seed`` fixes the train/validation split; the training order follows the run's
    seed (``run_seed``), so repeats with other ``seed_everything`` values validate on the same samples.
    """

    input_shape: tuple[int, int, int]
    num_classes: int
    mean: tuple[float, ...]
    std: tuple[float, ...]

    def __init__(self, batch_size: int = 256, val_split: float = 0.1, seed: int = 0) -> None:
        super().__init__()
        if batch_size < 1:
            raise ValueError(f"batch_size must be 1 or more, got {batch_size}")
        if not 0.0 <= val_split < 1.0:
            raise ValueError(f"val_split must be in [0, 1), got {val_split}")
        self.batch_size = batch_size
        self.val_split = val_split
        self.seed = seed
        self.splits: dict[str, tuple[Tensor, Tensor]] = {}

    def load_split(self, split: str) -> tuple[Tensor, Tensor]:
        """Returns ``(images, labels)``: uint8 ``(N, C, H, W)`` and int64 ``(N,)``."""
        raise NotImplementedError

    def source(self, split: str) -> str:
        """Where ``split`` is read from, for error messages: a file or folder where there is one."""
        return type(self).__name__

    def load_checked(self, split: str) -> tuple[Tensor, Tensor]:
        """``load_split``, its images checked finite once, as read (indices are the source's own)."""
        images, labels = self.load_split(split)
        check_finite(images, split, self.source(split))
        return images, labels

    def setup(self, stage: str) -> None:
        if stage in ("fit", "validate") and "train" not in self.splits:
            train, val = split_train_val(*self.load_checked("train"), self.val_split, self.seed)
            self.splits.update(train=train, val=val)
        if stage in ("test", "predict") and "test" not in self.splits:
            self.splits["test"] = self.load_checked("test")
        for name, (images, _) in self.splits.items():
            if len(images) == 0 and name != "val":  # an empty validation split is reported when it is used
                raise ValueError(
                    f"{type(self).__name__}: the {name} split has no images; check the data files and the split "
                    "fractions (val_split, and test_split where there is one)"
                )
            if tuple(images.shape[1:]) != tuple(self.input_shape):
                raise ValueError(
                    f"{type(self).__name__} {name} split has images of shape {tuple(images.shape[1:])}, "
                    f"expected {tuple(self.input_shape)}"
                )

    def _loader(self, split: str, shuffle: bool) -> BatchLoader:
        if split not in self.splits:
            raise RuntimeError(f"{type(self).__name__} has no '{split}' split: call setup() first")
        if split == "val" and len(self.splits["val"][0]) == 0:
            raise ValueError(f"{type(self).__name__}: the validation split is empty; raise val_split above 0")
        trainer = self.trainer
        rank, world = (trainer.global_rank, trainer.world_size) if trainer else (0, 1)
        return BatchLoader(self.splits[split], self.batch_size, shuffle, run_seed(self.seed), rank, world)

    def train_dataloader(self) -> BatchLoader:
        return self._loader("train", shuffle=True)

    def val_dataloader(self) -> BatchLoader:
        return self._loader("val", shuffle=False)

    def test_dataloader(self) -> BatchLoader:
        return self._loader("test", shuffle=False)

    def predict_dataloader(self) -> BatchLoader:
        return self._loader("test", shuffle=False)

    def normalize(self, images: Tensor) -> Tensor:
        """uint8 ``(B, C, H, W)`` -> float32, zero mean and unit variance per channel."""
        mean = torch.tensor(self.mean, device=images.device).view(1, -1, 1, 1)
        std = torch.tensor(self.std, device=images.device).view(1, -1, 1, 1)
        return images.float().mul_(1.0 / (255.0 * std)).add_(-mean / std)  # in place: one float batch, not three

    def augment(self, images: Tensor) -> Tensor:
        """Training-time augmentation of a uint8 ``(B, C, H, W)`` batch, before normalisation; none by default."""
        return images

    def on_after_batch_transfer(self, batch: tuple[Tensor, Tensor], dataloader_idx: int):
        """On the device: training batches augmented as uint8 (a quarter of float32's bytes), then all normalised."""
        images, labels = batch
        if self.trainer is not None and self.trainer.training:
            images = self.augment(images)
        return self.normalize(images), labels
