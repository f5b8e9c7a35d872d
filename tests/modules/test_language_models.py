"""Every language model through the same checks: shapes, causality, loss falls, sampling, metrics."""

import math

import lightning as L
import pytest
import torch
import torch.nn.functional as F

from datamodules import Text
from modules import RNN, Transformer
from tests.fakes import write_text

VOCAB = "\n abcdefghij"
CASES = [
    (Transformer, {"block_size": 16, "num_layers": 2, "nhead": 2, "d_model": 32}),
    (Transformer, {"block_size": 16, "num_layers": 1, "nhead": 4, "d_model": 32, "attention": "manual", "bias": True, "tie_weights": False}),
    (RNN, {"cell": "rnn", "num_layers": 1, "hidden_size": 32}),
    (RNN, {"cell": "lstm", "num_layers": 2, "hidden_size": 32, "dropout": 0.1}),
    (RNN, {"cell": "gru", "num_layers": 2, "hidden_size": 32, "tie_weights": False}),
]
IDS = [f"{cls.__name__}-{args.get('cell', args.get('attention', 'sdpa'))}" for cls, args in CASES]


def build(cls, args, vocab=VOCAB):
    torch.manual_seed(0)
    return cls(vocab=vocab, **args)


@pytest.mark.parametrize(("cls", "args"), CASES, ids=IDS)
def test_logits_shape_finite_and_causal(cls, args):
    model = build(cls, args).eval()
    tokens = torch.randint(len(VOCAB), (3, 16))
    logits = model(tokens)
    assert logits.shape == (3, 16, len(VOCAB)) and torch.isfinite(logits).all()
    changed = tokens.clone()
    changed[:, 10:] = (changed[:, 10:] + 1) % len(VOCAB)  # rewrite the future
    assert torch.allclose(model(changed)[:, :10], logits[:, :10], atol=1e-6)
    assert not torch.allclose(model(changed)[:, 10:], logits[:, 10:])


@pytest.mark.parametrize(("cls", "args"), CASES, ids=IDS)
def test_loss_falls_on_a_repeated_batch(cls, args):
    model = build(cls, args).train()
    tokens = (torch.randint(len(VOCAB), (8, 1)) + torch.arange(17)) % len(VOCAB)  # each next token is learnable
    batch = (tokens[:, :-1], tokens[:, 1:])
    optimizer = torch.optim.Adam(model.parameters(), lr=1.0e-2)
    losses = []
    for _ in range(40):
        loss, _ = model._loss(batch)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[0] == pytest.approx(math.log(len(VOCAB)), rel=0.25)  # starts near uniform
    assert losses[-1] < 0.5 * losses[0]


@pytest.mark.parametrize(("cls", "args"), CASES, ids=IDS)
def test_step_by_step_matches_the_whole_sequence(cls, args):
    model = build(cls, args).eval()
    tokens = torch.randint(len(VOCAB), (2, 12))
    logits, state = model.step(tokens[:, :5], None)
    for t in range(5, 12):
        assert torch.allclose(logits, model(tokens[:, :t])[:, -1], atol=1e-5)
        logits, state = model.step(tokens[:, t : t + 1], state)


@pytest.mark.parametrize(("cls", "args"), CASES, ids=IDS)
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
    model = build(*CASES[0])
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
    model = build(*CASES[0])
    assert model.head.weight is model.token_embedding.weight
    rnn = build(RNN, {"cell": "lstm", "hidden_size": 32})
    assert rnn.head.weight is rnn.embedding.weight
    with pytest.raises(ValueError, match="longer than block_size 16"):
        model(torch.zeros(1, 17, dtype=torch.long))
    with pytest.raises(ValueError, match="distinct characters"):
        Transformer(vocab="abca")


def test_validation_metrics_cover_the_whole_validation_text(tmp_path):
    data = Text(path=str(write_text(tmp_path / "verse.txt")), block_size=16, batch_size=7)
    model = build(Transformer, CASES[0][1], vocab=data.vocab)
    trainer = L.Trainer(logger=False, enable_progress_bar=False, enable_model_summary=False)
    (metrics,) = trainer.validate(model, datamodule=data)
    inputs, targets = (torch.cat(t) for t in zip(*(data.on_after_batch_transfer(b, 0) for b in data.val_dataloader())))
    with torch.no_grad():
        expected = F.cross_entropy(model(inputs).flatten(0, 1), targets.flatten()).item()
    assert metrics["val/loss"] == pytest.approx(expected, rel=1e-5)
    assert metrics["val/bpc"] == pytest.approx(expected / math.log(2), rel=1e-5)
    assert metrics["val/ppl"] == pytest.approx(math.exp(expected), rel=1e-5)


@pytest.mark.parametrize(("cls", "args"), [CASES[0], CASES[3]], ids=[IDS[0], IDS[3]])
def test_fast_dev_run_fit(cls, args, tmp_path, in_tmp):
    data = Text(path=str(write_text(tmp_path / "verse.txt")), block_size=16, batch_size=4)
    model = build(cls, args, vocab=data.vocab)
    before = [p.detach().clone() for p in model.parameters()]
    trainer = L.Trainer(fast_dev_run=2, logger=False, enable_progress_bar=False, enable_model_summary=False)
    trainer.fit(model, datamodule=data)
    assert trainer.state.finished
    assert any(not torch.equal(b, p) for b, p in zip(before, model.parameters()))
