"""Through a real Trainer, every exported data module's training batches change from epoch to epoch.

Lightning tells a loader the epoch by calling ``set_epoch`` on its ``sampler``; a loader that
only exposes ``batch_sampler`` would silently replay epoch 0's order forever.
"""

import lightning as L
import pytest
import torch

from modules import MLP, RNN
from tests.fakes import exported_datamodules, fake_datamodule


class FirstBatches(L.Callback):
    def __init__(self) -> None:
        self.batches = []

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        if batch_idx == 0:
            self.batches.append(batch[0].clone())


def model_for(data: L.LightningDataModule) -> L.LightningModule:
    if hasattr(data, "vocab"):  # text: characters in, characters out
        return RNN(vocab=data.vocab, cell="gru", hidden_size=8, num_layers=1)
    return MLP(input_shape=data.input_shape, num_classes=data.num_classes, hidden_sizes=[8])


@pytest.mark.parametrize("cls", exported_datamodules(), ids=lambda cls: cls.__name__)
def test_each_epoch_draws_new_batches(cls, tmp_path, in_tmp, monkeypatch):
    data = fake_datamodule(cls, tmp_path / "data", monkeypatch)
    recorder = FirstBatches()
    trainer = L.Trainer(max_epochs=2, limit_train_batches=2, limit_val_batches=0, logger=False,
                        enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
                        callbacks=[recorder])
    trainer.fit(model_for(data), datamodule=data)
    first, second = recorder.batches
    assert first.shape == second.shape
    assert not torch.equal(first, second)
