"""Where a classifier fails: its confusion matrix, per-class accuracy and most confident mistakes, at test end."""

import math

import numpy as np
import torch
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.utilities import rank_zero_warn
from torch import Tensor

from lightning_app.pictures.confusion import confusion_table, draw_confusion, draw_per_class, per_class_table
from lightning_app.pictures.figures import Table, figure, tile_grid
from lightning_app.pictures.publish import data_statistics, displayable, publish
from lightning_app.pictures.names import class_names
from modules.knn import gather_shards


def subset_keys(positions: Tensor, seed: int) -> Tensor:
    """One key per sample position; a subset of n samples is the n positions with the smallest keys.

    Fibonacci hashing sends consecutive positions far apart in [0, 2^32), so the smallest keys are
    spread over the whole split; the seed permutes the keys. Same seed, same subset, whatever the batch size.
    """
    return (positions.long() * 2654435761 % 2**32) ^ (seed * 2246822519 % 2**32)


class SeededSubset:
    """Keeps the rows of a stream of batches whose ``subset_keys`` are the ``size`` smallest, in stream order."""

    def __init__(self, size: int, seed: int) -> None:
        self.size, self.seed = size, seed
        self.keys = torch.zeros(0, dtype=torch.long)
        self.columns: dict[str, Tensor] = {}

    def add(self, positions: Tensor, **columns: Tensor) -> None:
        keys = subset_keys(positions, self.seed)
        if len(self.keys) == self.size:  # full: only rows that beat the largest kept key can enter
            chosen = keys < self.keys.max()
            keys, positions, columns = keys[chosen], positions[chosen], {n: c[chosen] for n, c in columns.items()}
        columns["position"] = positions
        keys = torch.cat([self.keys, keys])
        merged = {name: torch.cat([self.columns[name], c]) if self.columns else c for name, c in columns.items()}
        if len(keys) > self.size:
            keep = keys.topk(self.size, largest=False).indices.sort().values
            keys, merged = keys[keep], {name: c[keep] for name, c in merged.items()}
        self.keys, self.columns = keys, merged


def confusion_matrix(labels: Tensor, predictions: Tensor, num_classes: int) -> Tensor:
    """``(K, K)`` counts: entry ``[i, j]`` is the number of class-i samples predicted as class j."""
    flat = labels.long() * num_classes + predictions.long()
    return torch.bincount(flat, minlength=num_classes * num_classes).view(num_classes, num_classes)


def probabilities(scores: Tensor) -> Tensor:
    """Class probabilities of ``(B, K)`` scores: kept when they already are (kNN's vote shares), else softmax."""
    scores = scores.float()  # bf16 under mixed precision
    if bool((scores >= 0).all()) and torch.allclose(scores.sum(1), torch.ones(len(scores), device=scores.device)):
        return scores
    return scores.softmax(1)


def model_classes(pl_module, datamodule) -> int | None:
    hparams = getattr(pl_module, "hparams", {})
    return hparams.get("num_classes") or getattr(datamodule, "num_classes", None)


