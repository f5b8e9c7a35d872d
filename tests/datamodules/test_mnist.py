"""MNIST: IDX parsing, its errors, downloads with checksums and mirror fallback, splits."""

import gzip
import hashlib
import http.server
import threading
from functools import partial

import numpy as np
import pytest
import torch

from datamodules import MNIST
from datamodules.mnist import IMAGES_MAGIC, LABELS_MAGIC, read_idx
from tests.fakes import MNIST_FILES, idx_bytes, write_idx, write_mnist


def test_read_idx_round_trip(tmp_path):
    images = np.arange(2 * 28 * 28).reshape(2, 28, 28) % 256
    path = write_idx(tmp_path / "x.gz", images)
    np.testing.assert_array_equal(read_idx(path, IMAGES_MAGIC), images)


def test_setup_loads_uint8_splits_with_seeded_val(mnist_dir):
    data = MNIST(data_dir=str(mnist_dir), val_split=0.25, seed=3)
    data.setup("fit")
    train_images, train_labels = data.splits["train"]
    val_images, _ = data.splits["val"]
    assert train_images.dtype == torch.uint8 and train_images.shape == (150, 1, 28, 28)
    assert val_images.shape == (50, 1, 28, 28) and train_labels.dtype == torch.int64
    again = MNIST(data_dir=str(mnist_dir), val_split=0.25, seed=3)
    again.setup("fit")
    assert torch.equal(again.splits["val"][0], val_images)
    other = MNIST(data_dir=str(mnist_dir), val_split=0.25, seed=4)
    other.setup("fit")
    assert not torch.equal(other.splits["val"][0], val_images)
    data.setup("test")
    assert data.splits["test"][0].shape == (100, 1, 28, 28)


def test_corrupt_gzip_names_the_file(mnist_dir):
    (mnist_dir / MNIST_FILES[0]).write_bytes(b"this is not gzip")
    with pytest.raises(ValueError, match="train-images-idx3-ubyte.gz.*not a readable gzip"):
        MNIST(data_dir=str(mnist_dir)).setup("fit")


def test_wrong_magic_names_the_file(mnist_dir):
    # a label file where the image file should be
    write_idx(mnist_dir / MNIST_FILES[0], np.zeros(200, dtype=np.uint8))
    with pytest.raises(ValueError, match=f"magic number {LABELS_MAGIC}, expected {IMAGES_MAGIC}"):
        MNIST(data_dir=str(mnist_dir)).setup("fit")


def test_truncated_file(mnist_dir):
    path = mnist_dir / MNIST_FILES[0]
    data = gzip.decompress(path.read_bytes())
    path.write_bytes(gzip.compress(data[:-100]))
    with pytest.raises(ValueError, match="truncated or corrupt"):
        MNIST(data_dir=str(mnist_dir)).setup("fit")


def test_count_mismatch(mnist_dir):
    write_idx(mnist_dir / MNIST_FILES[1], np.zeros(199, dtype=np.uint8))
    with pytest.raises(ValueError, match="200 images but .* 199 labels"):
        MNIST(data_dir=str(mnist_dir)).setup("fit")


def test_label_out_of_range(mnist_dir):
    write_idx(mnist_dir / MNIST_FILES[1], np.full(200, 10, dtype=np.uint8))
    with pytest.raises(ValueError, match="label 10 is out of range"):
        MNIST(data_dir=str(mnist_dir)).setup("fit")


def test_present_files_never_touch_the_network(mnist_dir):
    data = MNIST(data_dir=str(mnist_dir))
    data.mirrors = ["http://127.0.0.1:9/unreachable/"]
    data.prepare_data()  # would raise if it tried to download


def test_missing_files_without_network_name_dir_files_and_urls(tmp_path):
    data = MNIST(data_dir=str(tmp_path / "nowhere"))
    data.mirrors = ["http://127.0.0.1:9/a/", "http://127.0.0.1:9/b/"]
    with pytest.raises(RuntimeError) as error:
        data.prepare_data()
    message = str(error.value)
    assert str(tmp_path / "nowhere") in message
    assert "http://127.0.0.1:9/a/train-images-idx3-ubyte.gz" in message
    assert "http://127.0.0.1:9/b/train-images-idx3-ubyte.gz" in message
    assert all(name in message for name in MNIST_FILES)


@pytest.fixture
def mirror(tmp_path):
    """Two loopback HTTP mirrors: `bad/` serves corrupt bytes, `good/` the real files."""
    root = tmp_path / "site"
    write_mnist(root / "good")
    for name in MNIST_FILES:
        (root / "bad").mkdir(parents=True, exist_ok=True)
        (root / "bad" / name).write_bytes(b"corrupt")
    handler = partial(http.server.SimpleHTTPRequestHandler, directory=str(root))
    handler.log_message = lambda *args: None
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}", root / "good"
    server.shutdown()


def test_download_falls_back_to_next_mirror_and_verifies(mirror, tmp_path):
    url, good = mirror
    data = MNIST(data_dir=str(tmp_path / "dl"))
    data.mirrors = [f"{url}/missing/", f"{url}/bad/", f"{url}/good/"]
    data.files = {name: hashlib.md5((good / name).read_bytes()).hexdigest() for name in MNIST_FILES}
    data.prepare_data()
    data.setup("fit")
    assert sum(len(split[0]) for split in data.splits.values()) == 200
    assert not list((tmp_path / "dl").glob(".*.part"))


def test_download_with_wrong_checksum_everywhere_fails(mirror, tmp_path):
    url, _ = mirror
    data = MNIST(data_dir=str(tmp_path / "dl"))
    data.mirrors = [f"{url}/good/"]
    with pytest.raises(RuntimeError, match="checksum mismatch"):
        data.prepare_data()
    assert not (tmp_path / "dl" / MNIST_FILES[0]).exists()


def test_idx_bytes_header():
    assert idx_bytes(np.zeros((2, 3), dtype=np.uint8))[:12] == bytes([0, 0, 8, 2, 0, 0, 0, 2, 0, 0, 0, 3])


def test_data_dir_that_is_a_file_is_named(tmp_path):
    (tmp_path / "mnist").write_text("not a folder")
    with pytest.raises(NotADirectoryError, match=rf"data_dir {tmp_path / 'mnist'} is a file: give a folder"):
        MNIST(data_dir=str(tmp_path / "mnist"))


def test_files_without_images_are_an_error(tmp_path):
    data = MNIST(data_dir=str(write_mnist(tmp_path / "mnist", n_train=0)))
    with pytest.raises(ValueError, match="MNIST: the train split has no images"):
        data.setup("fit")
