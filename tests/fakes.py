"""Tiny data in the real on-disk formats, written by the tests themselves; the exported classes that
the shared checks run over, and the small sizes the tests build them at."""

import gzip
import hashlib
import inspect
import io
import json
import struct
import tarfile
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np

import datamodules
import modules

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


def cifar_bytes(n: int, label_bytes: int = 1, num_labels: tuple[int, ...] = (10,), seed: int = 0) -> bytes:
    """``n`` CIFAR binary records: ``label_bytes`` labels, then 3x32x32 pixels whose class is a bright row band."""
    images, labels = learnable_images(n, num_labels[-1], size=32, seed=seed)
    columns = [labels % limit for limit in num_labels[:-1]] + [labels]  # coarse labels derived from fine
    pixels = np.repeat(images[:, None], 3, axis=1).reshape(n, -1)  # (n, 3072): R, G, B planes
    return np.concatenate([np.stack(columns, axis=1).astype(np.uint8), pixels], axis=1).tobytes()


def write_tar_gz(path: Path, members: dict[str, bytes]) -> Path:
    """A tar.gz holding ``members`` (name -> content) as regular files."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(path, "w:gz") as tar:
        for name, content in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(content)
            tar.addfile(info, io.BytesIO(content))
    return path


def accept_archive(monkeypatch, archive: Path, cls) -> Path:
    """Makes ``cls`` (CIFAR10 or CIFAR100) take the fake ``archive`` for the official one (expects its MD5)."""
    digest = hashlib.md5(archive.read_bytes()).hexdigest()
    monkeypatch.setattr(cls, "md5", digest)
    return archive


def write_cifar10_archive(directory: Path, n_per_file: int = 20) -> Path:
    """``cifar-10-binary.tar.gz`` with five training files and one test file of ``n_per_file`` records each."""
    names = [f"data_batch_{i}.bin" for i in range(1, 6)] + ["test_batch.bin"]
    members = {f"cifar-10-batches-bin/{name}": cifar_bytes(n_per_file, seed=i) for i, name in enumerate(names)}
    members["cifar-10-batches-bin/batches.meta.txt"] = b"airplane\nautomobile\n"
    return write_tar_gz(directory / "cifar-10-binary.tar.gz", members)


def write_cifar100_archive(directory: Path, n_train: int = 100, n_test: int = 40) -> Path:
    """``cifar-100-binary.tar.gz``: ``train.bin`` and ``test.bin`` with coarse and fine labels."""
    members = {
        "cifar-100-binary/train.bin": cifar_bytes(n_train, 2, (20, 100), seed=0),
        "cifar-100-binary/test.bin": cifar_bytes(n_test, 2, (20, 100), seed=1),
    }
    return write_tar_gz(directory / "cifar-100-binary.tar.gz", members)


# One `fake_<name>(cls, directory, monkeypatch)` per data module family: it writes a few samples in
# the real format into `directory` and returns the `__init__` arguments that point `cls` at them. A
# subclass that reads the same files (FashionMNIST of MNIST) uses its base's.


def fake_mnist(cls, directory: Path, monkeypatch) -> dict[str, Any]:
    """MNIST, or a data set in its format (Fashion-MNIST, KMNIST), over ``write_mnist``'s four files."""
    return {"data_dir": str(write_mnist(directory))}


def fake_cifar10(cls, directory: Path, monkeypatch) -> dict[str, Any]:
    accept_archive(monkeypatch, write_cifar10_archive(directory, n_per_file=16), cls)
    return {"data_dir": str(directory)}


def fake_cifar100(cls, directory: Path, monkeypatch) -> dict[str, Any]:
    accept_archive(monkeypatch, write_cifar100_archive(directory), cls)
    return {"data_dir": str(directory)}


def fake_digits(cls, directory: Path, monkeypatch) -> dict[str, Any]:
    """The digits ship with scikit-learn: nothing to write."""
    return {}


def fake_text(cls, directory: Path, monkeypatch) -> dict[str, Any]:
    return {"path": str(write_text(directory / "input.txt"))}


def fake_data_kwargs(cls, directory: Path, monkeypatch) -> dict[str, Any]:
    """Writes tiny data in ``cls``'s real format into ``directory``; returns the arguments that point ``cls`` at it."""
    for klass in cls.__mro__:
        fake = globals().get(f"fake_{klass.__name__.lower()}")
        if fake is not None:
            return fake(cls, directory, monkeypatch)
    raise LookupError(
        f"tests/fakes.py has no fake_{cls.__name__.lower()}(cls, directory, monkeypatch) for datamodules.{cls.__name__}: "
        "add one that writes its files in their real format and returns the arguments that point the data module at them"
    )


def fake_data_args(cls, directory: Path, monkeypatch) -> list[str]:
    """``fake_data_kwargs`` as command-line overrides of a config's data module."""
    return [arg for key, value in fake_data_kwargs(cls, directory, monkeypatch).items() for arg in (f"--data.init_args.{key}", str(value))]


def fake_datamodule(cls, directory: Path, monkeypatch):
    """A small instance of data module ``cls`` over fake files in their real format."""
    return cls(**small_kwargs(cls), **fake_data_kwargs(cls, directory, monkeypatch))


def exported_models() -> list[type[L.LightningModule]]:
    """What a user picks from ``modules`` by class path: every LightningModule in ``modules.__all__``
    except the bases (``Classifier``, ``LanguageModel``: no ``forward`` of their own)."""
    exported = (getattr(modules, name) for name in modules.__all__)
    return [
        c for c in exported
        if isinstance(c, type) and issubclass(c, L.LightningModule) and c.forward is not L.LightningModule.forward
    ]


def exported_datamodules() -> list[type[L.LightningDataModule]]:
    """What a user picks from ``datamodules`` by class path: every LightningDataModule in
    ``datamodules.__all__`` except the bases of ``datamodules/base.py``, which load nothing."""
    exported = (getattr(datamodules, name) for name in datamodules.__all__)
    return [
        c for c in exported
        if isinstance(c, type) and issubclass(c, L.LightningDataModule) and c.__module__ != "datamodules.base"
    ]


# The sizes tests build models and data modules at, by argument name, wherever a class or a config
# takes them: smaller than the defaults, where those would slow the tests down. A list shrinks
# element-wise and keeps its length, so a config's per-layer lists stay in step.
SMALL = {
    "d_model": 32, "nhead": 2, "num_layers": 2, "hidden_size": 32, "channels": 4, "hidden_sizes": 32,
    "block_size": 16, "batch_size": 8, "batches_per_epoch": 2,
}  # fmt: skip


def shrink(name: str, value: Any) -> Any:
    """``SMALL[name]`` in the shape of ``value``: a number, or a list of ``len(value)`` of them."""
    return [SMALL[name]] * len(value) if isinstance(value, (list, tuple)) else SMALL[name]


def small_kwargs(cls) -> dict[str, Any]:
    """``SMALL``'s sizes for the ``__init__`` arguments of ``cls``, in the shape of its defaults."""
    parameters = inspect.signature(cls.__init__).parameters
    return {name: shrink(name, parameters[name].default) for name in SMALL if name in parameters}


def small_args(settings: dict) -> list[str]:
    """``SMALL``'s sizes as command-line overrides of the model and data arguments that a config sets."""
    args = []
    for group in ("model", "data"):
        for name, value in (settings[group].get("init_args") or {}).items():
            if name in SMALL:
                args += [f"--{group}.init_args.{name}", json.dumps(shrink(name, value))]
    return args
