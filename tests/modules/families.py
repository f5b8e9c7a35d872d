"""How each family of model is built, fed and checked: the shared checks of every exported model.

A model belongs to the first family whose base it subclasses: ``Classifier`` (images in, class
scores out, trained by gradient), ``LanguageModel`` (tokens in, next-token logits out) or
``KNN`` (memorises, then searches). A model that fits none fails the shared tests, naming this file.
"""

import math

import lightning as L
import pytest
import torch
import torch.nn.functional as F

from datamodules import Digits, Text
from modules import CNN, KNN, MLP, RNN, Classifier, LanguageModel, LinearSoftmax, Transformer, ViT
from tests.fakes import exported_models, small_kwargs, write_text

IMAGE_SHAPE, NUM_CLASSES, VOCAB = (1, 8, 8), 10, "\n abcdefghij"  # Digits' images; a small alphabet

# Arguments that take a code path of their own, each checked too (on top of tests/fakes.py's SMALL sizes); optional.
VARIANTS = {
    LinearSoftmax: [{"loss": "hinge"}],
    MLP: [{"hidden_sizes": [32], "activation": "tanh", "dropout": 0.1}, {"activation": "sigmoid"}],
    ViT: [{"patch_size": 2, "num_layers": 1, "d_model": 16, "pool": "mean", "attention": "manual", "dropout": 0.1}],
    CNN: [
        {"channels": [8, 8], "pool": ["none", "avg"], "residual": [False, True], "global_pool": "avg", "init": "kaiming"},
        {"channels": [4], "padding": 0, "batch_norm": False, "activation": "tanh", "hidden_sizes": [16],
         "dropout": 0.1, "init": "xavier"},
    ],
    Transformer: [{"num_layers": 1, "nhead": 4, "attention": "manual", "bias": True, "tie_weights": False}],
    RNN: [{"cell": "rnn", "num_layers": 1}, {"cell": "gru", "dropout": 0.1, "tie_weights": False}],
    KNN: [{"distance": "l1", "weights": "distance"}, {"distance": "cosine", "k": 1}],
}


def cases(base: type = L.LightningModule) -> list:
    """``pytest.param(model class, arguments)``: every exported model under ``base``, then its variants."""
    return [
        pytest.param(cls, {**small_kwargs(cls), **variant}, id="-".join([cls.__name__, *map(str, variant.values())]))
        for cls in exported_models()
        if issubclass(cls, base)
        for variant in [{}, *VARIANTS.get(cls, [])]
    ]


class Images:
    """Classifiers: ``(B, C, H, W)`` images -> ``(B, num_classes)`` scores; the loss halves in 30 steps."""

    base = Classifier

    @staticmethod
    def build(cls: type, args: dict, data: L.LightningDataModule | None = None) -> L.LightningModule:
        torch.manual_seed(0)
        return cls(input_shape=IMAGE_SHAPE, num_classes=NUM_CLASSES, **args)

    @staticmethod
    def batch() -> tuple[torch.Tensor, torch.Tensor]:
        generator = torch.Generator().manual_seed(0)
        return torch.randn(16, *IMAGE_SHAPE, generator=generator), torch.arange(16) % NUM_CLASSES

    @classmethod
    def check_outputs(cls, model: L.LightningModule) -> None:
        images, _ = cls.batch()
        scores = model(images)
        assert scores.shape == (16, NUM_CLASSES) and torch.isfinite(scores).all()

    @classmethod
    def check_learns(cls, model: L.LightningModule) -> None:
        images, labels = cls.batch()
        learns_a_repeated_batch(model, lambda: model.loss(model(images), labels), steps=30)

    @staticmethod
    def datamodule(tmp_path) -> L.LightningDataModule:
        return Digits(batch_size=32)

    @staticmethod
    def check_fitted(model: L.LightningModule, before: list[torch.Tensor]) -> None:
        assert any(not torch.equal(b, p) for b, p in zip(before, model.parameters()))  # it trained