class ClassifierPictures(Callback):
    """At the end of every test: the confusion matrix (counts and row-normalised), the accuracy of
    each class, and a grid of the test images the model got wrong with the highest confidence.

    Made from a fixed subset of the test split (``max_samples``, chosen by ``subset_keys``),
    from the outputs the test step computes anyway (a forward hook keeps them): no extra forward
    pass. Keys: ``test/confusion_matrix``, ``test/per_class_accuracy``, ``test/misclassified``,
    each a PNG and a CSV in ``<run folder>/pictures/test/``. Under DDP each rank keeps its share of
    the subset; the counts are summed and the mistakes gathered on rank 0, which draws.

    Args:
        max_samples: Test samples the pictures are made from, all ranks together.
        num_misclassified: Images in the grid of the most confident mistakes.
        seed: Seed of the subset: the same seed picks the same samples.
        dpi: Pixels per inch of the PNG files.
    """

    stages = ("fit", "test")

    def __init__(self, max_samples: int = 2000, num_misclassified: int = 25, seed: int = 0, dpi: int = 100) -> None:
        if max_samples < 1 or num_misclassified < 0 or dpi < 1:
            raise ValueError(
                f"ClassifierPictures: max_samples={max_samples} (>= 1), num_misclassified={num_misclassified} (>= 0) "
                f"and dpi={dpi} (>= 1) are out of range"
            )
        self.max_samples, self.num_misclassified, self.seed, self.dpi = max_samples, num_misclassified, seed, dpi
        self.subset: SeededSubset | None = None
        self._hook = None
        self._last: tuple[Tensor, Tensor] | None = None
        self._seen = 0

    @staticmethod
    def missing(pl_module, datamodule) -> str | None:
        """What the model lacks for these pictures, or None."""
        return None if model_classes(pl_module, datamodule) else "no `num_classes` (not a classifier)"

    def on_test_epoch_start(self, trainer, pl_module) -> None:
        self.subset = None
        if (lacking := self.missing(pl_module, trainer.datamodule)) is not None:
            rank_zero_warn(f"ClassifierPictures: {type(pl_module).__name__} has {lacking}; no classifier pictures")
            return
        self.num_classes = model_classes(pl_module, trainer.datamodule)
        self.subset = SeededSubset(math.ceil(self.max_samples / trainer.world_size), self.seed + trainer.global_rank)
        self._seen, self._last = 0, None
        self._hook = pl_module.register_forward_hook(self._capture)

    def _capture(self, module, inputs: tuple, output) -> None:
        if inputs and isinstance(output, Tensor) and output.dim() == 2 and output.shape[1] == self.num_classes:
            self._last = (inputs[0].detach(), output.detach())

    def on_test_batch_end(self, trainer, pl_module, outputs, batch, batch_idx: int, dataloader_idx: int = 0) -> None:
        captured, self._last = self._last, None
        if self.subset is None or captured is None or dataloader_idx:
            return
        images, scores = captured
        labels = batch[1]
        if len(images) != len(labels) or len(scores) != len(labels):
            return
        confidence, predicted = probabilities(scores).max(1)
        positions = torch.arange(self._seen, self._seen + len(labels))
        self._seen += len(labels)
        columns = {"images": images, "label": labels, "predicted": predicted, "confidence": confidence.float()}
        self.subset.add(positions, **{name: column.cpu() for name, column in columns.items()})

    def _remove_hook(self) -> None:
        if self._hook is not None:
            self._hook.remove()
            self._hook = None

    def on_exception(self, trainer, pl_module, exception: BaseException) -> None:
        self._remove_hook()

    def on_test_epoch_end(self, trainer, pl_module) -> None:
        self._remove_hook()
        if self.subset is None:
            return
        rows, device = self.subset.columns, pl_module.device
        if not rows:  # nothing captured on this rank: empty columns of the right kinds, for the collectives
            shape = tuple(getattr(trainer.datamodule, "input_shape", None) or pl_module.hparams.get("input_shape", ()))
            rows = {"images": torch.zeros(0, *shape), "confidence": torch.zeros(0)}
            rows.update({name: torch.zeros(0, dtype=torch.long) for name in ("label", "predicted", "position")})
        counts = confusion_matrix(rows["label"], rows["predicted"], self.num_classes).to(device)
        counts = trainer.strategy.reduce(counts.float(), reduce_op="sum").round().long().cpu().numpy()
        wrong = (rows["label"] != rows["predicted"]).nonzero().squeeze(1)
        worst = wrong[rows["confidence"][wrong].argsort(descending=True)[: self.num_misclassified]]
        columns = ("images", "label", "predicted", "confidence", "position")
        mistakes = [rows[name][worst].to(device) for name in columns]
        ranks = torch.full((len(worst),), trainer.global_rank, device=device)
        gathered = dict(zip((*columns, "rank"), (t.cpu() for t in gather_shards(pl_module, *mistakes, ranks))))
        if trainer.is_global_zero:
            self._draw(trainer, counts, gathered)

    def _draw(self, trainer, counts: np.ndarray, mistakes: dict[str, Tensor]) -> None:
        total = int(counts.sum())
        if total == 0:
            rank_zero_warn("ClassifierPictures: the test step never called the model on its batches; no pictures")
            return
        names = class_names(trainer.datamodule, self.num_classes)
        title = f"{total} test samples, accuracy {np.trace(counts) / total:.4f}"
        confusion, per_class = draw_confusion(counts, names, title), draw_per_class(counts, names, title)
        publish(trainer, "test/confusion_matrix", confusion, confusion_table(counts, names), self.dpi)
        publish(trainer, "test/per_class_accuracy", per_class, per_class_table(counts, names), self.dpi)
        order = mistakes["confidence"].argsort(descending=True)[: self.num_misclassified]
        mistakes = {name: column[order] for name, column in mistakes.items()}
        fig = draw_mistakes(mistakes, names, *data_statistics(trainer), f"most confident mistakes of {total} test samples")
        fields = ("rank", "position", "label", "predicted", "confidence")
        rows = [[r, s, t, names[t], p, names[p], round(c, 6)] for r, s, t, p, c in zip(*(mistakes[f].tolist() for f in fields))]
        table = Table(["rank", "sample", "true", "true_name", "predicted", "predicted_name", "confidence"], rows)
        publish(trainer, "test/misclassified", fig, table, self.dpi)


def draw_mistakes(mistakes: dict[str, Tensor], names: list[str], mean, std, title: str):
    """A grid of images, each titled ``true -> predicted`` with the predicted class's probability."""
    n = len(mistakes["label"])
    if n == 0:
        fig = figure(4.0, 1.0, layout=None)
        fig.text(0.5, 0.5, f"no {title.removeprefix('most confident ')}", ha="center", va="center", fontsize=9)
        return fig
    titles = [
        f"{names[t]} -> {names[p]}\n{c:.0%}"
        for t, p, c in zip(*(mistakes[name].tolist() for name in ("label", "predicted", "confidence")))
    ]
    return tile_grid(displayable(mistakes["images"], mean, std), titles, math.ceil(math.sqrt(n)), title, ["darkred"] * n)
