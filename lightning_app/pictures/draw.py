"""What every picture callback shares: a headless figure, images ready to show, and one way out.

``publish`` writes a picture (PNG) and its table (CSV) into ``<run folder>/pictures/<key>``,
each written beside its place and renamed into it (a reader never sees half a file), logs them
to W&B under the same ``key`` when the run has a ``WandbLogger``, and lists them in the run's
``summary.json``. matplotlib is imported by the first picture drawn, never at start-up, and only
its object-oriented ``Figure`` is used: no pyplot state, no display, the Agg renderer.
"""

import csv
import io
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from lightning.pytorch.loggers import WandbLogger
from torch import Tensor

from lightning_app.summary import add_files
from lightning_app.tracking import run_dir


@dataclass
class Table:
    columns: list[str]
    rows: list[list[Any]]


def figure(width: float, height: float, layout: str | None = "constrained"):
    """A matplotlib ``Figure`` of ``width`` x ``height`` inches (pixels: inches x dpi)."""
    from matplotlib.figure import Figure  # here, not at the top: a run that draws nothing never imports it

    return Figure(figsize=(width, height), layout=layout)


def like_model(x: Tensor, model: torch.nn.Module) -> Tensor:
    """``x`` on the model's device, and in its parameters' dtype when ``x`` is floating (a bf16-true model)."""
    parameter = next(model.parameters())
    return x.to(parameter.device, dtype=parameter.dtype if x.is_floating_point() else x.dtype)


def displayable(images: Tensor, mean: tuple[float, ...] | None = None, std: tuple[float, ...] | None = None) -> np.ndarray:
    """Normalised ``(N, C, H, W)`` images -> ``(N, H, W, C)`` in [0, 1]: undone with the data's
    ``mean`` and ``std`` where given, else each image stretched to its own range."""
    images = images.detach().float().cpu()
    if mean is not None and std is not None and len(mean) == images.shape[1]:
        shape = (1, -1, 1, 1)
        images = images * torch.tensor(std).view(shape) + torch.tensor(mean).view(shape)
    else:
        low = images.amin(dim=(1, 2, 3), keepdim=True)
        images = (images - low) / (images.amax(dim=(1, 2, 3), keepdim=True) - low).clamp(min=1e-8)
    return images.clamp(0, 1).permute(0, 2, 3, 1).numpy()


def show(axis, image: np.ndarray, **kwargs) -> None:
    """One ``(H, W, C)`` image on ``axis``, grey when it has one channel, without ticks."""
    if image.shape[-1] == 1:
        axis.imshow(image[..., 0], cmap="gray", vmin=0, vmax=1, **kwargs)
    else:
        axis.imshow(image, **kwargs)
    axis.set_xticks([])
    axis.set_yticks([])


def tile_grid(images: np.ndarray, titles: list[str], columns: int, title: str, colours: list[str] | None = None):
    """``(N, H, W, C)`` images in [0, 1] in a grid of ``columns``, each under its (two-line) title.

    The grid is one image and the titles are text in one axes: a figure of 25 small axes takes
    ten times as long to draw.
    """
    n, height, width, channels = images.shape
    rows = max(1, math.ceil(n / columns))
    pad, tile_inches = max(1, width // 14), 1.2
    gap = math.ceil(0.3 / tile_inches * (width + pad))  # pixels above each image for its title
    mosaic = np.ones(((height + gap) * rows, (width + pad) * columns, channels))
    for i, image in enumerate(images):
        top, left = (i // columns) * (height + gap) + gap, (i % columns) * (width + pad) + pad // 2
        mosaic[top : top + height, left : left + width] = image
    heading = 0.35  # inches for the figure's title
    fig = figure(tile_inches * columns, tile_inches * mosaic.shape[0] / (width + pad) + heading, None)
    axis = fig.add_axes((0, 0, 1, 1 - heading / fig.get_figheight()))
    show(axis, mosaic, aspect="auto", interpolation="nearest")
    axis.axis("off")
    for i, text in enumerate(titles):
        x, y = (i % columns) * (width + pad) + pad // 2 + width / 2, (i // columns) * (height + gap) + gap - 0.5
        colour = colours[i] if colours else "black"
        axis.text(x, y, text, ha="center", va="bottom", fontsize=7, color=colour, linespacing=1.1)
    fig.suptitle(title, fontsize=9)
    return fig


def data_statistics(trainer) -> tuple[tuple[float, ...] | None, tuple[float, ...] | None]:
    """The data module's per-channel ``mean`` and ``std``, when it states them."""
    datamodule = trainer.datamodule
    return getattr(datamodule, "mean", None), getattr(datamodule, "std", None)


def _replace(path: Path, content: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.part")
    partial.write_bytes(content)
    os.replace(partial, path)


def write_png(fig, path: Path, dpi: int) -> Path:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=dpi)
    _replace(path, buffer.getvalue())
    return path


def write_csv(table: Table, path: Path) -> Path:
    text = io.StringIO()
    writer = csv.writer(text, lineterminator="\n")
    writer.writerow(table.columns)
    writer.writerows(table.rows)
    _replace(path, text.getvalue().encode("utf-8"))
    return path


def publish(
    trainer, key: str, fig=None, table: Table | None = None, dpi: int = 100, name: str | None = None, wandb: bool = True
) -> list[Path]:
    """Writes ``fig`` and ``table`` as ``pictures/<name or key>.png`` / ``.csv``, logs them to W&B
    under ``key`` (the picture as an image, else the table as a table; not with ``wandb=False``)
    and lists them in ``summary.json``. Global rank 0 only; other ranks write nothing."""
    if not trainer.is_global_zero:
        return []
    stem = run_dir(trainer) / "pictures" / (name or key)
    paths = []
    if fig is not None:
        paths.append(write_png(fig, stem.with_name(stem.name + ".png"), dpi))
    if table is not None:
        paths.append(write_csv(table, stem.with_name(stem.name + ".csv")))
    for logger in trainer.loggers if wandb else []:
        if isinstance(logger, WandbLogger):
            if fig is not None:
                logger.log_image(key=key, images=[str(paths[0])], step=trainer.global_step)
            else:
                logger.log_table(key=key, columns=table.columns, data=table.rows, step=trainer.global_step)
    add_files(trainer, key, paths)
    return paths
