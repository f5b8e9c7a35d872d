"""The multilayer perceptron: fully connected layers with a nonlinearity between them."""

import math
from collections.abc import Sequence
from typing import Literal

from torch import Tensor, nn

from modules.classifier import Classifier
from modules.layers import ACTIVATIONS


class MLP(Classifier):
    """Flattened pixels through ``hidden_sizes`` fully connected layers to class scores.

    Args:
        input_shape: Shape of one input, ``(C, H, W)``; set from the data module.
        num_classes: Number of classes; set from the data module.
        hidden_sizes: Width of each hidden layer, input side first: ``[128, 64]`` is 784-128-64-10 on MNIST.
        activation: Nonlinearity after each hidden layer.
        dropout: Probability of zeroing a hidden unit during training.
        loss: ``cross_entropy`` or ``hinge`` (multiclass SVM).
        label_smoothing: Cross-entropy label smoothing, 0 for none.
    """

    def __init__(
        self,
        input_shape: tuple[int, ...] = (1, 28, 28),
        num_classes: int = 10,
        hidden_sizes: Sequence[int] = (128, 64),
        activation: Literal["relu", "tanh", "sigmoid", "gelu"] = "relu",
        dropout: float = 0.0,
        loss: Literal["cross_entropy", "hinge"] = "cross_entropy",
        label_smoothing: float = 0.0,
    ) -> None:
        super().__init__(num_classes, loss, label_smoothing)
        self.save_hyperparameters()
        layers: list[nn.Module] = [nn.Flatten()]
        width = math.prod(input_shape)
        for hidden in hidden_sizes:
            layers += [nn.Linear(width, hidden), ACTIVATIONS[activation]()]
            if dropout > 0:
                layers.append(nn.Dropout(dropout))
            width = hidden
        layers.append(nn.Linear(width, num_classes))
        self.net = nn.Sequential(*layers)

    def forward(self, images: Tensor) -> Tensor:
        return self.net(images)  # (B, C, H, W) -> (B, num_classes)
