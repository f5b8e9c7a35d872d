"""Tiny data in the real on-disk formats, written by the tests themselves."""

import gzip
import struct
from pathlib import Path

import numpy as np

MNIST_FILES = ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz", "t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz")


def idx_bytes(array: np.ndarray) -> bytes:
    """An IDX file of unsigned bytes: magic 0x0000080N, N big-endian dimensions, then the data."""
    header = struct.pack(">I", 0x0800 | array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    return header + array.astype(np.uint8).tobytes()


def write_idx(path: Path, array: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with gzip.open(path, "wb") as f:
        f.write(idx_bytes(array))
    return path


def learnable_images(n: int, num_classes: int = 10, size: int = 28, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """uint8 ``(n, size, size)`` images whose class is a bright row band: learnable in a few steps."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, num_classes, n)
    images = rng.integers(0, 60, (n, size, size))
    rows = (labels * size) // num_classes
    for i, row in enumerate(rows):
        images[i, row : row + max(1, size // num_classes)] = 255
    return images.astype(np.uint8), labels.astype(np.uint8)


def write_mnist(directory: Path, n_train: int = 200, n_test: int = 100) -> Path:
    """The four MNIST files with learnable fake digits; returns the folder."""
    train_images, train_labels = learnable_images(n_train, seed=0)
    test_images, test_labels = learnable_images(n_test, seed=1)
    write_idx(directory / MNIST_FILES[0], train_images)
    write_idx(directory / MNIST_FILES[1], train_labels)
    write_idx(directory / MNIST_FILES[2], test_images)
    write_idx(directory / MNIST_FILES[3], test_labels)
    return directory


def write_text(path: Path, repeats: int = 60) -> Path:
    """A small UTF-8 text with a learnable, repeating verse; every character occurs in its first 90%."""
    verse = "To be, or not to be: that is the question.\nWhether 'tis nobler in the mind to suffer!\n"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(verse * repeats, encoding="utf-8")
    return path
