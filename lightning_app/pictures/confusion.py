"""Confusion matrices and per-class accuracy: counted, written as CSV, read back, and drawn.

Rows are the true classes, columns the predicted ones. ``python -m lightning_app.compare --plot``
reads the CSV that the classifier pictures wrote for each run and draws them side by side.
"""

import csv
from pathlib import Path

import numpy as np

from lightning_app.pictures.figures import Table, figure

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
    return float(np.clip(1.5 + 0.45 * num_classes, 3.0, 12.0))


def draw_panel(axis, matrix: np.ndarray, names: list[str], normalise: bool, title: str) -> None:
    """One heat map: counts, or each row divided by its total (the share of class i predicted as j)."""
    totals = matrix.sum(1, keepdims=True)
    values = matrix / np.maximum(totals, 1) if normalise else matrix
    top = 1.0 if normalise else max(int(matrix.max()), 1)
    image = axis.imshow(values, cmap="Blues", vmin=0, vmax=top)
    axis.figure.colorbar(image, ax=axis, shrink=0.8)
    k = len(names)
    if k <= ANNOTATED:
        for (i, j), value in np.ndenumerate(values):
            text = f"{value:.2f}" if normalise else str(int(value))
            axis.text(j, i, text, ha="center", va="center", fontsize=7, color="white" if value > top / 2 else "black")
    ticks = range(k) if k <= NAMED else []
    axis.set_xticks(ticks, [names[i] for i in ticks], rotation=90 if max(map(len, names)) > 2 else 0, fontsize=8)
    axis.set_yticks(ticks, [names[i] for i in ticks], fontsize=8)
    axis.set(xlabel="predicted", ylabel="true", title=title)


def draw_confusion(matrix: np.ndarray, names: list[str], title: str):
    """Counts beside the row-normalised matrix."""
    side = panel_inches(len(names))
    fig = figure(2 * side + 1.0, side + 0.6)
    counts, shares = fig.subplots(1, 2)
    draw_panel(counts, matrix, names, False, "counts")
    draw_panel(shares, matrix, names, True, "row-normalised (recall on the diagonal)")
    fig.suptitle(title)
    return fig


def draw_per_class(matrix: np.ndarray, names: list[str], title: str):
    """One horizontal bar per class: its accuracy (recall), with the count of its samples."""
    totals = matrix.sum(1)
    accuracy = matrix.diagonal() / np.maximum(totals, 1)
    fig = figure(6.0, float(np.clip(1.0 + 0.25 * len(names), 2.5, 25.0)))
    axis = fig.subplots()
    positions = np.arange(len(names))
    axis.barh(positions, accuracy, color="tab:blue")
    axis.set_yticks(positions, [f"{name} ({int(n)})" for name, n in zip(names, totals)], fontsize=8)
    axis.invert_yaxis()  # class 0 on top, as in the confusion matrix
    axis.set(xlim=(0, 1), xlabel="accuracy (samples)", title=title)
    axis.grid(axis="x", alpha=0.3)
    return fig


def draw_side_by_side(matrices: list[tuple[str, list[str], np.ndarray]]):
    """The row-normalised matrix of each ``(title, names, counts)``, in one row of panels."""
    side = max(panel_inches(len(names)) for _, names, _ in matrices)
    fig = figure(side * len(matrices) + 0.5, side + 0.6)
    for axis, (title, names, matrix) in zip(np.atleast_1d(fig.subplots(1, len(matrices))), matrices):
        accuracy = np.trace(matrix) / max(matrix.sum(), 1)
        draw_panel(axis, matrix, names, True, f"{title}\naccuracy {accuracy:.4f} on {matrix.sum()}")
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
    draw_side_by_side(matrices).savefig(path, dpi=100)
    return path
