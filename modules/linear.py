"""The linear classifier: scores = W x + b over the flattened pixels."""

import math
from typing import Literal

from torch import Tensor, nn

from modules.classifier import Classifier


class LinearSoftmax(Classifier):
    """A linear classifier trained with softmax cross-entropy, or with the multiclass SVM loss.

    Args:
        input_shape: Shape of one input, ``(C, H, W)``; set from the data module.
        num_classes: Number of classes; set from the data module.
        loss: ``cross_entropy`` (softmax classifier) or ``hinge`` (multiclass SVM, margin 1).
        label_smoothing: Cross-entropy label smoothing, 0 for none.
    """

    def __init__(
        self,
        input_shape: tuple[int, ...] = (1, 28, 28),
        num_classes: int = 10,
        loss: Literal["cross_entropy", "hinge"] = "cross_entropy",
        label_smoothing: float = 0.0,
    ) -> None:
        super().__init__(num_classes, loss, label_smoothing)
        self.save_hyperparameters()
        self.linear = nn.Linear(math.prod(input_shape), num_classes)

    def forward(self, images: Tensor) -> Tensor:
        return self.linear(images.flatten(1))  # (B, C*H*W) -> (B, num_classes)
