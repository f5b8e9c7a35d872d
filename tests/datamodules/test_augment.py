"""Batch augmentation: each transform does what it says, draws are seeded, val/test untouched,
and the batch index the draws are seeded by counts every training batch of the run, as the loader draws them."""

from types import SimpleNamespace

import lightning as L
import pytest
import torch

from datamodules import CIFAR10, Digits, cifar
from datamodules.augment import augment_generator, cutout, random_crop_flip, training_batch_index
from modules import CNN, MLP
from tests.fakes import accept_archive, write_cifar10_archive


def distinct_images(b: int, c: int = 3, size: int = 8) -> torch.Tensor:
    return torch.arange(1, b * c * size * size + 1, dtype=torch.float32).reshape(b, c, size, size)


@pytest.mark.parametrize("flip", [False, True])
def test_random_crop_flip_is_a_shifted_window_of_the_padded_image(flip):
    images, padding = distinct_images(60), 2
    out = random_crop_flip(images, padding, flip, torch.Generator().manual_seed(0))
    padded = torch.nn.functional.pad(images, (padding,) * 4)
    shifts, mirrored = [], 0
    for original, cropped in zip(padded, out):
        matches = [
            (dy, dx, m)
            for dy in range(2 * padding + 1)
            for dx in range(2 * padding + 1)
            for m in (False, True)
            for window in [original[:, dy : dy + 8, dx : dx + 8]]
            if torch.equal(window.flip(-1) if m else window, cropped)
        ]
        assert len(matches) == 1
        shifts.append(matches[0][:2])
        mirrored += matches[0][2]
    assert len(set(shifts)) > 10  # offsets vary from image to image
    assert (15 < mirrored < 45) if flip else mirrored == 0


def test_flip_alone_mirrors_about_half():
    images = distinct_images(1000, c=1, size=4).to(torch.uint8)
    out = random_crop_flip(images, 0, True, torch.Generator().manual_seed(0))
    flipped = (out == images.flip(-1)).flatten(1).all(1)
    kept = (out == images).flatten(1).all(1)
    assert bool((flipped ^ kept).all())
    assert 400 < int(flipped.sum()) < 600
    assert random_crop_flip(images, 0, False) is images


def test_cutout_zeroes_one_square_of_at_most_size_squared():
    images, size = torch.ones(200, 3, 16, 16, dtype=torch.uint8), 6
    out = cutout(images, size, torch.Generator().manual_seed(0))
    zeros = out == 0
    assert torch.equal(zeros[:, 0], zeros[:, 2])  # the same square in every channel
    for mask in zeros[:, 0]:
        rows, cols = mask.any(1).nonzero().flatten(), mask.any(0).nonzero().flatten()
        assert 1 <= len(rows) <= size and 1 <= len(cols) <= size
        assert int(mask.sum()) == len(rows) * len(cols)  # a filled rectangle, clipped at the edge
    assert int(zeros[:, 0].flatten(1).sum(1).eq(size * size).sum()) > 50  # mostly unclipped


def test_augmentation_is_seeded_by_seed_step_and_rank():
    images = distinct_images(16)

    def run(seed, step, rank):
        g = augment_generator(images.device, seed, step, rank)
        return cutout(random_crop_flip(images, 2, True, g), 3, g)

    assert torch.equal(run(0, 5, 0), run(0, 5, 0))
    assert not torch.equal(run(0, 5, 0), run(0, 6, 0))
    assert not torch.equal(run(0, 5, 0), run(0, 5, 1))
    assert not torch.equal(run(0, 5, 0), run(1, 5, 0))


@pytest.fixture
def fake_trainer(monkeypatch):
    """Makes trainers that state their batch index; the real counter is pinned by the tests at the end."""
    monkeypatch.setattr(cifar, "training_batch_index", lambda trainer: trainer.batch_index)
    return lambda training, step=0, rank=0: SimpleNamespace(training=training, global_rank=rank, batch_index=step)


