"""CIFAR-10 and CIFAR-100 from the official binary archives, with batch augmentation on the device.

The binary version is a tar.gz of fixed-size records: label byte(s) then 3,072 pixel bytes
(1,024 red, 1,024 green, 1,024 blue, row by row). Unlike the Python version it needs no
unpickling, which could run code from a tampered download.
"""

import os
import shutil
import tarfile
import tempfile
import zlib
from pathlib import Path
from typing import Literal

import numpy as np
import torch
from lightning.pytorch.utilities import rank_zero_warn
from torch import Tensor

from datamodules.augment import augment_generator, cutout, random_crop_flip, training_batch_index
from datamodules.base import ImageDataModule, data_folder, run_seed
from datamodules.download import download, md5sum
from lightning_app.record.read import read_bounded

PIXELS = 3 * 32 * 32
LONGEST_NAMES = 1 << 16  # bytes: a names file is a few hundred; anything longer is not one


def extract(archive: Path, directory: Path, members: list[str]) -> None:
    """Extracts exactly ``members``, which must be regular files, from a tar.gz into ``directory``.

    Any member that would land outside ``directory`` (absolute path, ``..``) fails the whole
    archive; links and other members are never written. The files are extracted into a temporary
    folder inside ``directory`` and renamed into place only once the whole archive is accepted, so
    a refused archive leaves no file behind for a later run to train on.
    """
    root = directory.resolve()
    root.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".extracting-", dir=root))
    try:
        with tarfile.open(archive, "r:gz") as tar:
            for member in tar:
                name = member.name.removeprefix("./")
                target = (root / name).resolve()
                if Path(name).is_absolute() or not target.is_relative_to(root):
                    raise ValueError(f"{archive}: member {member.name!r} would extract outside {directory}; refusing it")
                if name not in members:
                    continue
                if not member.isfile():
                    raise ValueError(f"{archive}: member {member.name!r} is not a regular file (a link?); refusing it")
                (staging / name).parent.mkdir(parents=True, exist_ok=True)
                with tar.extractfile(member) as source, open(staging / name, "wb") as f:
                    shutil.copyfileobj(source, f, 1 << 20)
        missing = sorted(name for name in members if not (staging / name).is_file())
        if missing:
            raise ValueError(
                f"{archive} lacks {', '.join(missing)}; is it the right archive? Delete it to download it again"
            )
        for name in members:
            (root / name).parent.mkdir(parents=True, exist_ok=True)
            os.replace(staging / name, root / name)
    except (tarfile.TarError, EOFError, zlib.error, OSError) as error:
        raise ValueError(f"{archive}: not a readable tar.gz ({error}); delete it to download it again") from error
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def read_member(archive: Path, name: str) -> bytes | None:
    """The regular file ``name`` of a tar.gz, read into memory (nothing lands on disk); None if absent,
    not a regular file (a link), longer than a names file, or the archive is unreadable."""
    try:
        with tarfile.open(archive, "r:gz") as tar:
            member = next((m for m in tar if m.name.removeprefix("./") == name), None)
            if member is not None and member.isfile() and member.size <= LONGEST_NAMES:
                with tar.extractfile(member) as source:
                    return source.read()
    except (tarfile.TarError, EOFError, zlib.error, OSError) as error:
        rank_zero_warn(f"{archive}: class names not readable ({error}); class_names is None")
    return None


def read_records(path: Path, label_bytes: int, num_labels: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray]:
    """Parses a CIFAR binary file into uint8 images ``(N, 3, 32, 32)`` and labels ``(N, label_bytes)``."""
    data = np.fromfile(path, dtype=np.uint8)
    record = label_bytes + PIXELS
    if len(data) == 0 or len(data) % record:
        raise ValueError(
            f"{path}: {len(data)} bytes is not a whole number of {record}-byte records; "
            "the file is truncated or not a CIFAR binary file: delete it and its archive to download them again"
        )
    records = data.reshape(-1, record)
    labels = records[:, :label_bytes]
    for column, limit in enumerate(num_labels):
        found = labels[:, column].max()
        if found >= limit:
            raise ValueError(f"{path}: label {found} in label byte {column} is out of range 0..{limit - 1}")
    return records[:, label_bytes:].reshape(-1, 3, 32, 32), labels


