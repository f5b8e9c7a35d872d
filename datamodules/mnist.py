"""MNIST and the data sets that share its IDX format (Fashion-MNIST, KMNIST)."""

import gzip
import struct
import zlib
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from datamodules.base import ImageDataModule, data_folder
from datamodules.download import download

IMAGES_MAGIC, LABELS_MAGIC = 2051, 2049  # IDX: unsigned bytes, 3 and 1 dimensions


def read_idx(path: Path, magic: int) -> np.ndarray:
    """Reads a gzipped IDX file, checking its magic number, header and length."""
    try:
        with gzip.open(path, "rb") as f:
            data = f.read()
    except (OSError, EOFError, zlib.error) as error:
        raise ValueError(f"{path}: not a readable gzip file ({error}); delete it to download it again") from error
    ndim = magic & 0xFF
    if len(data) < 4 + 4 * ndim:
        raise ValueError(f"{path}: {len(data)} bytes is too short for an IDX header")
    (found,) = struct.unpack(">I", data[:4])
    if found != magic:
        raise ValueError(f"{path}: IDX magic number {found}, expected {magic}; is this the right file?")
    shape = struct.unpack(f">{ndim}I", data[4 : 4 + 4 * ndim])
    body = data[4 + 4 * ndim :]
    if len(body) != int(np.prod(shape)):
        raise ValueError(
            f"{path}: header says shape {shape} ({int(np.prod(shape))} bytes) but holds {len(body)} bytes; "
            "the file is truncated or corrupt, delete it to download it again"
        )
    return np.frombuffer(body, dtype=np.uint8).reshape(shape)


class MNIST(ImageDataModule):
    """MNIST handwritten digits: 60,000 training and 10,000 test images, 28x28 grey.

    Args:
        data_dir: Folder that holds (or receives) the four IDX ``.gz`` files.
        batch_size: Samples per batch, per device.
        val_split: Fraction of the training split held out for validation (seeded).
        seed: Seed of the train/validation split; the shuffling follows ``seed_everything``.
    """

    input_shape = (1, 28, 28)
    num_classes = 10
    class_names = [str(digit) for digit in range(10)]
    mean, std = (0.1307,), (0.3081,)
    mirrors = ["https://ossci-datasets.s3.amazonaws.com/mnist/", "http://yann.lecun.com/exdb/mnist/"]
    files = {
        "train-images-idx3-ubyte.gz": "f68b3c2dcbeaaa9fbdd348bbdeb94873",
        "train-labels-idx1-ubyte.gz": "d53e105ee54ea40749a09fcbcd1e9432",
        "t10k-images-idx3-ubyte.gz": "9fb629c4189551a2d022fa330f9573f3",
        "t10k-labels-idx1-ubyte.gz": "ec29112dd5afa0611ce80d1b7f02629c",
    }

    def __init__(
        self, data_dir: str = "data/mnist", batch_size: int = 256, val_split: float = 0.1, seed: int = 0
    ) -> None:
        super().__init__(batch_size, val_split, seed)
        self.data_dir = data_folder(data_dir)

    def prepare_data(self) -> None:
        for filename, md5 in self.files.items():
            if (self.data_dir / filename).exists():
                continue
            try:
                download(self.mirrors, filename, md5, self.data_dir)
            except RuntimeError as error:
                expected = ", ".join(self.files)
                raise RuntimeError(f"{error}\n{type(self).__name__} expects {expected} in {self.data_dir}") from None

    def source(self, split: str) -> str:
        return str(self.data_dir / f"{'train' if split == 'train' else 't10k'}-images-idx3-ubyte.gz")

    def load_split(self, split: str) -> tuple[Tensor, Tensor]:
        image_path = Path(self.source(split))
        label_path = self.data_dir / image_path.name.replace("images-idx3", "labels-idx1")
        for path in (image_path, label_path):
            if not path.exists():
                raise FileNotFoundError(f"{path} is missing; run `fit` (prepare_data downloads it) or copy it there")
        images = read_idx(image_path, IMAGES_MAGIC)
        labels = read_idx(label_path, LABELS_MAGIC)
        if len(images) != len(labels):
            raise ValueError(f"{image_path} holds {len(images)} images but {label_path} holds {len(labels)} labels")
        if images.shape[1:] != self.input_shape[1:]:
            raise ValueError(f"{image_path}: images of {images.shape[1:]}, expected {self.input_shape[1:]}")
        if labels.max(initial=0) >= self.num_classes:
            raise ValueError(f"{label_path}: label {labels.max()} is out of range 0..{self.num_classes - 1}")
        return torch.from_numpy(images.copy()).unsqueeze(1), torch.from_numpy(labels.astype(np.int64))


class FashionMNIST(MNIST):
    """Zalando's Fashion-MNIST: ten kinds of clothing in MNIST's format and sizes."""

    mean, std = (0.2860,), (0.3530,)
    class_names = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"]
    mirrors = ["http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/"]
    files = {
        "train-images-idx3-ubyte.gz": "8d4fb7e6c68d591d4c3dfef9ec88bf0d",
        "train-labels-idx1-ubyte.gz": "25c81989df183df01b3e8a0aad5dffbe",
        "t10k-images-idx3-ubyte.gz": "bef4ecab320f06d8554ea6380940ec79",
        "t10k-labels-idx1-ubyte.gz": "bb300cfdad3c16e7a12a480ee83cd310",
    }


class KMNIST(MNIST):
    """Kuzushiji-MNIST: ten cursive Japanese characters in MNIST's format and sizes."""

    mean, std = (0.1918,), (0.3483,)
    class_names = ["o", "ki", "su", "tsu", "na", "ha", "ma", "ya", "re", "wo"]  # romanised: fonts lack kana
    mirrors = ["http://codh.rois.ac.jp/kmnist/dataset/kmnist/"]
    files = {
        "train-images-idx3-ubyte.gz": "bdb82020997e1d708af4cf47b453dcf7",
        "train-labels-idx1-ubyte.gz": "e144d726b3acfaa3e44228e80efcd344",
        "t10k-images-idx3-ubyte.gz": "5c965bf0a639b31b8f53240b1b52f4d7",
        "t10k-labels-idx1-ubyte.gz": "7320c461ea6c1c855c0b718fb2a4b134",
    }
