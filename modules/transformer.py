"""The GPT-style Transformer language model: causal blocks of ``modules/layers.py`` over characters."""

from typing import Literal

import torch
from torch import Tensor, nn

from modules.language_model import LanguageModel
from modules.layers import Block, init_weights


class Transformer(LanguageModel):
    """A GPT: token and position embeddings, ``num_layers`` causal blocks, a linear head.

    Args:
        vocab: Characters of the vocabulary in token order; set from the data module.
        block_size: Longest context, the size of the position table; set from the data module.
        num_layers: Transformer blocks.
        nhead: Attention heads per block; ``d_model`` must be a multiple of it.
        d_model: Width of the residual stream and the embeddings.
        dropout: Dropout on embeddings, attention weights and residual branches.
        bias: Biases in linear layers and LayerNorms (nanoGPT drops them).
        tie_weights: Share the token embedding with the output head.
        attention: ``sdpa`` (fused kernel) or ``manual`` (the same computation, written out).
    """

    def __init__(
        self,
        vocab: str,
        block_size: int = 64,
        num_layers: int = 4,
        nhead: int = 4,
        d_model: int = 128,
        dropout: float = 0.0,
        bias: bool = False,
        tie_weights: bool = True,
        attention: Literal["sdpa", "manual"] = "sdpa",
    ) -> None:
        super().__init__(vocab)
        self.save_hyperparameters()
        self.block_size = block_size
        self.token_embedding = nn.Embedding(self.vocab_size, d_model)
        self.position_embedding = nn.Embedding(block_size, d_model)
        self.dropout = nn.Dropout(dropout)
        self.blocks = nn.ModuleList(
            Block(d_model, nhead, dropout=dropout, causal=True, bias=bias, attention=attention)
            for _ in range(num_layers)
        )
        self.norm = nn.LayerNorm(d_model, bias=bias)
        self.head = nn.Linear(d_model, self.vocab_size, bias=False)
        init_weights(self, num_layers)
        if tie_weights:  # one matrix maps characters to vectors and vectors back to character scores
            self.head.weight = self.token_embedding.weight

    def forward(self, tokens: Tensor) -> Tensor:
        T = tokens.shape[1]
        if T > self.block_size:
            raise ValueError(f"sequence of {T} tokens is longer than block_size {self.block_size}")
        positions = torch.arange(T, device=tokens.device)
        x = self.dropout(self.token_embedding(tokens) + self.position_embedding(positions))  # (B, T, C)
        for block in self.blocks:
            x = block(x)
        return self.head(self.norm(x))  # (B, T, V)

    def step(self, tokens: Tensor, state: Tensor | None) -> tuple[Tensor, Tensor]:
        """The state is the text so far; the model sees its last ``block_size`` tokens (no cache)."""
        context = tokens if state is None else torch.cat([state, tokens], dim=1)  # (B, t)
        return self(context[:, -self.block_size :])[:, -1], context
