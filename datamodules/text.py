"""Character-level language modelling over one UTF-8 text file; Tiny Shakespeare by default.

The whole text is one integer tensor. A batch leaves the loader as ``(B,)`` window start
offsets and becomes ``(x, y)`` windows on the device, gathered from a device copy of the text
(1 MB for Tiny Shakespeare): nothing but the offsets crosses to the accelerator per step.
"""

from pathlib import Path

import lightning as L
import numpy as np
import torch
from torch import Tensor

from datamodules.base import BatchLoader, data_folder, run_seed
from datamodules.download import download

# The 65 characters of Tiny Shakespeare's training text, fixed by its checksum: a model can be
# sized before the file is downloaded, and generation from a checkpoint needs no data file.
TINY_SHAKESPEARE_VOCAB = "\n !$&',-.3:;?ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"


class RandomWindows:
    """``batches`` batches of ``batch_size`` random window offsets in ``[0, high)`` per epoch.

    Windows are drawn with replacement, as nanoGPT does. Each rank draws from its own seeded
    generator (seed, epoch, rank), so ranks see different windows and take the same number of steps.
    """

    def __init__(self, high: int, batch_size: int, batches: int, seed: int, rank: int = 0, world_size: int = 1) -> None:
        self.high, self.batch_size, self.batches = high, batch_size, batches
        self.seed, self.rank, self.world_size = seed, rank, world_size
        self.epoch = 0
        # Lightning calls `set_epoch` on a loader's `sampler` (and on `batch_sampler.sampler`) each epoch.
        self.sampler = self.batch_sampler = self
        self.pin = torch.cuda.is_available()  # pinned memory lets the copy to the GPU not block

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return self.batches

    def __iter__(self):
        generator = torch.Generator().manual_seed(self.seed + self.epoch * self.world_size + self.rank)
        offsets = torch.randint(self.high, (self.batches, self.batch_size), generator=generator)
        for batch in offsets.pin_memory() if self.pin else offsets:
            yield (batch,)