class CIFAR10(ImageDataModule):
    """CIFAR-10: 50,000 training and 10,000 test colour images of 32x32 in 10 classes.

    Training batches are augmented on the device, as uint8 before normalisation: a random
    crop of the image padded by ``crop_padding`` black pixels, a horizontal flip with
    probability 1/2, and a black ``cutout`` square. The draws are seeded by the run's seed
    (``seed_everything``, else ``seed``), the batch's global index and the rank, so a rerun augments
    identically. Validation and test batches are never augmented.

    Args:
        data_dir: Folder that holds (or receives) the archive and its extracted folder.
        batch_size: Samples per batch, per device.
        val_split: Fraction of the training split held out for validation (seeded).
        seed: Seed of the train/validation split; shuffling and augmentation follow ``seed_everything``.
        crop_padding: Pixels of padding before the random 32x32 crop; 0 turns cropping off.
        flip: Mirror each training image left to right with probability 1/2.
        cutout: Side of the square zeroed at a random place in each training image; 0 for none.
    """

    input_shape = (3, 32, 32)
    num_classes = 10
    mean, std = (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)
    mirrors = ["https://www.cs.toronto.edu/~kriz/"]
    archive, md5 = "cifar-10-binary.tar.gz", "c32a1d4ab5d03f1284b67883e8d87530"
    folder = "cifar-10-batches-bin"
    split_files = {"train": [f"data_batch_{i}.bin" for i in range(1, 6)], "test": ["test_batch.bin"]}
    label_bytes, num_labels = 1, (10,)
    label_column = 0  # which label byte is the class
    names_file = "batches.meta.txt"
    class_names: list[str] | None = None  # read at setup from `names_file`; None where it is absent or wrong

    def __init__(
        self,
        data_dir: str = "data/cifar10",
        batch_size: int = 512,
        val_split: float = 0.1,
        seed: int = 0,
        crop_padding: int = 4,
        flip: bool = True,
        cutout: int = 0,
    ) -> None:
        super().__init__(batch_size, val_split, seed)
        self.data_dir = data_folder(data_dir)
        self.crop_padding = crop_padding
        self.flip = flip
        self.cutout = cutout

    def _members(self) -> list[str]:
        return [f"{self.folder}/{name}" for names in self.split_files.values() for name in names]

    def prepare_data(self) -> None:
        if all((self.data_dir / member).exists() for member in self._members()):
            return
        archive = self.data_dir / self.archive
        if not archive.exists():
            download(self.mirrors, self.archive, self.md5, self.data_dir)
        elif (actual := md5sum(archive)) != self.md5:  # copied by hand: check it as a download is checked
            raise ValueError(
                f"{archive}: MD5 {actual}, expected {self.md5}; it is not the official archive or it is corrupt: "
                "delete it to download it again"
            )
        extract(archive, self.data_dir, self._members())

    def source(self, split: str) -> str:
        return f"{self.data_dir / self.folder} ({', '.join(self.split_files[split])}, in that order)"

    def load_split(self, split: str) -> tuple[Tensor, Tensor]:
        images, labels = [], []
        for name in self.split_files[split]:
            path = self.data_dir / self.folder / name
            if not path.exists():
                raise FileNotFoundError(
                    f"{path} is missing; run `fit` (prepare_data downloads and extracts it) "
                    f"or copy {self.archive} into {self.data_dir}"
                )
            batch_images, batch_labels = read_records(path, self.label_bytes, self.num_labels)
            images.append(batch_images)
            labels.append(batch_labels[:, self.label_column])
        return torch.from_numpy(np.concatenate(images)), torch.from_numpy(np.concatenate(labels).astype(np.int64))

    def setup(self, stage: str) -> None:
        super().setup(stage)
        if self.class_names is None:
            self.class_names = self.read_class_names()

    def read_class_names(self) -> list[str] | None:
        """The lines of the names file, from the extracted folder when it is there, else from the archive;
        None when neither holds one of ``num_classes`` names."""
        extracted, archive = self.data_dir / self.folder / self.names_file, self.data_dir / self.archive
        if extracted.exists():
            text = read_bounded(extracted, LONGEST_NAMES)  # a folder, a device or a huge file is an error naming it
        elif archive.is_file():
            text = read_member(archive, f"{self.folder}/{self.names_file}") or b""
        else:
            return None
        names = [line.strip() for line in text.decode("utf-8", errors="replace").splitlines() if line.strip()]
        return names if len(names) == self.num_classes else None

    def augment(self, images: Tensor) -> Tensor:
        """Crop, flip and cutout of a uint8 ``(B, C, H, W)`` training batch, seeded as the class says."""
        trainer = self.trainer
        generator = None
        if trainer is not None:
            step = training_batch_index(trainer)
            generator = augment_generator(images.device, run_seed(self.seed), step, trainer.global_rank)
        return cutout(random_crop_flip(images, self.crop_padding, self.flip, generator), self.cutout, generator)


class CIFAR100(CIFAR10):
    """CIFAR-100: CIFAR-10's sizes with 100 fine classes in 20 coarse superclasses.

    Args:
        data_dir: Folder that holds (or receives) the archive and its extracted folder.
        batch_size: Samples per batch, per device.
        val_split: Fraction of the training split held out for validation (seeded).
        seed: Seed of the train/validation split; shuffling and augmentation follow ``seed_everything``.
        crop_padding: Pixels of padding before the random 32x32 crop; 0 turns cropping off.
        flip: Mirror each training image left to right with probability 1/2.
        cutout: Side of the square zeroed at a random place in each training image; 0 for none.
        labels: Classify the 100 ``fine`` classes or the 20 ``coarse`` superclasses.
    """

    mean, std = (0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762)
    archive, md5 = "cifar-100-binary.tar.gz", "03b5dce01913d631647c71ecec9e9cb8"
    folder = "cifar-100-binary"
    split_files = {"train": ["train.bin"], "test": ["test.bin"]}
    label_bytes, num_labels = 2, (20, 100)  # each record: coarse label, fine label, pixels

    def __init__(
        self,
        data_dir: str = "data/cifar100",
        batch_size: int = 512,
        val_split: float = 0.1,
        seed: int = 0,
        crop_padding: int = 4,
        flip: bool = True,
        cutout: int = 0,
        labels: Literal["fine", "coarse"] = "fine",
    ) -> None:
        super().__init__(data_dir, batch_size, val_split, seed, crop_padding, flip, cutout)
        self.label_column = 1 if labels == "fine" else 0
        self.names_file = f"{labels}_label_names.txt"
        self.num_classes = self.num_labels[self.label_column]
