"""Every model through the same checks: shape, finite values, loss falls, a fast_dev_run fit."""

import lightning as L
import pytest
import torch

from datamodules import Digits
from modules import CNN, MLP, LinearSoftmax, ViT

# (model class, init arguments) for an input of IMAGE_SHAPE and 10 classes; each model file adds its cases.
IMAGE_SHAPE = (1, 8, 8)
CASES = [
    (LinearSoftmax, {}),
    (LinearSoftmax, {"loss": "hinge"}),
    (MLP, {"hidden_sizes": [32, 16], "activation": "relu"}),
    (MLP, {"hidden_sizes": [32], "activation": "tanh", "dropout": 0.1}),
    (MLP, {"hidden_sizes": [32], "activation": "sigmoid"}),
    (ViT, {"patch_size": 4, "num_layers": 2, "nhead": 4, "d_model": 32, "pool": "cls"}),
    (ViT, {"patch_size": 2, "num_layers": 1, "nhead": 2, "d_model": 16, "pool": "mean", "attention": "manual", "dropout": 0.1}),
    (CNN, {"channels": [8, 16], "pool": "max"}),
    (CNN, {"channels": [8, 8], "pool": ["none", "avg"], "residual": [False, True], "global_pool": "avg", "init": "kaiming"}),
    (CNN, {"channels": [4], "padding": 0, "batch_norm": False, "activation": "tanh", "hidden_sizes": [16], "dropout": 0.1, "init": "xavier"}),
]
IDS = [f"{cls.__name__}-{'-'.join(map(str, args.values())) or 'default'}" for cls, args in CASES]


def build(cls, args):
    torch.manual_seed(0)
    return cls(input_shape=IMAGE_SHAPE, num_classes=10, **args)


@pytest.mark.parametrize(("cls", "args"), CASES, ids=IDS)
def test_output_shape_and_finite(cls, args):
    logits = build(cls, args)(torch.randn(5, *IMAGE_SHAPE))
    assert logits.shape == (5, 10)
    assert torch.isfinite(logits).all()


@pytest.mark.parametrize(("cls", "args"), CASES, ids=IDS)
def test_loss_falls_on_a_repeated_batch(cls, args):
    model = build(cls, args)
    model.train()
    images, labels = torch.randn(16, *IMAGE_SHAPE), torch.arange(16) % 10
    optimizer = torch.optim.Adam(model.parameters(), lr=1.0e-2)
    losses = []
    for _ in range(30):
        loss = model.loss(model(images), labels)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0]


@pytest.mark.parametrize(("cls", "args"), CASES, ids=IDS)
def test_fast_dev_run_fit(cls, args, in_tmp):
    model = build(cls, args)
    before = [p.detach().clone() for p in model.parameters()]
    trainer = L.Trainer(fast_dev_run=2, logger=False, enable_progress_bar=False, enable_model_summary=False)
    trainer.fit(model, datamodule=Digits(batch_size=32))
    assert trainer.state.finished
    assert any(not torch.equal(b, p) for b, p in zip(before, model.parameters()))
