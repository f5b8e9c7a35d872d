"""The real data in ../shared/data, for result tables: which data module it serves and how a config
is pointed at it. Nothing here is downloaded; files are checked against their known checksums."""

import gzip
import hashlib
from pathlib import Path

import numpy as np

# ../shared/data beside the checkout, or beside a folder of checkouts above it
SHARED = next(
    (folder / "shared" / "data" for folder in Path(__file__).resolve().parents if (folder / "shared" / "data").is_dir()),
    Path("shared/data"),
)
MNIST_MD5 = {"t10k-images-idx3-ubyte.gz": "2646ac647ad5339dbf082846283269ea", "t10k-labels-idx1-ubyte.gz": "27ae3e4e09519cfbb04c329615203637"}
TINY_SHAKESPEARE_MD5 = "6fb458f1232090904fb40fe944165e91"
N_TRAIN = 8000  # the first 8,000 test images train and validate, the last 2,000 are held out
# What each data module trains on here; said under every table made from it.
NOTES = {
    "Digits": "Digits: scikit-learn's 1,797 8x8 digits; 20% test, 10% of the rest validates",
    "MNIST": "MNIST: the real MNIST test set (full MNIST is not available offline); its first 8,000 images "
    "train (10% of them validate), its last 2,000 test",
    "Text": "Tiny Shakespeare: the first 90% trains, the last 10% validates; loss in nats per character",
}


def _read_checked(path: Path) -> bytes:
    data = gzip.decompress(path.read_bytes())
    if hashlib.md5(data).hexdigest() != MNIST_MD5[path.name]:
        raise ValueError(f"{path}: decompressed content does not match the MNIST test set's checksum")
    return data


def write_mnist_split(directory: Path, shared: Path = SHARED) -> Path:
    """Writes MNIST-format files in ``directory``: the real test set's first 8,000 images as
    the training split, its last 2,000 as the test split."""
    images = _read_checked(shared / "mnist" / "t10k-images-idx3-ubyte.gz")
    labels = _read_checked(shared / "mnist" / "t10k-labels-idx1-ubyte.gz")
    images_header, image_rows = images[:16], np.frombuffer(images[16:], np.uint8).reshape(-1, 784)
    labels_header, label_rows = labels[:8], np.frombuffer(labels[8:], np.uint8)
    directory.mkdir(parents=True, exist_ok=True)
    for prefix, rows in (("train", slice(0, N_TRAIN)), ("t10k", slice(N_TRAIN, None))):
        n = len(label_rows[rows])
        with gzip.open(directory / f"{prefix}-images-idx3-ubyte.gz", "wb", compresslevel=1) as f:
            f.write(images_header[:4] + n.to_bytes(4, "big") + images_header[8:] + image_rows[rows].tobytes())
        with gzip.open(directory / f"{prefix}-labels-idx1-ubyte.gz", "wb", compresslevel=1) as f:
            f.write(labels_header[:4] + n.to_bytes(4, "big") + label_rows[rows].tobytes())
    return directory


def tiny_shakespeare(shared: Path = SHARED) -> Path:
    path = shared / "tinyshakespeare" / "input.txt"
    if hashlib.md5(path.read_bytes()).hexdigest() != TINY_SHAKESPEARE_MD5:
        raise ValueError(f"{path}: not Tiny Shakespeare (its MD5 differs from {TINY_SHAKESPEARE_MD5})")
    return path


def real_data_args(data_class: type, workdir: Path, shared: Path = SHARED) -> list[str]:
    """The CLI arguments that point a config of ``data_class`` at the real data here.

    Matched by exact class: Fashion-MNIST shares MNIST's format but not its images. Raises
    LookupError for a data module with no real data here, OSError or ValueError for missing or wrong files.
    """
    name = data_class.__name__ if data_class.__module__.startswith("datamodules") else None
    if name == "Digits":
        return []  # bundled with scikit-learn
    if name == "MNIST":
        return ["--data.init_args.data_dir", str(write_mnist_split(workdir / "mnist", shared))]
    if name == "Text":
        return ["--data.init_args.path", str(tiny_shakespeare(shared))]
    raise LookupError(f"no {data_class.__name__} data offline")