class Text(L.LightningDataModule):
    """Next-character prediction on a UTF-8 text: the first 90% trains, the last 10% validates.

    The vocabulary is the sorted set of characters of the training text (nanoGPT's split, so
    figures compare with it). A character that appears only in the validation text is an error
    naming it: replace it in the file or move it into the training part. The vocabulary is read
    on first access (the CLI links ``vocab`` to the model when it builds it); for the default
    Tiny Shakespeare it is known before the download. There is no test split: LM configs set
    ``test_after_fit: false``; ``predict`` runs over the validation windows.

    Args:
        path: UTF-8 text file to model. None: Tiny Shakespeare in ``data_dir``, downloaded when missing.
        data_dir: Folder that holds (or receives) ``input.txt`` of Tiny Shakespeare when ``path`` is None.
        block_size: Characters of context per window; a sample is ``block_size`` + 1 characters.
        batch_size: Windows per batch, per device.
        batches_per_epoch: Training batches of random windows per epoch (and between validations).
        val_batch_size: Windows per validation batch, per device: without gradients a batch far larger than
            the training one costs little memory and validates the whole text in a few large products.
        val_split: Fraction at the end of the text that validates, in contiguous windows.
        seed: Seed of the random training windows when ``seed_everything`` is not set; it is when set.
    """

    url = "https://raw.githubusercontent.com/karpathy/char-rnn/master/data/tinyshakespeare/"
    md5 = "6fb458f1232090904fb40fe944165e91"

    def __init__(
        self,
        path: str | None = None,
        data_dir: str = "data/tinyshakespeare",
        block_size: int = 64,
        batch_size: int = 12,
        batches_per_epoch: int = 250,
        val_split: float = 0.1,
        seed: int = 0,
        val_batch_size: int = 256,
    ) -> None:
        super().__init__()
        if not 0.0 < val_split < 1.0:
            raise ValueError(f"val_split must be in (0, 1), got {val_split}")
        sizes = {"block_size": block_size, "batch_size": batch_size, "batches_per_epoch": batches_per_epoch}
        for name, value in (*sizes.items(), ("val_batch_size", val_batch_size)):
            if value < 1:
                raise ValueError(f"{name} must be 1 or more, got {value}")
        self.file = Path(path) if path is not None else data_folder(data_dir) / "input.txt"
        self.shakespeare = path is None
        self.block_size, self.batch_size, self.batches_per_epoch = block_size, batch_size, batches_per_epoch
        self.val_split, self.seed, self.val_batch_size = val_split, seed, val_batch_size
        self._vocab: str | None = None
        self.tokens: Tensor | None = None  # (N,) the whole text as token ids
        self.n_train = 0
        self._on_device: dict[torch.device, Tensor] = {}

    def __str__(self) -> str:  # Lightning's would iterate the loaders, which are not DataLoaders
        return f"{type(self).__name__}({self.file}, block_size={self.block_size}, batch_size={self.batch_size})"

    @property
    def vocab(self) -> str:
        """The characters of the training text, sorted; token i is ``vocab[i]``."""
        if self._vocab is None:
            if self.shakespeare and not self.file.exists():
                self._vocab = TINY_SHAKESPEARE_VOCAB  # the download is checked against its MD5
            else:
                self._load()
        return self._vocab

    @property
    def vocab_size(self) -> int:
        return len(self.vocab)

    def prepare_data(self) -> None:
        if self.shakespeare and not self.file.exists():
            download([self.url], "input.txt", self.md5, self.file.parent)

    def _load(self) -> None:
        if not self.file.is_file():
            raise FileNotFoundError(f"{self.file}: no such text file; set `path` to a UTF-8 text file")
        try:
            text = self.file.read_bytes().decode("utf-8")
        except UnicodeDecodeError as error:
            raise ValueError(
                f"{self.file}: byte {error.start} is not UTF-8 ({error.reason}); convert the file, "
                "e.g. `iconv -f latin1 -t utf-8`"
            ) from None
        if not text:
            raise ValueError(f"{self.file} is empty; language modelling needs text")
        n_train = int(len(text) * (1.0 - self.val_split))
        vocab = "".join(sorted(set(text[:n_train])))
        unseen = sorted(set(text[n_train:]) - set(vocab))
        if unseen:
            raise ValueError(
                f"{self.file}: the validation text (last {self.val_split:.0%}) holds characters absent from the "
                f"training text: {unseen}; replace them in the file or change val_split"
            )
        if self._vocab is not None and vocab != self._vocab:
            raise ValueError(
                f"{self.file}: vocabulary {vocab!r} differs from the one the model was built with, {self._vocab!r}"
            )
        for name, length in (("training", n_train), ("validation", len(text) - n_train)):
            if length < self.block_size + 1:
                raise ValueError(
                    f"{self.file}: the {name} text has {length} characters, fewer than block_size + 1 = "
                    f"{self.block_size + 1}; lower block_size or use a longer text"
                )
        # Code points -> token ids by binary search in the sorted vocabulary, without a Python loop.
        codes = np.frombuffer(text.encode("utf-32-le"), dtype=np.uint32)
        table = np.frombuffer(vocab.encode("utf-32-le"), dtype=np.uint32)
        dtype = np.uint8 if len(vocab) <= 256 else np.int32
        self.tokens = torch.from_numpy(np.searchsorted(table, codes).astype(dtype))
        self._vocab, self.n_train = vocab, n_train

    def setup(self, stage: str) -> None:
        if self.tokens is None:
            self._load()

    def _rank_world(self) -> tuple[int, int]:
        if self.tokens is None:
            raise RuntimeError(f"{type(self).__name__} has not read {self.file}: call setup() first")
        trainer = self.trainer
        return (trainer.global_rank, trainer.world_size) if trainer else (0, 1)

    def train_dataloader(self) -> RandomWindows:
        high = self.n_train - self.block_size  # a window needs block_size + 1 characters
        return RandomWindows(high, self.batch_size, self.batches_per_epoch, run_seed(self.seed), *self._rank_world())

    def val_dataloader(self) -> BatchLoader:
        # Contiguous windows that tile the validation text; the last < block_size characters are left out.
        n_val = len(self.tokens) - self.n_train
        starts = torch.arange(self.n_train, self.n_train + n_val - self.block_size, self.block_size)
        return BatchLoader((starts,), self.val_batch_size, False, self.seed, *self._rank_world())

    def predict_dataloader(self) -> BatchLoader:
        return self.val_dataloader()  # next-character predictions over the validation text

    def on_after_batch_transfer(self, batch: tuple[Tensor], dataloader_idx: int) -> tuple[Tensor, Tensor]:
        (offsets,) = batch  # (B,)
        device = offsets.device
        if device not in self._on_device:
            self._on_device[device] = self.tokens.to(device)
        index = offsets[:, None] + torch.arange(self.block_size + 1, device=device)  # (B, T+1)
        windows = self._on_device[device][index].long()
        return windows[:, :-1], windows[:, 1:]  # inputs and next-character targets, (B, T) each
