"""Recurrent language models: the vanilla tanh RNN, the LSTM and the GRU."""

from typing import Literal

from torch import Tensor, nn

from modules.language_model import LanguageModel

CELLS = {"rnn": nn.RNN, "lstm": nn.LSTM, "gru": nn.GRU}


class RNN(LanguageModel):
    """Characters -> embedding -> ``num_layers`` recurrent layers -> a linear head.

    Training sees independent windows: every window starts from a zero state and the gradient
    flows back through its ``block_size`` characters only, so what the model learns matches the
    Transformer's fixed context. (Truncated backpropagation through time would instead carry the
    state from one window into the next, which needs consecutive windows, not random ones.)
    Generation does carry the state, one character at a time, so its context is unbounded.

    Args:
        vocab: Characters of the vocabulary in token order; set from the data module.
        cell: ``rnn`` (tanh), ``lstm`` or ``gru``.
        num_layers: Stacked recurrent layers.
        hidden_size: Width of the state, and of the embedding.
        dropout: Dropout on the embedding, between layers and before the head.
        tie_weights: Share the embedding with the output head.
    """

    def __init__(
        self,
        vocab: str,
        cell: Literal["rnn", "lstm", "gru"] = "lstm",
        num_layers: int = 2,
        hidden_size: int = 256,
        dropout: float = 0.0,
        tie_weights: bool = True,
    ) -> None:
        super().__init__(vocab)
        self.save_hyperparameters()
        self.embedding = nn.Embedding(self.vocab_size, hidden_size)
        self.dropout = nn.Dropout(dropout)
        between = dropout if num_layers > 1 else 0.0  # PyTorch applies it after every layer but the last
        self.rnn = CELLS[cell](hidden_size, hidden_size, num_layers, batch_first=True, dropout=between)
        self.head = nn.Linear(hidden_size, self.vocab_size)
        # Small output weights start the model near the uniform guess, loss ln(vocab_size), as PyTorch's
        # word-language-model example does; N(0, 1) embeddings tied to the head would start far above it.
        for weight in (self.embedding.weight, self.head.weight):
            nn.init.uniform_(weight, -0.1, 0.1)
        nn.init.zeros_(self.head.bias)
        if tie_weights:
            self.head.weight = self.embedding.weight

    def forward(self, tokens: Tensor) -> Tensor:
        return self.run(tokens, None)[0]

    def run(self, tokens: Tensor, state: Tensor | tuple[Tensor, Tensor] | None):
        """``(B, T)`` tokens and an initial state -> ``(B, T, V)`` logits and the final state."""
        x = self.dropout(self.embedding(tokens))  # (B, T, H)
        y, state = self.rnn(x, state)  # (B, T, H); the state is (layers, B, H), a pair of them for the LSTM
        return self.head(self.dropout(y)), state

    def step(self, tokens: Tensor, state: Tensor | tuple[Tensor, Tensor] | None):
        logits, state = self.run(tokens, state)
        return logits[:, -1], state
