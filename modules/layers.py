"""Building blocks that more than one model family uses: activations, attention, the Transformer block."""

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

ACTIVATIONS = {"relu": nn.ReLU, "tanh": nn.Tanh, "sigmoid": nn.Sigmoid, "gelu": nn.GELU}


class ResidualProjection(nn.Linear):
    """A linear layer whose output is added into the residual stream; ``init_weights`` scales it down."""


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
        self.proj = ResidualProjection(d_model, d_model, bias=bias)
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
    """A pre-norm Transformer block: x + attention(norm(x)), then x + MLP(norm(x)).

    Args:
        d_model: Width of the residual stream.
        nhead: Attention heads; ``d_model`` must be a multiple of it.
        dropout: Dropout on the attention weights and on both residual branches.
        causal: Each position attends only to itself and earlier ones (language models), or to all (ViT).
        bias: Biases in the linear layers and LayerNorms.
        attention: ``sdpa`` (fused kernel) or ``manual`` (the same computation, written out).
    """

    def __init__(
        self, d_model: int, nhead: int, *, dropout: float, causal: bool, bias: bool, attention: str
    ) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(d_model, bias=bias)
        self.attn = SelfAttention(d_model, nhead, dropout, causal, bias, attention)
        self.norm2 = nn.LayerNorm(d_model, bias=bias)
        self.mlp = nn.Sequential(
            nn.Linear(d_model, 4 * d_model, bias=bias),
            nn.GELU(),
            ResidualProjection(4 * d_model, d_model, bias=bias),
            nn.Dropout(dropout),
        )

    def forward(self, x: Tensor) -> Tensor:
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


def init_weights(model: nn.Module, num_layers: int) -> None:
    """GPT-2's initialisation: N(0, 0.02), the residual projections scaled by 1/sqrt(2 * num_layers).

    Each block adds two residual projections into the stream, so without the scaling the stream's
    variance would grow with depth.
    """
    residual = {id(m.weight) for m in model.modules() if isinstance(m, ResidualProjection)}
    for name, p in model.named_parameters():
        if id(p) in residual:
            nn.init.normal_(p, std=0.02 / math.sqrt(2 * num_layers))
        elif p.dim() >= 2:
            nn.init.normal_(p, std=0.02)
        elif name.endswith("bias"):
            nn.init.zeros_(p)
