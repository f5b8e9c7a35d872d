"""What every character language model shares: the next-character loss, its metrics, and sampling."""

import math

import lightning as L
import torch
import torch.nn.functional as F
from torch import Tensor
from torchmetrics import MeanMetric, MinMetric


class LanguageModel(L.LightningModule):
    """Base of the language models: subclasses build layers in ``__init__`` and define two methods.

    ``forward(tokens)``: ``(B, T)`` token ids -> ``(B, T, vocab_size)`` logits of each next character.
    ``step(tokens, state)``: the newest ``(B, t)`` tokens and the state that the previous call
    returned (None at first) -> ``(B, vocab_size)`` logits of the character that follows, and the
    new state. Generation calls it once per character.

    The vocabulary is a hyperparameter, so it is saved in every checkpoint and generation needs no
    data file. Metrics: ``train/loss``, ``train/loss_step``, ``val/loss`` (nats per character over
    the whole validation text, summed over every rank), ``val/bpc`` (bits per character),
    ``val/ppl`` (perplexity) and ``val/loss_best``.
    """

    def __init__(self, vocab: str) -> None:
        super().__init__()
        if not vocab or len(set(vocab)) != len(vocab):
            raise ValueError(f"vocab must be distinct characters, got {vocab!r}")
        self.vocab = vocab
        self.vocab_size = len(vocab)
        self.val_loss = MeanMetric()  # weighted by characters, so a short last batch counts for less
        self.val_loss_best = MinMetric()

    def _loss(self, batch: tuple[Tensor, Tensor]) -> tuple[Tensor, int]:
        inputs, targets = batch  # (B, T) each
        logits = self(inputs)  # (B, T, V)
        return F.cross_entropy(logits.flatten(0, 1).float(), targets.flatten()), targets.numel()

    def training_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> Tensor:
        loss, count = self._loss(batch)
        # Lightning's own epoch mean: it stays on the device and is synced once, at the epoch's end.
        # (A torchmetrics metric would check for NaNs with `.any()`, a wait for the GPU at every step.)
        self.log("train/loss", loss.detach(), on_step=False, on_epoch=True, sync_dist=True, batch_size=count)
        # The per-step value is this rank's batch alone: syncing it would cost a collective per step.
        self.log("train/loss_step", loss.detach(), on_step=True, on_epoch=False, prog_bar=True)
        return loss

    def validation_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> None:
        loss, count = self._loss(batch)
        self.val_loss.update(loss, weight=count)
        self.log("val/loss", self.val_loss, on_step=False, on_epoch=True, prog_bar=True)

    def predict_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> Tensor:
        return self(batch[0]).argmax(dim=-1)  # (B, T): the likeliest next character at every position

    def on_train_start(self) -> None:
        self.val_loss_best.reset()  # forget the sanity check's loss

    def on_validation_epoch_end(self) -> None:
        loss = self.val_loss.compute()
        self.log("val/bpc", loss / math.log(2))
        self.log("val/ppl", loss.exp())
        if not self.trainer.sanity_checking:
            self.val_loss_best.update(loss)
            self.log("val/loss_best", self.val_loss_best.compute())

    def configure_optimizers(self) -> torch.optim.Optimizer:
        """Used only when the config names no optimizer (the CLI's ``optimizer:`` replaces it)."""
        return torch.optim.AdamW(self.parameters(), lr=1.0e-3)

    def encode(self, text: str) -> Tensor:
        """Text -> ``(len(text),)`` token ids; a character outside the vocabulary is an error."""
        unknown = sorted(set(text) - set(self.vocab))
        if unknown:
            raise ValueError(f"characters {unknown} are not in the model's vocabulary {self.vocab!r}; remove them")
        index = {char: i for i, char in enumerate(self.vocab)}
        return torch.tensor([index[char] for char in text], dtype=torch.long)

    def decode(self, tokens: Tensor) -> str:
        return "".join(self.vocab[i] for i in tokens.tolist())

    @torch.no_grad()
    def generate(
        self, tokens: Tensor, max_new_tokens: int, temperature: float = 1.0, top_k: int | None = None, generator=None
    ) -> Tensor:
        """``(B, t)`` prompt tokens -> ``(B, t + max_new_tokens)``, sampling one character at a time.

        Logits are divided by ``temperature`` (0 picks the most likely character) and all but the
        ``top_k`` largest are dropped before sampling; ``generator`` makes the draw reproducible.
        """
        if temperature < 0:
            raise ValueError(f"temperature must be >= 0, got {temperature}")
        if tokens.shape[1] == 0:
            raise ValueError("the prompt is empty: give at least one character, e.g. a newline")
        was_training = self.training
        self.eval()
        logits, state = self.step(tokens, None)  # (B, V)
        generated = [tokens]
        for i in range(max_new_tokens):
            if temperature == 0:
                next_token = logits.argmax(dim=-1, keepdim=True)  # (B, 1)
            else:
                logits = logits.float() / temperature
                if top_k is not None:
                    kth = logits.topk(min(top_k, logits.shape[-1])).values[:, -1:]  # (B, 1)
                    logits = logits.masked_fill(logits < kth, float("-inf"))
                next_token = torch.multinomial(logits.softmax(dim=-1), 1, generator=generator)  # (B, 1)
            generated.append(next_token)
            if i < max_new_tokens - 1:
                logits, state = self.step(next_token, state)
        self.train(was_training)
        return torch.cat(generated, dim=1)

    def generate_text(
        self,
        prompt: str,
        max_new_tokens: int,
        temperature: float = 1.0,
        top_k: int | None = None,
        seed: int = 0,
        num_samples: int = 1,
    ) -> list[str]:
        """``num_samples`` continuations of ``prompt`` (each includes the prompt); same seed, same text."""
        tokens = self.encode(prompt).to(self.device).repeat(num_samples, 1)  # (num_samples, t)
        generator = torch.Generator(self.device).manual_seed(seed)
        return [self.decode(row) for row in self.generate(tokens, max_new_tokens, temperature, top_k, generator)]
