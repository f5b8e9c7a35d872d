import os

import pytest

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