class Tokens(Images):
    """Language models: ``(B, T)`` tokens -> ``(B, T, V)`` next-token logits; the loss halves in 40 steps."""

    base = LanguageModel

    @staticmethod
    def build(cls: type, args: dict, data: L.LightningDataModule | None = None) -> L.LightningModule:
        torch.manual_seed(0)
        return cls(vocab=data.vocab if data is not None else VOCAB, **args)

    @staticmethod
    def batch() -> tuple[torch.Tensor, torch.Tensor]:
        generator = torch.Generator().manual_seed(0)
        tokens = (torch.randint(len(VOCAB), (8, 1), generator=generator) + torch.arange(17)) % len(VOCAB)
        return tokens[:, :-1], tokens[:, 1:]  # each next token is learnable: the alphabet in order

    @classmethod
    def check_outputs(cls, model: L.LightningModule) -> None:
        tokens, _ = cls.batch()
        logits = model(tokens)
        assert logits.shape == (8, 16, len(VOCAB)) and torch.isfinite(logits).all()

    @classmethod
    def check_learns(cls, model: L.LightningModule) -> None:
        inputs, targets = cls.batch()

        def loss() -> torch.Tensor:
            return F.cross_entropy(model(inputs).flatten(0, 1), targets.flatten())

        learns_a_repeated_batch(model, loss, steps=40)

    @staticmethod
    def datamodule(tmp_path) -> L.LightningDataModule:
        return Text(path=str(write_text(tmp_path / "verse.txt")), block_size=16, batch_size=4)


class Memory(Images):
    """kNN: nothing to train; after memorising a batch (each image k times) it classifies that batch perfectly."""

    base = KNN

    @classmethod
    def check_outputs(cls, model: L.LightningModule) -> None:
        images, labels = cls.batch()
        model.memory, model.memory_labels = images.flatten(1), labels  # memorised as a fit would
        shares = model(images)
        assert shares.shape == (16, NUM_CLASSES) and torch.allclose(shares.sum(1), torch.ones(16))

    @classmethod
    def check_learns(cls, model: L.LightningModule) -> None:
        images, labels = cls.batch()
        k = model.hparams.k
        model.memory, model.memory_labels = images.flatten(1).repeat(k, 1), labels.repeat(k)
        assert torch.equal(model(images).argmax(1), labels)

    @staticmethod
    def check_fitted(model: L.LightningModule, before: list[torch.Tensor]) -> None:
        assert model.memory.shape == (2 * 32, math.prod(IMAGE_SHAPE))  # fast_dev_run: two batches of 32


FAMILIES = (Images, Tokens, Memory)


def family_of(cls: type) -> type[Images]:
    for family in FAMILIES:
        if issubclass(cls, family.base):
            return family
    pytest.fail(
        f"modules.{cls.__name__} fits no family of tests/modules/families.py "
        f"({', '.join(f.base.__name__ for f in FAMILIES)}): subclass one of those bases, "
        "or add a family that says how to build, feed and check it"
    )


def learns_a_repeated_batch(model: L.LightningModule, loss, steps: int) -> None:
    """Adam at 1e-2 on the same batch: the loss must fall below half its first value."""
    model.train()
    optimizer = torch.optim.Adam(model.parameters(), lr=1.0e-2)
    losses = []
    for _ in range(steps):
        value = loss()
        optimizer.zero_grad()
        value.backward()
        optimizer.step()
        losses.append(value.item())
    assert losses[-1] < 0.5 * losses[0], losses


def check_outputs(cls: type, args: dict) -> None:
    family = family_of(cls)
    family.check_outputs(family.build(cls, args).eval())


def check_learns(cls: type, args: dict) -> None:
    family = family_of(cls)
    family.check_learns(family.build(cls, args))


def check_fast_dev_run_fit(cls: type, args: dict, tmp_path) -> None:
    family = family_of(cls)
    data = family.datamodule(tmp_path)
    model = family.build(cls, args, data)
    before = [p.detach().clone() for p in model.parameters()]
    trainer = L.Trainer(fast_dev_run=2, logger=False, enable_progress_bar=False, enable_model_summary=False)
    trainer.fit(model, datamodule=data)
    assert trainer.state.finished
    family.check_fitted(model, before)