def test_only_training_batches_are_augmented(fake_trainer):
    data = CIFAR10(cutout=8)
    images, labels = torch.randint(0, 256, (32, 3, 32, 32), dtype=torch.uint8), torch.zeros(32, dtype=torch.int64)
    data.trainer = fake_trainer(training=False)
    evaluated, _ = data.on_after_batch_transfer((images, labels), 0)
    assert torch.equal(evaluated, data.normalize(images))
    expected_mean = (127.5 / 255 - torch.tensor(data.mean)) / torch.tensor(data.std)  # uniform pixels average 127.5
    assert torch.allclose(evaluated.mean(dim=(0, 2, 3)), expected_mean, atol=0.02)
    data.trainer = fake_trainer(training=True, step=3)
    trained, _ = data.on_after_batch_transfer((images, labels), 0)
    assert not torch.equal(trained, evaluated)
    assert torch.equal(trained, data.normalize(data.augment(images)))  # augmented as uint8, then normalised
    assert torch.equal(trained, data.on_after_batch_transfer((images, labels), 0)[0])  # same step, same draws


def test_each_ddp_rank_draws_its_own_augmentation(fake_trainer):
    images = torch.randint(0, 256, (32, 3, 32, 32), dtype=torch.uint8)
    ranks = [CIFAR10(cutout=8), CIFAR10(cutout=8)]
    for rank, data in enumerate(ranks):
        data.trainer = fake_trainer(training=True, step=7, rank=rank)
    first, second = (data.augment(images) for data in ranks)
    assert not torch.equal(first, second)
    assert torch.equal(first, ranks[0].augment(images))


class Recorder(L.Callback):
    def __init__(self):
        self.batches = []

    def on_train_batch_start(self, trainer, module, batch, batch_idx):
        self.batches.append(batch[0].clone())


def test_fit_twice_augments_identically(tmp_path, monkeypatch):
    accept_archive(monkeypatch, write_cifar10_archive(tmp_path, n_per_file=8), CIFAR10)

    def fit():
        recorder = Recorder()
        data = CIFAR10(data_dir=str(tmp_path), batch_size=16, seed=0, cutout=4)
        model = CNN(channels=[4], pool="max", global_pool="avg")
        trainer = L.Trainer(max_epochs=2, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                            enable_model_summary=False, callbacks=[recorder], limit_val_batches=0)
        trainer.fit(model, datamodule=data)
        return recorder.batches

    first, second = fit(), fit()
    assert len(first) == 6  # 36 training images, 3 batches, 2 epochs
    assert all(torch.equal(a, b) for a, b in zip(first, second))


class RecordedIndices(Digits):
    """Digits whose (identity) augmentation records the batch index it would be seeded by."""

    def __init__(self) -> None:
        super().__init__(batch_size=300)  # 1,294 training images: 5 batches an epoch
        self.indices: list[int] = []

    def augment(self, images: torch.Tensor) -> torch.Tensor:
        self.indices.append(training_batch_index(self.trainer))
        return images


def fit_recording(tmp_path, ckpt_path=None, **trainer_args) -> tuple[RecordedIndices, L.Trainer]:
    data = RecordedIndices()
    trainer = L.Trainer(max_epochs=2, limit_val_batches=0, logger=False, enable_progress_bar=False,
                        enable_model_summary=False, default_root_dir=tmp_path, **trainer_args)
    trainer.fit(MLP(input_shape=(1, 8, 8), hidden_sizes=[8]), datamodule=data, ckpt_path=ckpt_path)
    return data, trainer


def test_the_batch_index_counts_every_training_batch_of_the_run_not_optimizer_steps(tmp_path):
    data, trainer = fit_recording(tmp_path, accumulate_grad_batches=2, enable_checkpointing=False)
    assert data.indices == list(range(10))
    assert trainer.global_step == 6  # 3 optimizer steps an epoch (2 + 2 + 1 batches): not a batch index


def test_the_batch_index_continues_after_a_mid_epoch_resume(tmp_path):
    every_3_steps = L.pytorch.callbacks.ModelCheckpoint(tmp_path, "{step}", every_n_train_steps=3, save_top_k=-1)
    data, _ = fit_recording(tmp_path, callbacks=[every_3_steps])
    assert data.indices == list(range(10))
    for step in (3, 6):  # in the first epoch, and in the second
        resumed, _ = fit_recording(tmp_path / f"resumed{step}", ckpt_path=tmp_path / f"step={step}.ckpt")
        assert resumed.indices == list(range(step, 10))
