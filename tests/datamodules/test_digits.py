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
