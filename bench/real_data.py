"""The real data in ../shared/data, shaped for result tables: nothing here is downloaded."""

import gzip
import hashlib
from pathlib import Path

import numpy as np

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
MNIST_MD5 = {"t10k-images-idx3-ubyte.gz": "2646ac647ad5339dbf082846283269ea", "t10k-labels-idx1-ubyte.gz": "27ae3e4e09519cfbb04c329615203637"}
N_TRAIN = 8000  # the first 8,000 test images train and validate, the last 2,000 are held out


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
