"""Drawing primitives of the pictures, with numpy and matplotlib only (``compare --plot`` uses them too).

matplotlib is imported by the first figure made, never at start-up, and only its object-oriented
``Figure`` is used: no pyplot state, no display, the Agg renderer.
"""

import contextlib
import math
from dataclasses import dataclass
from typing import Any

import numpy as np


@dataclass
class Table:
    """What a CSV file and a W&B table hold: a header and rows."""

    columns: list[str]
    rows: list[list[Any]]


def plain_text() -> contextlib.AbstractContextManager:
    """A context in which text is drawn as it is: no mathtext (a class name ``$\\foo$`` is an error
    there), no LaTeX even where a matplotlibrc asks for it."""
    import matplotlib  # here, not at the top: a run that draws nothing never imports it

    return matplotlib.rc_context({"text.parse_math": False, "text.usetex": False})


def figure(width: float, height: float, layout: str | None = "constrained"):
    """A matplotlib ``Figure`` of ``width`` x ``height`` inches (pixels: inches x dpi)."""
    from matplotlib.figure import Figure  # here, not at the top: a run that draws nothing never imports it

    return Figure(figsize=(width, height), layout=layout)


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


CHARACTER_WIDTH = 0.62  # of the font size: a generous average width of a character, to leave room


def name_cells(axis, columns: list[str], rows: list[str], xlabel: str = "", ylabel: str = "", rotate: bool = False,
               **font) -> None:  # fmt: skip
    """Names under an image's columns and left of its rows, and the axis labels beyond them, as
    plain text instead of ticks, which cost about a millisecond each to draw (bench/draw_speed.py).
    ``rotate`` turns the column names upright; ``font``: Text properties (fontsize, family)."""
    from matplotlib.transforms import offset_copy

    axis.set_xticks([]), axis.set_yticks([])
    size = font.setdefault("fontsize", 8)
    fig, gap = axis.figure, 3.0  # points between the image and the names, and between the names and a label
    under = offset_copy(axis.get_xaxis_transform(), fig=fig, y=-gap, units="points")
    for x, name in enumerate(columns):
        axis.text(x, 0, name, ha="center", va="top", rotation=90 if rotate else 0, transform=under, **font)
    beside = offset_copy(axis.get_yaxis_transform(), fig=fig, x=-gap, units="points")
    for y, name in enumerate(rows):
        axis.text(0, y, name, ha="right", va="center", transform=beside, **font)
    longest = max(map(len, columns), default=0)
    down = gap + (CHARACTER_WIDTH * size * longest if rotate else size * 1.2 if columns else 0) + gap
    left = gap + CHARACTER_WIDTH * size * max(map(len, rows), default=0) + gap
    if xlabel:
        below = offset_copy(axis.transAxes, fig=fig, y=-down, units="points")
        axis.text(0.5, 0, xlabel, ha="center", va="top", transform=below)
    if ylabel:
        further = offset_copy(axis.transAxes, fig=fig, x=-left, units="points")
        axis.text(0, 0.5, ylabel, ha="right", va="center", rotation=90, transform=further)
