import torch

from bench.plain_digits import MEAN, STD, splits
from datamodules import Digits


def test_the_plain_script_trains_validates_and_tests_on_the_data_modules_splits():
    data = Digits()
    data.setup("fit")
    data.setup("test")
    plain = splits()
    for name in ("train", "val", "test"):
        images, labels = data.splits[name]
        expected = (images.flatten(1).float() / 255.0 - MEAN) / STD
        assert torch.equal(plain[name][1], labels)
        assert torch.allclose(plain[name][0], expected)
    assert [len(plain[name][1]) for name in ("train", "val", "test")] == [1294, 144, 359]
