"""The shared building blocks: GPT-2's initialisation finds the residual projections by their type."""

import math

import pytest
import torch

from modules import Transformer, ViT
from modules.layers import ResidualProjection


@pytest.mark.parametrize("model", [
    lambda: Transformer(vocab="abcdefgh", num_layers=8, d_model=64, nhead=4),
    lambda: ViT(input_shape=(1, 8, 8), num_layers=8, d_model=64, nhead=4),
])
def test_residual_projections_start_smaller_by_the_square_root_of_twice_the_depth(model):
    torch.manual_seed(0)
    model = model()
    residual = [m.weight for m in model.modules() if isinstance(m, ResidualProjection)]
    assert len(residual) == 2 * 8  # attention's output and the MLP's second layer, in every block
    for weight in residual:
        assert weight.std().item() == pytest.approx(0.02 / math.sqrt(2 * 8), rel=0.1)
    for block in model.blocks:
        assert block.attn.qkv.weight.std().item() == pytest.approx(0.02, rel=0.1)
        assert block.mlp[0].weight.std().item() == pytest.approx(0.02, rel=0.1)
