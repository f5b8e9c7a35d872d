"""What the shared model checks do not cover for language models: causality, step-by-step
generation, sampling, the two attention paths, tied weights, the validation metrics."""

import math

import lightning as L
import pytest
import torch
import torch.nn.functional as F

from datamodules import Text
from modules import RNN, LanguageModel, Transformer
from tests.fakes import small_kwargs, write_text
from tests.modules.families import VOCAB, Tokens, cases

CASES = cases(LanguageModel)


def build(cls, args, data=None):
    return Tokens.build(cls, args, data)


@pytest.mark.parametrize(("cls", "args"), CASES)
def test_the_future_does_not_change_the_past(cls, args):
    model = build(cls, args).eval()
    tokens = torch.randint(len(VOCAB), (3, 16))
    logits = model(tokens)
    changed = tokens.clone()
    changed[:, 10:] = (changed[:, 10:] + 1) % len(VOCAB)  # rewrite the future
    assert torch.allclose(model(changed)[:, :10], logits[:, :10], atol=1e-6)
    assert not torch.allclose(model(changed)[:, 10:], logits[:, 10:])


@pytest.mark.parametrize(("cls", "args"), CASES)
def test_the_loss_starts_near_a_uniform_guess(cls, args):
    inputs, targets = Tokens.batch()
    with torch.no_grad():
        loss = F.cross_entropy(build(cls, args)(inputs).flatten(0, 1), targets.flatten()).item()
    assert loss == pytest.approx(math.log(len(VOCAB)), rel=0.25)


@pytest.mark.parametrize(("cls", "args"), CASES)
def test_step_by_step_matches_the_whole_sequence(cls, args):
    model = build(cls, args).eval()
    tokens = torch.randint(len(VOCAB), (2, 12))
    logits, state = model.step(tokens[:, :5], None)
    for t in range(5, 12):
        assert torch.allclose(logits, model(tokens[:, :t])[:, -1], atol=1e-5)
        logits, state = model.step(tokens[:, t : t + 1], state)


@pytest.mark.parametrize(("cls", "args"), CASES)
def test_sampling_is_seeded_and_respects_temperature_and_top_k(cls, args):
    model = build(cls, args)
    first = model.generate_text("abc", 30, temperature=1.0, seed=7, num_samples=2)
    assert first == model.generate_text("abc", 30, temperature=1.0, seed=7, num_samples=2)
    assert first != model.generate_text("abc", 30, temperature=1.0, seed=8, num_samples=2)
    assert all(len(s) == 33 and s.startswith("abc") for s in first)
    greedy = model.generate_text("abc", 20, temperature=0.0)
    assert greedy == model.generate_text("abc", 20, temperature=1.0, top_k=1, seed=3)
    tokens = model.encode(greedy[0][:-1])  # the Transformer sees the last block_size of them, the RNN all
    context = tokens[-getattr(model, "block_size", len(tokens)) :]
    assert model.eval()(context[None])[0, -1].argmax().item() == VOCAB.index(greedy[0][-1])
    model.train()
    model.generate_text("a", 2)
    assert model.training  # generation leaves the mode as it found it


def test_unknown_prompt_characters_are_a_clear_error():
    model = build(Transformer, small_kwargs(Transformer))
    with pytest.raises(ValueError, match=r"\['X', 'Z'\] are not in the model's vocabulary"):
        model.generate_text("aXbZ", 5)
    with pytest.raises(ValueError, match="prompt is empty"):
        model.generate_text("", 5)


def test_manual_attention_equals_sdpa():
    args = {"block_size": 16, "num_layers": 2, "nhead": 4, "d_model": 32}
    fast, manual = build(Transformer, args), build(Transformer, {**args, "attention": "manual"})
    manual.load_state_dict(fast.state_dict())
    tokens = torch.randint(len(VOCAB), (3, 16))
    assert torch.allclose(fast(tokens), manual(tokens), atol=1e-5)


def test_weights_are_tied_and_context_is_bounded():
    model = build(Transformer, small_kwargs(Transformer))
    assert model.head.weight is model.token_embedding.weight
    rnn = build(RNN, {"cell": "lstm", "hidden_size": 32})
    assert rnn.head.weight is rnn.embedding.weight
    with pytest.raises(ValueError, match="longer than block_size 16"):
        model(torch.zeros(1, 17, dtype=torch.long))
    with pytest.raises(ValueError, match="distinct characters"):
        Transformer(vocab="abca")


def test_validation_metrics_cover_the_whole_validation_text(tmp_path):
    data = Text(path=str(write_text(tmp_path / "verse.txt")), block_size=16, batch_size=7)
    model = build(Transformer, small_kwargs(Transformer), data)
    trainer = L.Trainer(logger=False, enable_progress_bar=False, enable_model_summary=False)
    (metrics,) = trainer.validate(model, datamodule=data)
    inputs, targets = (torch.cat(t) for t in zip(*(data.on_after_batch_transfer(b, 0) for b in data.val_dataloader())))
    with torch.no_grad():
        expected = F.cross_entropy(model(inputs).flatten(0, 1), targets.flatten()).item()
    assert metrics["val/loss"] == pytest.approx(expected, rel=1e-5)
    assert metrics["val/bpc"] == pytest.approx(expected / math.log(2), rel=1e-5)
    assert metrics["val/ppl"] == pytest.approx(math.exp(expected), rel=1e-5)
