"""Convolutional networks: a configurable stack of conv layers, optionally with residual blocks.

LeNet-5, a VGG-style stack and a ResNet-9-style net are configs of the one class here
(``configs/mnist_cnn.yaml``, ``cifar10_cnn.yaml``, ``cifar10_resnet.yaml``).
"""

from collections import OrderedDict
from collections.abc import Sequence
from typing import Literal, TypeVar

from torch import Tensor, nn

from modules.classifier import Classifier
from modules.layers import ACTIVATIONS

Pool = Literal["max", "avg", "none"]
Item = TypeVar("Item")
POOLS = {"max": nn.MaxPool2d, "avg": nn.AvgPool2d}


def per_layer(value: Item | Sequence[Item], num_layers: int, name: str) -> list[Item]:
    """One value for every layer: a single value is repeated, a list must have one per layer."""
    if isinstance(value, Sequence) and not isinstance(value, str):
        if len(value) != num_layers:
            raise ValueError(f"{name} has {len(value)} values for {num_layers} layers (one per entry of `channels`)")
        return list(value)
    return [value] * num_layers


def output_size(size: int, kernel: int, stride: int, padding: int, where: str) -> int:
    """(W - F + 2P) / S + 1, which must be a whole positive number for the layer to fit its input."""
    span = size - kernel + 2 * padding
    if span < 0 or span % stride:
        raise ValueError(
            f"{where} does not fit its input: (W - F + 2P) / S + 1 = ({size} - {kernel} + 2*{padding}) / {stride} + 1 "
            f"= {span / stride + 1:g}, not a whole positive number; change its kernel_size, stride or padding, "
            "or the layers before it"
        )
    return span // stride + 1


class Residual(nn.Module):
    """``x + f(x)``, where f is two 3x3 convolutions (each with batch norm and activation) at x's width."""

    def __init__(self, channels: int, batch_norm: bool, activation: str) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(channels, channels, 3, padding=1)
        self.bn1 = nn.BatchNorm2d(channels) if batch_norm else nn.Identity()
        self.act1 = ACTIVATIONS[activation]()
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=1)
        self.bn2 = nn.BatchNorm2d(channels) if batch_norm else nn.Identity()
        self.act2 = ACTIVATIONS[activation]()

    def forward(self, x: Tensor) -> Tensor:
        return x + self.act2(self.bn2(self.conv2(self.act1(self.bn1(self.conv1(x))))))  # (B, C, H, W)


