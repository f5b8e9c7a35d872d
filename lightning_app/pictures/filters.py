"""What a convolutional network learned first: its first conv layer's filters, and each layer's output size."""

import math

import numpy as np
import torch
from torch import Tensor, nn

from lightning_app.pictures.figures import Table, figure, show
from lightning_app.pictures.base import PictureCallback, like_model, probe, publish


def first_conv(model: nn.Module) -> tuple[str, nn.Conv2d] | None:
    return next(((name, m) for name, m in model.named_modules() if isinstance(m, nn.Conv2d)), None)


def filter_mosaic(weight: Tensor, max_filters: int) -> np.ndarray:
    """``(K, C, F, F)`` weights -> one ``(H, W, 3)`` image of the first ``max_filters`` filters in a grid.

    Each filter is scaled by its own largest magnitude so that 0 is mid-grey: bright pixels are
    positive weights, dark ones negative. Three input channels show in colour, any other number as
    their mean. Filters are separated by one white pixel.
    """
    weight = weight.detach().float().cpu()[:max_filters]
    if weight.shape[1] != 3:
        weight = weight.mean(1, keepdim=True).expand(-1, 3, -1, -1)
    scale = weight.abs().amax(dim=(1, 2, 3), keepdim=True).clamp(min=1e-8)
    tiles = (0.5 + 0.5 * weight / scale).permute(0, 2, 3, 1).numpy()  # (K, F, F, 3) in [0, 1]
    n, height, width, _ = tiles.shape
    columns = math.ceil(math.sqrt(n))
    rows = math.ceil(n / columns)
    mosaic = np.ones((rows * (height + 1) - 1, columns * (width + 1) - 1, 3))
    for i, tile in enumerate(tiles):
        top, left = (i // columns) * (height + 1), (i % columns) * (width + 1)
        mosaic[top : top + height, left : left + width] = tile
    return mosaic


def feature_map_sizes(model: nn.Module, input_shape: tuple[int, ...]) -> Table:
    """The output shape of every layer (leaf module) for one input of ``input_shape``, in call order."""
    rows: list[list] = []
    names = {module: name for name, module in model.named_modules()}

    def record(module, inputs, output) -> None:
        if isinstance(output, Tensor):
            parameters = sum(p.numel() for p in module.parameters())
            rows.append([names[module], type(module).__name__, "x".join(map(str, output.shape[1:])), parameters])

    leaves = [m for m in model.modules() if not list(m.children())]
    probe(model, like_model(torch.zeros(1, *input_shape), model), [m.register_forward_hook(record) for m in leaves])
    return Table(["layer", "type", "output (C x H x W)", "parameters"], rows)


class ConvFilters(PictureCallback):
    """The first ``nn.Conv2d``'s filters as an image grid (``filters/conv1``) at the end of ``fit``
    and, with ``every_n_epochs``, after every n-th validation (``pictures/filters/conv1_epoch{E}.png``);
    and at the end of ``fit`` each layer's output size for one input as a table (``filters/feature_maps``).
    Drawn on rank 0 from the weights: no data, no collectives.

    Args:
        every_n_epochs: Also draw the filters after the validation of every n-th epoch; 0 only at the end.
        max_filters: Filters shown: the layer's first ones.
        dpi: Pixels per inch of the PNG files.
    """

    nothing = "no filter pictures"

    def __init__(self, every_n_epochs: int = 0, max_filters: int = 64, dpi: int = 100) -> None:
        if every_n_epochs < 0 or max_filters < 1 or dpi < 1:
            raise ValueError(
                f"ConvFilters: every_n_epochs={every_n_epochs} (>= 0), max_filters={max_filters} (>= 1) "
                f"and dpi={dpi} (>= 1) are out of range"
            )
        self.every_n_epochs, self.max_filters, self.dpi = every_n_epochs, max_filters, dpi

    @staticmethod
    def missing(pl_module, datamodule) -> str | None:
        return None if first_conv(pl_module) else "no nn.Conv2d layer"

    def _draw_filters(self, trainer, pl_module, epochs: int, name: str | None = None) -> None:
        layer, conv = first_conv(pl_module)
        mosaic = filter_mosaic(conv.weight, self.max_filters)
        shown = min(self.max_filters, conv.out_channels)
        inches = 0.8 / (conv.kernel_size[1] + 1)  # per pixel of the mosaic: 0.8 inches per filter
        fig = figure(max(3.0, mosaic.shape[1] * inches + 0.4), mosaic.shape[0] * inches + 0.6)
        show(fig.subplots(), mosaic, interpolation="nearest")
        kernel = "x".join(map(str, conv.kernel_size))
        fig.suptitle(f"{layer}: {shown} of {conv.out_channels} filters {kernel}, after {epochs} epochs", fontsize=9)
        publish(trainer, "filters/conv1", fig, dpi=self.dpi, name=name)

    def on_validation_epoch_end(self, trainer, pl_module) -> None:
        if self.epoch_due(trainer) and trainer.is_global_zero:
            epoch = trainer.current_epoch
            self._draw_filters(trainer, pl_module, epoch + 1, f"filters/conv1_epoch{epoch}")

    def on_fit_end(self, trainer, pl_module) -> None:
        if not self.active or not trainer.is_global_zero:
            return
        self._draw_filters(trainer, pl_module, trainer.current_epoch)  # by now, the number of epochs trained
        input_shape = getattr(trainer.datamodule, "input_shape", None) or pl_module.hparams.get("input_shape")
        if input_shape is not None:
            publish(trainer, "filters/feature_maps", table=feature_map_sizes(pl_module, tuple(input_shape)))
