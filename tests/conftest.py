import os

import pytest
import torch

from tests.fakes import write_mnist

os.environ.setdefault("WANDB_MODE", "offline")
os.environ.setdefault("WANDB_SILENT", "true")


@pytest.fixture
def mnist_dir(tmp_path):
    """A folder with the four MNIST IDX files: 200 training and 100 test images of fake digits."""
    return write_mnist(tmp_path / "mnist")


@pytest.fixture
def in_tmp(tmp_path, monkeypatch):
    """Runs the test from an empty folder, so `runs/` lands there."""
    monkeypatch.chdir(tmp_path)
    return tmp_path


@pytest.fixture
def one_thread():
    """Runs the test on one torch thread: a tiny model's step gains nothing from a second, which only
    waits for the first (on a busy 2-core CPU a test of tiny runs took 8 times longer with two)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