class CNN(Classifier):
    """Conv layers, each conv -> batch norm -> activation -> pooling -> residual block -> dropout, then a classifier.

    Every conv layer is a named module (``features.conv1`` ...) with K(F^2 C + 1) parameters
    (the bias is kept even with batch norm, so the count reads the same), listed in the model
    summary. Sizes are computed and checked at construction (``output_shapes``): a layer that
    does not fit its input fails before any data is loaded.

    Args:
        input_shape: Shape of one input, ``(C, H, W)``; set from the data module.
        num_classes: Number of classes; set from the data module.
        channels: Out channels K of each conv layer, input side first; its length is the number of layers.
        kernel_size: Kernel size F, one for all layers or one per layer.
        stride: Stride S, one for all layers or one per layer.
        padding: Zero padding P, one for all layers or one per layer.
        pool: 2x2 pooling with stride 2 after a layer (``max``, ``avg`` or ``none``), one or one per layer.
        residual: After a layer, a residual block of two 3x3 convs at its width, one or one per layer.
        batch_norm: Batch norm after every convolution.
        activation: Nonlinearity after every convolution and hidden linear layer.
        dropout: Probability of zeroing an activation after each conv layer and hidden linear layer.
        global_pool: Pool each channel's whole map to one value (``max``, ``avg``) or flatten it (``none``).
        hidden_sizes: Widths of the hidden linear layers between the conv stack and the class scores.
        logit_scale: Factor on the class scores; below 1 keeps a high learning rate from saturating the softmax.
        init: Weight initialisation of convs and linear layers: ``kaiming`` (normal, ReLU gain),
            ``xavier`` (uniform) with zero biases, or PyTorch's ``default``.
        loss: ``cross_entropy`` or ``hinge`` (multiclass SVM).
        label_smoothing: Cross-entropy label smoothing, 0 for none.
    """

    def __init__(
        self,
        input_shape: tuple[int, ...] = (3, 32, 32),
        num_classes: int = 10,
        channels: Sequence[int] = (32, 64),
        kernel_size: int | Sequence[int] = 3,
        stride: int | Sequence[int] = 1,
        padding: int | Sequence[int] = 1,
        pool: Pool | Sequence[Pool] = "max",
        residual: bool | Sequence[bool] = False,
        batch_norm: bool = True,
        activation: Literal["relu", "tanh", "sigmoid", "gelu"] = "relu",
        dropout: float = 0.0,
        global_pool: Pool = "none",
        hidden_sizes: Sequence[int] = (),
        logit_scale: float = 1.0,
        init: Literal["default", "kaiming", "xavier"] = "default",
        loss: Literal["cross_entropy", "hinge"] = "cross_entropy",
        label_smoothing: float = 0.0,
    ) -> None:
        super().__init__(num_classes, loss, label_smoothing)
        self.save_hyperparameters()
        n = len(channels)
        layers = zip(
            channels,
            per_layer(kernel_size, n, "kernel_size"),
            per_layer(stride, n, "stride"),
            per_layer(padding, n, "padding"),
            per_layer(pool, n, "pool"),
            per_layer(residual, n, "residual"),
        )
        c, h, w = input_shape
        self.output_shapes: dict[str, tuple[int, int, int]] = {}  # (K, H', W') after each conv and pool
        features: OrderedDict[str, nn.Module] = OrderedDict()
        for i, (k, f, s, p, pooling, res) in enumerate(layers, start=1):
            h = output_size(h, f, s, p, f"conv{i} (height)")
            w = output_size(w, f, s, p, f"conv{i} (width)")
            features[f"conv{i}"] = nn.Conv2d(c, k, f, s, p)
            self.output_shapes[f"conv{i}"] = (k, h, w)
            if batch_norm:
                features[f"bn{i}"] = nn.BatchNorm2d(k)
            features[f"act{i}"] = ACTIVATIONS[activation]()
            if pooling != "none":
                h = output_size(h, 2, 2, 0, f"pool{i} (height)")
                w = output_size(w, 2, 2, 0, f"pool{i} (width)")
                features[f"pool{i}"] = POOLS[pooling](2)
                self.output_shapes[f"pool{i}"] = (k, h, w)
            if res:
                features[f"res{i}"] = Residual(k, batch_norm, activation)
            if dropout > 0:
                features[f"drop{i}"] = nn.Dropout(dropout)
            c = k
        self.features = nn.Sequential(features)
        head: OrderedDict[str, nn.Module] = OrderedDict()
        if global_pool != "none":
            head["pool"] = {"max": nn.AdaptiveMaxPool2d, "avg": nn.AdaptiveAvgPool2d}[global_pool](1)
            h = w = 1
        head["flatten"] = nn.Flatten()
        width = c * h * w
        for j, hidden in enumerate(hidden_sizes, start=1):
            head[f"fc{j}"] = nn.Linear(width, hidden)
            head[f"act{j}"] = ACTIVATIONS[activation]()
            if dropout > 0:
                head[f"drop{j}"] = nn.Dropout(dropout)
            width = hidden
        head["out"] = nn.Linear(width, num_classes)
        self.classifier = nn.Sequential(head)
        self.logit_scale = logit_scale
        if init != "default":
            self._initialise(init)

    def _initialise(self, init: str) -> None:
        for module in self.modules():
            if isinstance(module, (nn.Conv2d, nn.Linear)):
                if init == "kaiming":
                    nn.init.kaiming_normal_(module.weight, nonlinearity="relu")
                else:
                    nn.init.xavier_uniform_(module.weight)
                nn.init.zeros_(module.bias)

    def forward(self, images: Tensor) -> Tensor:
        features = self.features(images)  # (B, C, H, W) -> (B, K, H', W')
        return self.classifier(features) * self.logit_scale  # (B, num_classes)
