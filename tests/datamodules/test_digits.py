import gzip

import numpy as np
import pytest
import torch

from datamodules import Digits


def test_digits_splits_are_disjoint_deterministic_and_complete():
    data = Digits(val_split=0.1, test_split=0.2, seed=0)
    data.setup("fit")
    data.setup("test")
    sizes = {name: len(split[0]) for name, split in data.splits.items()}
    assert sizes == {"train": 1294, "val": 144, "test": 359}
    images = data.splits["train"][0]
    assert images.dtype == torch.uint8 and images.shape[1:] == (1, 8, 8) and images.max() == 255
    again = Digits(seed=0)
    again.setup("test")
    assert torch.equal(again.splits["test"][0], data.splits["test"][0])


def test_batches_are_normalised_on_transfer():
    data = Digits(batch_size=2000)
    data.setup("fit")
    images, labels = data.on_after_batch_transfer(next(iter(data.train_dataloader())), 0)
    assert images.dtype == torch.float32 and labels.dtype == torch.int64
    assert abs(images.mean().item()) < 0.1 and abs(images.std().item() - 1) < 0.1


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        ({"test_split": -0.1}, r"test_split must be in \[0, 1\), got -0.1"),
        ({"test_split": 1.0}, r"test_split must be in \[0, 1\), got 1.0"),
        ({"val_split": 1.5}, r"val_split must be in \[0, 1\), got 1.5"),
        ({"batch_size": 0}, "batch_size must be 1 or more, got 0"),
        ({"batch_size": -64}, "batch_size must be 1 or more, got -64"),
    ],
)
def test_an_argument_out_of_range_is_named_with_its_range(arguments, message):
    with pytest.raises(ValueError, match=message):
        Digits(**arguments)


def test_a_split_without_images_is_an_error_not_a_run_on_nothing():
    data = Digits(test_split=0.0)
    data.setup("fit")  # training is possible
    with pytest.raises(ValueError, match="Digits: the test split has no images; check the data files and the split"):
        data.setup("test")


def test_the_digits_are_scikit_learns_read_without_importing_it():
    from sklearn.datasets import load_digits

    from datamodules.digits import digits_file, read_digits

    pixels, labels = read_digits(digits_file())
    digits = load_digits()
    assert (pixels == digits.images).all() and (labels == digits.target).all() and labels.dtype == np.int64


def test_a_process_parses_the_digits_once_while_the_file_stays_the_same(tmp_path, monkeypatch):
    import datamodules.digits as digits

    path = tmp_path / "digits.csv.gz"
    path.write_bytes(digits.digits_file().read_bytes())
    parsed = []
    parse = digits._parse_digits
    monkeypatch.setattr(digits, "_parse_digits", lambda p: parsed.append(p) or parse(p))
    pixels, labels = digits.read_digits(path)
    pixels[:] = -1  # each caller's own copy
    labels[:] = -1
    again, again_labels = digits.read_digits(path)
    assert len(parsed) == 1 and again.min() == 0 and again_labels.min() == 0  # the fit's read, then the test's
    path.write_bytes(gzip.compress(("0," * 64 + "3\n").encode() * 1797))  # another file under the same name
    assert digits.read_digits(path)[1].tolist() == [3] * 1797 and len(parsed) == 2
    path.unlink()
    with pytest.raises(ValueError, match=f"{path}: not scikit-learn's digits .*No such file"):
        digits.read_digits(path)  # gone: an error, not the table kept for the file that was there


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"not gzip", "not scikit-learn's digits"),
        (gzip.compress(b""), "0 rows of 1 values"),
        (gzip.compress(b"1,2,3\n"), "1 rows of 3 values"),
        (gzip.compress(b"a,b\n"), "not scikit-learn's digits"),
        (gzip.compress(("0," * 64 + "12\n").encode() * 1797), "labels 0..9"),
        (gzip.compress(("0," * 63 + "0.5,1\n").encode() * 1797), "whole pixels"),
    ],
    ids=["not-gzip", "empty", "short", "text", "label-12", "half-pixel"],
)
def test_a_broken_digits_file_is_named_and_nothing_trains_on_it(tmp_path, monkeypatch, content, message):
    path = tmp_path / "digits.csv.gz"
    path.write_bytes(content)
    monkeypatch.setattr("datamodules.digits.digits_file", lambda: path)
    data = Digits()
    with pytest.raises(ValueError, match=message) as error:
        data.setup("fit")
    assert str(path) in str(error.value)
