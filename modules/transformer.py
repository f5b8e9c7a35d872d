"""The GPT-style Transformer language model, and the attention block that ViT reuses."""

import math
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from modules.language_model import LanguageModel


class SelfAttention(nn.Module):
    """Multi-head self-attention: every position mixes the values of the positions it may see.

    ``attention="manual"`` spells the computation out; ``"sdpa"`` hands the same computation to
    ``F.scaled_dot_product_attention``, which picks a fused kernel (flash attention on GPUs).
    """

    def __init__(self, d_model: int, nhead: int, dropout: float, causal: bool, bias: bool, attention: str) -> None:
        super().__init__()
        if d_model % nhead:
            raise ValueError(f"d_model ({d_model}) must be a multiple of nhead ({nhead})")
        self.nhead, self.dropout, self.causal, self.attention = nhead, dropout, causal, attention
        self.qkv = nn.Linear(d_model, 3 * d_model, bias=bias)  # queries, keys and values in one matmul
        self.proj = nn.Linear(d_model, d_model, bias=bias)
        self.attn_dropout = nn.Dropout(dropout)
        self.resid_dropout = nn.Dropout(dropout)

    def forward(self, x: Tensor) -> Tensor:
        B, T, C = x.shape
        q, k, v = self.qkv(x).split(C, dim=2)  # (B, T, C) each
        # Heads become a batch dimension: (B, nh, T, hs), hs = C / nh.
        q, k, v = (t.view(B, T, self.nhead, C // self.nhead).transpose(1, 2) for t in (q, k, v))
        if self.attention == "sdpa":
            dropout = self.dropout if self.training else 0.0
            y = F.scaled_dot_product_attention(q, k, v, dropout_p=dropout, is_causal=self.causal)
        else:
            # Scaling by sqrt(hs) keeps the scores' variance near 1, so softmax does not saturate.
            scores = q @ k.transpose(-2, -1) / math.sqrt(k.shape[-1])  # (B, nh, T, T)
            if self.causal:  # position t sees positions <= t only: no peeking at the characters to predict
                future = torch.ones(T, T, dtype=torch.bool, device=x.device).triu(diagonal=1)
                scores = scores.masked_fill(future, float("-inf"))
            weights = self.attn_dropout(scores.softmax(dim=-1))  # each row sums to 1
            y = weights @ v  # (B, nh, T, hs)
        y = y.transpose(1, 2).reshape(B, T, C)  # heads side by side again
        return self.resid_dropout(self.proj(y))


class Block(nn.Module):
    """A pre-norm Transformer block: x + attention(norm(x)), then x + MLP(norm(x))."""

    def __init__(self, d_model: int, nhead: int, dropout: float, causal: bool, bias: bool, attention: str) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(d_model, bias=bias)
        self.attn = SelfAttention(d_model, nhead, dropout, causal, bias, attention)
        self.norm2 = nn.LayerNorm(d_model, bias=bias)
        self.mlp = nn.Sequential(
            nn.Linear(d_model, 4 * d_model, bias=bias),
            nn.GELU(),
            nn.Linear(4 * d_model, d_model, bias=bias),
            nn.Dropout(dropout),
        )

    def forward(self, x: Tensor) -> Tensor:
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


def init_weights(model: nn.Module, num_layers: int) -> None:
    """GPT-2's initialisation: N(0, 0.02), the residual projections scaled by 1/sqrt(2 * num_layers)."""
    for name, p in model.named_parameters():
        if name.endswith(("attn.proj.weight", "mlp.2.weight")):  # each adds into the residual stream
            nn.init.normal_(p, std=0.02 / math.sqrt(2 * num_layers))
        elif p.dim() >= 2:
            nn.init.normal_(p, std=0.02)
        elif name.endswith("bias"):
            nn.init.zeros_(p)


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
        self.blocks = nn.ModuleList(Block(d_model, nhead, dropout, True, bias, attention) for _ in range(num_layers))
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
