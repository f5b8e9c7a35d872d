"""scikit-learn's bundled 8x8 digits: 1,797 images, no download, the offline default."""

import gzip
import importlib.util
import os
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from datamodules.base import ImageDataModule


class Digits(ImageDataModule):
    """The UCI handwritten digits that ship with scikit-learn, as 1x8x8 images.

    The 1,797 images are shuffled once with ``seed``; the last ``test_split`` of them are
    the test set and ``val_split`` of the rest validates. The splits stay put when
    ``seed_everything`` changes; the training order follows it.

    Args:
        batch_size: Samples per batch, per device.
        val_split: Fraction of the non-test images held out for validation.
        test_split: Fraction of all images held out for testing.
        seed: Seed of the test and validation splits.
    """

    input_shape = (1, 8, 8)
    num_classes = 10
    class_names = [str(digit) for digit in range(10)]
    mean, std = (0.3053,), (0.3759,)

    def __init__(self, batch_size: int = 64, val_split: float = 0.1, test_split: float = 0.2, seed: int = 0) -> None:
        super().__init__(batch_size, val_split, seed)
        if not 0.0 <= test_split < 1.0:
            raise ValueError(f"test_split must be in [0, 1), got {test_split}")
        self.test_split = test_split

    def source(self, split: str) -> str:
        return str(digits_file())

    def load_split(self, split: str) -> tuple[Tensor, Tensor]:
        pixels, target = read_digits(digits_file())
        # Pixels are 0..16; scale to 0..255 so every image data module normalises alike.
        images = torch.from_numpy(np.round(pixels * 255 / 16).astype(np.uint8)).unsqueeze(1)
        labels = torch.from_numpy(target)
        perm = torch.randperm(len(images), generator=torch.Generator().manual_seed(self.seed))
        n_test = round(len(images) * self.test_split)
        chosen = perm[len(perm) - n_test :] if split == "test" else perm[: len(perm) - n_test]
        return images[chosen], labels[chosen]


def digits_file() -> Path:
    """scikit-learn's ``datasets/data/digits.csv.gz``, found without importing scikit-learn (0.1 s, 150 modules)."""
    spec = importlib.util.find_spec("sklearn")
    if spec is None or not spec.submodule_search_locations:
        raise ModuleNotFoundError("Digits reads the digits that ship with scikit-learn: pip install scikit-learn")
    return Path(spec.submodule_search_locations[0]) / "datasets" / "data" / "digits.csv.gz"


_parsed: dict[tuple, np.ndarray] = {}  # the one file parsed last: (path, device, inode, size, mtime) -> its table


def read_digits(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """The ``(1797, 8, 8)`` pixels (0..16) and labels of ``path``, as ``sklearn.datasets.load_digits`` reads them.

    Parsing the 117,000 numbers takes 20 ms; a run reads the file for fit and again for its test, so
    the parsed table is kept for the process (each caller gets its own copy), while the file's size,
    modification time and inode stay the same."""
    try:
        stat = os.stat(path)
    except OSError as error:
        raise _not_digits(path, error) from error
    stamp = (os.fspath(path), stat.st_dev, stat.st_ino, stat.st_size, stat.st_mtime_ns)
    if stamp not in _parsed:
        _parsed.clear()
        _parsed[stamp] = _parse_digits(path)
    data = _parsed[stamp]
    return data[:, :64].reshape(-1, 8, 8).copy(), data[:, 64].astype(np.int64)


def _parse_digits(path: Path) -> np.ndarray:
    try:
        with gzip.open(path, "rt") as file:
            data = np.loadtxt(file, delimiter=",", ndmin=2)
    except (OSError, EOFError, ValueError) as error:
        raise _not_digits(path, error) from error
    if data.shape != (1797, 65):
        raise ValueError(f"{path}: {data.shape[0]} rows of {data.shape[-1]} values, not scikit-learn's 1,797 digits of "
                         "64 pixels and a label; reinstall scikit-learn")  # fmt: skip
    if data.min() < 0 or data[:, :64].max() > 16 or data[:, 64].max() > 9 or (data % 1).any():
        raise ValueError(f"{path}: values outside the digits' whole pixels 0..16 and labels 0..9; reinstall scikit-learn")
    return data


def _not_digits(path: Path, error: Exception) -> ValueError:
    return ValueError(f"{path}: not scikit-learn's digits ({error}); reinstall scikit-learn")
