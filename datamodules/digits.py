"""scikit-learn's bundled 8x8 digits: 1,797 images, no download, the offline default."""

import numpy as np
import torch
from torch import Tensor

from datamodules.base import ImageDataModule


class Digits(ImageDataModule):
    """The UCI handwritten digits that ship with scikit-learn, as 1x8x8 images.

    The 1,797 images are shuffled once with ``seed``; the last ``test_split`` of them are
    the test set and ``val_split`` of the rest validates. The splits stay put when
    ``seed_everything`` changes; the training order follows it.

    Args:
        batch_size: Samples per batch, per device.
        val_split: Fraction of the non-test images held out for validation.
        test_split: Fraction of all images held out for testing.
        seed: Seed of the test and validation splits.
    """

    input_shape = (1, 8, 8)
    num_classes = 10
    class_names = [str(digit) for digit in range(10)]
    mean, std = (0.3053,), (0.3759,)

    def __init__(self, batch_size: int = 64, val_split: float = 0.1, test_split: float = 0.2, seed: int = 0) -> None:
        super().__init__(batch_size, val_split, seed)
        if not 0.0 <= test_split < 1.0:
            raise ValueError(f"test_split must be in [0, 1), got {test_split}")
        self.test_split = test_split

    def source(self, split: str) -> str:
        return "scikit-learn's load_digits()"

    def load_split(self, split: str) -> tuple[Tensor, Tensor]:
        from sklearn.datasets import load_digits  # imported here: scikit-learn takes a second to import

        digits = load_digits()
        # Pixels are 0..16; scale to 0..255 so every image data module normalises alike.
        images = torch.from_numpy(np.round(digits.images * 255 / 16).astype(np.uint8)).unsqueeze(1)
        labels = torch.from_numpy(digits.target.astype(np.int64))
        perm = torch.randperm(len(images), generator=torch.Generator().manual_seed(self.seed))
        n_test = round(len(images) * self.test_split)
        chosen = perm[len(perm) - n_test :] if split == "test" else perm[: len(perm) - n_test]
        return images[chosen], labels[chosen]
