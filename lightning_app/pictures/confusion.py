"""Confusion matrices and per-class accuracy: counted, written as CSV, read back, and drawn.

Rows are the true classes, columns the predicted ones. ``python -m lightning_app.compare --plot``
reads the CSV that the classifier pictures wrote for each run and draws them side by side.
"""

import csv
from pathlib import Path

import numpy as np

from lightning_app.pictures.figures import Table, figure, name_cells, plain_text

ANNOTATED = 20  # classes up to which every cell shows its number
NAMED = 30  # classes up to which the axes name every class


def confusion_table(matrix: np.ndarray, names: list[str]) -> Table:
    return Table(["true \\ predicted", *names], [[name, *row] for name, row in zip(names, matrix.tolist())])


def read_confusion(path: Path) -> tuple[list[str], np.ndarray]:
    """The class names and ``(K, K)`` counts of a CSV written by ``confusion_table``."""
    with open(path, newline="") as file:
        header, *rows = list(csv.reader(file))
    if not rows or any(len(row) != len(header) for row in rows) or len(rows) != len(header) - 1:
        raise ValueError(f"{path}: not a square confusion matrix (a header of class names, then one row per class)")
    return header[1:], np.array([[int(count) for count in row[1:]] for row in rows])


def per_class_table(matrix: np.ndarray, names: list[str]) -> Table:
    totals, correct = matrix.sum(1).tolist(), matrix.diagonal().tolist()
    rows = [[i, name, c, t, round(c / t, 6) if t else ""] for i, (name, c, t) in enumerate(zip(names, correct, totals))]
    return Table(["class", "name", "correct", "total", "accuracy"], rows)


def panel_inches(num_classes: int) -> float:
    return float(np.clip(1.2 + 0.38 * num_classes, 2.5, 12.0))


def panel_figure(panels: int, side: float, names: list[str], title: str):
    """A row of ``panels`` square axes of ``side`` inches, each with a colour bar where its cells are
    not all numbered, at fixed margins (room for the class names): no layout engine, which would take
    most of the drawing time. Returns the figure and each panel's ``(axes, colour bar axes or None)``."""
    longest = max(map(len, names)) if len(names) <= NAMED else 0
    bars = len(names) > ANNOTATED  # numbered cells need no colour scale, and a bar costs a fifth of the drawing
    left, bottom, top, bar = 0.5 + 0.07 * longest, 0.5 + (0.07 * longest if longest > 2 else 0.2), 0.8, 0.9 * bars
    width, height = panels * (left + side + bar) + 0.1, bottom + side + top
    fig = figure(width, height, layout=None)
    fig.suptitle(title, y=1 - 0.1 / height, va="top")
    pairs = []
    for i in range(panels):
        x = i * (left + side + bar) + left
        axis = fig.add_axes((x / width, bottom / height, side / width, side / height))
        bar_axis = None
        if bars:
            bar_axis = fig.add_axes(((x + side + 0.1) / width, bottom / height, 0.15 / width, side / height))
        pairs.append((axis, bar_axis))
    return fig, pairs


def draw_panel(axes: tuple, matrix: np.ndarray, names: list[str], normalise: bool, title: str) -> None:
    """One heat map and its colour bar (``None``: none): counts, or each row divided by its total (the
    share of class i predicted as j)."""
    axis, bar = axes
    totals = matrix.sum(1, keepdims=True)
    values = matrix / np.maximum(totals, 1) if normalise else matrix
    top = 1.0 if normalise else max(int(matrix.max()), 1)
    image = axis.imshow(values, cmap="Blues", vmin=0, vmax=top)
    if bar is not None:
        axis.figure.colorbar(image, cax=bar)
    k = len(names)
    if k <= ANNOTATED:  # the cells that hold samples: an empty cell reads as empty, and each text costs drawing time
        for i, j in zip(*matrix.nonzero()):
            value = values[i, j]
            text = f"{value:.2f}" if normalise else str(int(value))
            axis.text(j, i, text, ha="center", va="center", fontsize=7, color="white" if value > top / 2 else "black")
    named = names if k <= NAMED else []
    name_cells(axis, named, named, "predicted", "true", rotate=max(map(len, names)) > 2, fontsize=8)
    axis.set_title(title, fontsize=10)


def draw_confusion(matrix: np.ndarray, names: list[str], title: str):
    """Counts beside the row-normalised matrix."""
    fig, (counts, shares) = panel_figure(2, panel_inches(len(names)), names, title)
    draw_panel(counts, matrix, names, False, "counts")
    draw_panel(shares, matrix, names, True, "row-normalised (recall on the diagonal)")
    return fig


def draw_per_class(matrix: np.ndarray, names: list[str], title: str):
    """One horizontal bar per class: its accuracy (recall), with the count of its samples."""
    totals = matrix.sum(1)
    accuracy = matrix.diagonal() / np.maximum(totals, 1)
    labels = [f"{name} ({int(n)})" for name, n in zip(names, totals)]
    width, height, left = 6.0, float(np.clip(1.0 + 0.25 * len(names), 2.5, 25.0)), 0.2 + 0.07 * max(map(len, labels))
    fig = figure(width, height, layout=None)
    axis = fig.add_axes((left / width, 0.55 / height, (width - left - 0.25) / width, (height - 0.95) / height))
    positions = np.arange(len(names))
    axis.barh(positions, accuracy, color="tab:blue")
    axis.set_yticks(positions, labels, fontsize=8)
    axis.invert_yaxis()  # class 0 on top, as in the confusion matrix
    axis.set(xlim=(0, 1), xlabel="accuracy (samples)", title=title)
    axis.grid(axis="x", alpha=0.3)
    return fig


def draw_side_by_side(matrices: list[tuple[str, list[str], np.ndarray]]):
    """The row-normalised matrix of each ``(title, names, counts)``, in one row of panels."""
    side = max(panel_inches(len(names)) for _, names, _ in matrices)
    longest = max((names for _, names, _ in matrices), key=lambda names: max(map(len, names)))
    fig, pairs = panel_figure(len(matrices), side, longest, "test confusion matrices, row-normalised")
    for axes, (title, names, matrix) in zip(pairs, matrices):
        accuracy = np.trace(matrix) / max(matrix.sum(), 1)
        draw_panel(axes, matrix, names, True, f"{title}\naccuracy {accuracy:.4f} on {matrix.sum()}")
    return fig


def confusion_side_by_side(runs: list, path: Path) -> Path | None:
    """Draws the test confusion matrices of the ``runs`` (``compare.Run``: ``folder``, ``summary``) that
    listed one in their ``summary.json``, side by side, into ``path``; None when no run has one."""
    matrices = []
    for run in runs:
        listed = run.summary.get("files", {}).get("test/confusion_matrix", [])
        tables = [run.folder / name for name in listed if name.endswith(".csv") and (run.folder / name).is_file()]
        if tables:
            names, counts = read_confusion(tables[0])
            matrices.append((f"{run.folder.name} {run.summary.get('model')}/{run.summary.get('data')}", names, counts))
    if not matrices:
        return None
    with plain_text():  # a class name is drawn as it is, `$` and all
        draw_side_by_side(matrices).savefig(path, dpi=100)
    return path
