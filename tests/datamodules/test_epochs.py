"""Through a real Trainer, every data module's training batches change from epoch to epoch.

Lightning tells a loader the epoch by calling ``set_epoch`` on its ``sampler``; a loader that
only exposes ``batch_sampler`` would silently replay epoch 0's order forever.
"""

import lightning as L
import pytest
import torch

from datamodules import Digits, Text
from modules import MLP, RNN
from tests.fakes import write_text


class FirstBatches(L.Callback):
    def __init__(self) -> None:
        self.batches = []

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        if batch_idx == 0:
            self.batches.append(batch[0].clone())


def fit_two_epochs(model, data) -> list[torch.Tensor]:
    recorder = FirstBatches()
    trainer = L.Trainer(max_epochs=2, limit_train_batches=2, limit_val_batches=0, logger=False,
                        enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
                        callbacks=[recorder])
    trainer.fit(model, datamodule=data)
    return recorder.batches


@pytest.mark.parametrize("family", ["image", "text"])
def test_each_epoch_draws_new_batches(family, tmp_path, in_tmp):
    if family == "image":
        data, model = Digits(batch_size=16), MLP(input_shape=(1, 8, 8), num_classes=10, hidden_sizes=[8])
    else:
        data = Text(path=str(write_text(tmp_path / "verse.txt")), block_size=8, batch_size=4, batches_per_epoch=2)
        model = RNN(vocab=data.vocab, cell="gru", hidden_size=8, num_layers=1)
    first, second = fit_two_epochs(model, data)
    assert first.shape == second.shape
    assert not torch.equal(first, second)
