"""The Vision Transformer: an image as a sequence of patches, through the GPT's blocks without the mask."""

from typing import Literal

import torch
from torch import Tensor, nn

from modules.classifier import Classifier
from modules.layers import Block, init_weights


class ViT(Classifier):
    """Patches -> linear embedding + positions -> ``num_layers`` Transformer blocks -> class scores.

    Every patch attends to every other (no causal mask). The image is summarised by a learned
    class token prepended to the patches (``pool="cls"``, as in ViT) or by the mean of the patch
    outputs (``pool="mean"``).

    Args:
        input_shape: Shape of one input, ``(C, H, W)``; set from the data module.
        num_classes: Number of classes; set from the data module.
        patch_size: Side of the square patches; must divide the image height and width.
        num_layers: Transformer blocks.
        nhead: Attention heads per block; ``d_model`` must be a multiple of it.
        d_model: Width of the patch embeddings and the residual stream.
        dropout: Dropout on embeddings, attention weights and residual branches.
        pool: ``cls`` (class token) or ``mean`` (average of the patch outputs).
        attention: ``sdpa`` (fused kernel) or ``manual`` (the same computation, written out).
        loss: ``cross_entropy`` or ``hinge`` (multiclass SVM).
        label_smoothing: Cross-entropy label smoothing, 0 for none.
    """

    def __init__(
        self,
        input_shape: tuple[int, ...] = (1, 28, 28),
        num_classes: int = 10,
        patch_size: int = 4,
        num_layers: int = 4,
        nhead: int = 4,
        d_model: int = 128,
        dropout: float = 0.0,
        pool: Literal["cls", "mean"] = "cls",
        attention: Literal["sdpa", "manual"] = "sdpa",
        loss: Literal["cross_entropy", "hinge"] = "cross_entropy",
        label_smoothing: float = 0.0,
    ) -> None:
        super().__init__(num_classes, loss, label_smoothing)
        self.save_hyperparameters()
        channels, height, width = input_shape
        if height % patch_size or width % patch_size:
            raise ValueError(f"patch_size {patch_size} must divide the image size {height}x{width}")
        num_patches = (height // patch_size) * (width // patch_size)
        self.pool = pool
        # A convolution with stride = kernel = patch_size is one linear map applied to each patch.
        self.patch_embedding = nn.Conv2d(channels, d_model, kernel_size=patch_size, stride=patch_size)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, d_model)) if pool == "cls" else None
        self.position_embedding = nn.Parameter(torch.zeros(1, num_patches + (pool == "cls"), d_model))
        self.dropout = nn.Dropout(dropout)
        self.blocks = nn.ModuleList(
            Block(d_model, nhead, dropout=dropout, causal=False, bias=True, attention=attention)
            for _ in range(num_layers)
        )
        self.norm = nn.LayerNorm(d_model)
        self.head = nn.Linear(d_model, num_classes)
        init_weights(self, num_layers)

    def forward(self, images: Tensor) -> Tensor:
        x = self.patch_embedding(images).flatten(2).transpose(1, 2)  # (B, C, H, W) -> (B, N, D), N patches
        if self.cls_token is not None:
            x = torch.cat([self.cls_token.expand(len(x), -1, -1), x], dim=1)  # (B, 1 + N, D)
        x = self.dropout(x + self.position_embedding)
        for block in self.blocks:
            x = block(x)
        x = self.norm(x)
        pooled = x[:, 0] if self.cls_token is not None else x.mean(dim=1)  # (B, D)
        return self.head(pooled)  # (B, num_classes)
