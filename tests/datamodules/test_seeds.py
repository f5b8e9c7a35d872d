"""One meaning per seed: ``seed_everything`` moves the training order, windows and augmentation;
the data module's ``seed`` alone fixes the splits, so every repeat is validated and tested on the same samples."""

from types import SimpleNamespace

import pytest
import torch
from lightning import seed_everything

from datamodules import CIFAR10, Digits, Text, cifar
from datamodules.base import BatchLoader, ImageDataModule, run_seed


def digits_under(run: int, monkeypatch) -> tuple[Digits, list[torch.Tensor]]:
    """Digits set up after ``seed_everything(run)``, with its first epoch's training labels, per batch."""
    seed_everything(run)
    data = Digits()
    data.setup("fit")
    data.setup("test")
    return data, [labels for _, labels in data.train_dataloader()]


@pytest.fixture(autouse=True)
def restore_global_seed(monkeypatch):
    monkeypatch.setenv("PL_GLOBAL_SEED", "0")  # monkeypatch puts back whatever was there once the test ends


def test_seed_everything_moves_the_training_order_and_not_the_validation_or_test_sets(monkeypatch):
    first, first_order = digits_under(1, monkeypatch)
    second, second_order = digits_under(2, monkeypatch)
    assert not torch.equal(torch.cat(first_order), torch.cat(second_order))
    for split in ("train", "val", "test"):  # the same samples, in the same order: the split did not move
        assert all(torch.equal(a, b) for a, b in zip(first.splits[split], second.splits[split], strict=True))
    assert torch.equal(torch.cat(first_order), torch.cat(digits_under(1, monkeypatch)[1]))  # and a rerun repeats
    assert not torch.equal(Digits(seed=5).load_split("test")[1], first.splits["test"][1])  # data.seed moves the split


def test_without_seed_everything_the_data_modules_seed_drives_the_order(monkeypatch):
    monkeypatch.delenv("PL_GLOBAL_SEED")
    assert run_seed(7) == 7
    data = Digits(seed=7)
    data.setup("fit")
    assert data.train_dataloader().seed == 7
    monkeypatch.setenv("PL_GLOBAL_SEED", "3")
    assert data.train_dataloader().seed == 3 and data.val_dataloader().seed == 3


def test_every_ddp_rank_draws_the_same_permutation_under_seed_everything(monkeypatch):
    seed_everything(11)
    data = Digits()
    data.setup("fit")
    shards = []
    for rank in range(2):
        data.trainer = SimpleNamespace(global_rank=rank, world_size=2)
        shards.append(torch.cat([labels for _, labels in data.train_dataloader()]))
        torch.manual_seed(rank)  # a rank's own torch draws must not move the shared permutation
    n = len(data.splits["train"][1]) // 2 * 2
    generator = torch.Generator().manual_seed(11)
    expected = data.splits["train"][1][torch.randperm(len(data.splits["train"][1]), generator=generator)[:n]]
    assert torch.equal(shards[0], expected[0::2]) and torch.equal(shards[1], expected[1::2])


def test_text_windows_follow_seed_everything_and_validation_does_not(tmp_path, monkeypatch):
    path = tmp_path / "text.txt"
    path.write_text("the quick brown fox jumps over the lazy dog. " * 40)

    def windows(run: int) -> tuple[torch.Tensor, torch.Tensor]:
        seed_everything(run)
        data = Text(path=str(path), block_size=8, batch_size=4, batches_per_epoch=3)
        data.setup("fit")
        return torch.cat([b for (b,) in data.train_dataloader()]), torch.cat([b for (b,) in data.val_dataloader()])

    (train_1, val_1), (train_2, val_2) = windows(1), windows(2)
    assert not torch.equal(train_1, train_2) and torch.equal(val_1, val_2)
    assert torch.equal(train_1, windows(1)[0])


def test_augmentation_follows_seed_everything(monkeypatch):
    monkeypatch.setattr(cifar, "training_batch_index", lambda trainer: 4)
    images = torch.randint(0, 256, (16, 3, 32, 32), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    data = CIFAR10(cutout=8)
    data.trainer = SimpleNamespace(training=True, global_rank=0)
    drawn = {}
    for run in (1, 2, 1):
        seed_everything(run)
        drawn.setdefault(run, []).append(data.augment(images))
    assert torch.equal(*drawn[1]) and not torch.equal(drawn[1][0], drawn[2][0])


class FloatImages(ImageDataModule):
    """Float images with a NaN in sample 7 of the training file and an infinity in sample 2 of the test file."""

    input_shape, num_classes, mean, std = (1, 2, 2), 2, (0.0,), (1.0,)

    def source(self, split: str) -> str:
        return f"/data/{split}.npy"

    def load_split(self, split: str):
        images = torch.zeros(10, 1, 2, 2)
        images[7 if split == "train" else 2, 0, 1, 0] = float("nan") if split == "train" else float("inf")
        return images, torch.zeros(10, dtype=torch.int64)


@pytest.mark.parametrize(("stage", "message"), [
    ("fit", r"/data/train.npy: the train split holds 1 samples with NaN or infinite values, the first at index 7;"),
    ("test", r"/data/test.npy: the test split holds 1 samples with NaN or infinite values, the first at index 2;"),
])  # fmt: skip
def test_non_finite_inputs_are_refused_at_setup_naming_the_split_index_and_file(stage, message):
    with pytest.raises(ValueError, match=message):
        FloatImages().setup(stage)


def test_uint8_splits_pass_the_check_and_are_kept_as_they_are():
    data = Digits()
    data.setup("fit")
    assert data.splits["train"][0].dtype == torch.uint8 and len(data.splits["val"][0]) > 0


def test_the_loader_is_a_batch_loader_with_the_run_seed(monkeypatch):
    monkeypatch.setenv("PL_GLOBAL_SEED", "9")
    data = Digits()
    data.setup("fit")
    loader = data.train_dataloader()
    assert isinstance(loader, BatchLoader) and loader.seed == 9 and loader.shuffle
