"""What the shared model checks do not cover for ViT: its two attention paths agree, its patch grid."""

import pytest
import torch

from modules import ViT


def test_manual_attention_equals_sdpa_without_a_mask():
    torch.manual_seed(0)
    args = {"input_shape": (3, 8, 8), "num_classes": 5, "patch_size": 2, "num_layers": 2, "nhead": 2, "d_model": 16}
    fast, manual = ViT(**args), ViT(**args, attention="manual")
    manual.load_state_dict(fast.state_dict())
    images = torch.randn(4, 3, 8, 8)
    assert torch.allclose(fast.eval()(images), manual.eval()(images), atol=1e-5)


def test_every_patch_reaches_the_class_scores():
    torch.manual_seed(0)
    model = ViT(input_shape=(1, 8, 8), num_classes=3, patch_size=4, num_layers=1, nhead=2, d_model=16).eval()
    images = torch.randn(1, 1, 8, 8)
    for row, col in [(0, 0), (0, 4), (4, 0), (4, 4)]:  # one pixel in each of the four patches
        changed = images.clone()
        changed[0, 0, row, col] += 1.0
        assert not torch.allclose(model(changed), model(images))


@pytest.mark.parametrize(("pool", "tokens"), [("cls", 17), ("mean", 16)])
def test_pooling_and_patch_grid(pool, tokens):
    model = ViT(input_shape=(1, 16, 16), num_classes=10, patch_size=4, pool=pool, d_model=16, nhead=2, num_layers=1)
    assert model.position_embedding.shape == (1, tokens, 16)  # 4 x 4 patches, plus the class token
    assert (model.cls_token is not None) == (pool == "cls")
    with pytest.raises(ValueError, match="patch_size 5 must divide the image size 28x28"):
        ViT(patch_size=5)
