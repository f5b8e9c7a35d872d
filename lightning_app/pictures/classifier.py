"""Where a classifier fails: its confusion matrix, per-class accuracy and most confident mistakes, at test end."""

import math

import numpy as np
import torch
from lightning.pytorch.utilities import rank_zero_warn
from torch import Tensor
from torchmetrics.classification import MulticlassConfusionMatrix

from lightning_app.pictures.base import PictureCallback, class_names, data_statistics, displayable, model_classes, publish
from lightning_app.pictures.confusion import confusion_table, draw_confusion, draw_per_class, per_class_table
from lightning_app.pictures.figures import Table, figure, tile_grid
from lightning_app.pictures.subset import SeededSubset
from datamodules.base import gather_shards


def probabilities(scores: Tensor) -> Tensor:
    """Class probabilities of ``(B, K)`` scores: kept when they already are (kNN's vote shares), else softmax."""
    scores = scores.float()  # bf16 under mixed precision
    if bool((scores >= 0).all()) and torch.allclose(scores.sum(1), torch.ones(len(scores), device=scores.device)):
        return scores
    return scores.softmax(1)


class ClassifierPictures(PictureCallback):
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

    stage, nothing = "test", "no classifier pictures"

    def __init__(self, max_samples: int = 2000, num_misclassified: int = 25, seed: int = 0, dpi: int = 100) -> None:
        if max_samples < 1 or num_misclassified < 0 or dpi < 1:
            raise ValueError(
                f"ClassifierPictures: max_samples={max_samples} (>= 1), num_misclassified={num_misclassified} (>= 0) "
                f"and dpi={dpi} (>= 1) are out of range"
            )
        self.max_samples, self.num_misclassified, self.seed, self.dpi = max_samples, num_misclassified, seed, dpi
        self.subset: SeededSubset | None = None
        self.mistakes: SeededSubset | None = None
        self._hook = None
        self._last: tuple[Tensor, Tensor] | None = None
        self._seen = 0

    @staticmethod
    def missing(pl_module, datamodule) -> str | None:
        return None if model_classes(pl_module, datamodule) else "no `num_classes` (not a classifier)"

    def on_test_epoch_start(self, trainer, pl_module) -> None:
        self.subset = None
        if not self.active:
            return
        self.num_classes = model_classes(pl_module, trainer.datamodule)
        size, seed = math.ceil(self.max_samples / trainer.world_size), self.seed + trainer.global_rank
        # The mistakes among the subset are among the `size` mistakes with the smallest keys: only
        # their images are kept, not every image of the subset.
        self.subset, self.mistakes = SeededSubset(size, seed), SeededSubset(size, seed)
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
        labels, predicted, confidence = labels.cpu(), predicted.cpu(), confidence.cpu()
        self.subset.add(positions, label=labels, predicted=predicted)
        wrong = (predicted != labels).nonzero().squeeze(1)
        self.mistakes.add(
            positions[wrong], images=images[wrong.to(images.device)].cpu(),
            label=labels[wrong], predicted=predicted[wrong], confidence=confidence[wrong],
        )  # fmt: skip

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
        rows, mistakes, device = self.subset.rows(), self.mistakes.rows(), pl_module.device
        if not mistakes:  # none on this rank: empty columns of the right kinds, for the collectives
            shape = tuple(getattr(trainer.datamodule, "input_shape", None) or pl_module.hparams.get("input_shape", ()))
            mistakes = {"images": torch.zeros(0, *shape), "confidence": torch.zeros(0)}
            mistakes.update({name: torch.zeros(0, dtype=torch.long) for name in ("label", "predicted", "position")})
        labels, predicted = (rows.get(name, torch.zeros(0, dtype=torch.long)) for name in ("label", "predicted"))
        confusion = MulticlassConfusionMatrix(self.num_classes).to(device)
        confusion.update(predicted.to(device), labels.to(device))
        counts = confusion.compute().cpu().numpy()  # summed over the ranks under DDP
        in_subset = torch.isin(mistakes["position"], rows["position"]) if rows else torch.zeros(0, dtype=torch.bool)
        chosen = in_subset.nonzero().squeeze(1)
        worst = chosen[mistakes["confidence"][chosen].argsort(descending=True)[: self.num_misclassified]]
        columns = ("images", "label", "predicted", "confidence", "position")
        shards = [mistakes[name][worst].to(device) for name in columns]
        ranks = torch.full((len(worst),), trainer.global_rank, device=device)
        gathered = dict(zip((*columns, "rank"), (t.cpu() for t in gather_shards(pl_module, *shards, ranks))))
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
