"""Which neighbours a k-nearest-neighbour classifier voted with, for a few test queries."""

import torch
from torch import Tensor

from lightning_app.pictures.base import PictureCallback, class_names, data_statistics, displayable, model_classes, publish
from lightning_app.pictures.figures import Table, tile_grid
from modules.knn_search import nearest_neighbours

BUDGET = 256 * 2**20  # bytes of distances per chunk of the search, when the model states none


class KNNNeighbours(PictureCallback):
    """At the end of every test: the first ``num_queries`` test samples, each followed by its
    nearest memorised samples with their labels and distances (``knn/neighbours``, a PNG and a
    CSV of every neighbour). The search is the model's own (its ``memory``, ``k`` and
    ``distance``), run again for these few queries on rank 0, which holds the whole memory.

    Args:
        num_queries: Test samples shown, the first of the test split.
        max_neighbours: Neighbours drawn per query (the CSV lists all k).
        dpi: Pixels per inch of the PNG file.
    """

    stage, nothing = "test", "no neighbour pictures"

    def __init__(self, num_queries: int = 8, max_neighbours: int = 10, dpi: int = 100) -> None:
        if num_queries < 1 or max_neighbours < 1 or dpi < 1:
            raise ValueError(
                f"KNNNeighbours: num_queries={num_queries}, max_neighbours={max_neighbours} and dpi={dpi} must be >= 1"
            )
        self.num_queries, self.max_neighbours, self.dpi = num_queries, max_neighbours, dpi
        self.queries: list[tuple[Tensor, Tensor]] = []

    @staticmethod
    def missing(pl_module, datamodule) -> str | None:
        hparams = getattr(pl_module, "hparams", {})
        if not all(isinstance(getattr(pl_module, name, None), Tensor) for name in ("memory", "memory_labels")):
            return "no `memory` and `memory_labels` (not a kNN)"
        return None if "k" in hparams and "distance" in hparams else "no `k` and `distance` hyperparameters"

    def on_test_epoch_start(self, trainer, pl_module) -> None:
        self.queries = []

    def on_test_batch_start(self, trainer, pl_module, batch, batch_idx: int, dataloader_idx: int = 0) -> None:
        wanted = self.num_queries - sum(len(labels) for _, labels in self.queries)
        if self.active and trainer.is_global_zero and wanted > 0 and dataloader_idx == 0:
            self.queries.append((batch[0][:wanted].detach().clone(), batch[1][:wanted].detach().clone()))

    @torch.no_grad()
    def on_test_end(self, trainer, pl_module) -> None:
        if not self.active or not self.queries:
            return
        images, labels = (torch.cat(parts) for parts in zip(*self.queries))
        memory, hparams = pl_module.memory, pl_module.hparams
        k = min(hparams["k"], len(memory))
        budget = getattr(pl_module, "budget", BUDGET)
        predicted = pl_module(images).argmax(1)  # also builds the model's L2 index, searched again here
        searched = pl_module.index if pl_module.index is not None else memory
        distances, indices = nearest_neighbours(images.flatten(1).float(), searched, k, hparams["distance"], budget)
        if hparams["distance"] == "l2":
            distances = distances.clamp(min=0).sqrt()  # the search ranks by squared distance
        largest = int(torch.cat([labels, pl_module.memory_labels]).max())
        names = class_names(trainer.datamodule, model_classes(pl_module, trainer.datamodule) or largest + 1)
        neighbours = memory[indices].view(*indices.shape, *images.shape[1:]).cpu()  # (Q, k, C, H, W)
        fig = draw_neighbours(
            images.cpu(), labels.cpu(), predicted.cpu(), neighbours[:, : self.max_neighbours],
            pl_module.memory_labels[indices].cpu(), distances.cpu(), names, data_statistics(trainer),
            f"{len(images)} test queries and their nearest of {len(memory)} memorised ({hparams['distance']}, k={k})",
        )  # fmt: skip
        rows = [
            [q, labels[q].item(), predicted[q].item(), j + 1, indices[q, j].item(),
             pl_module.memory_labels[indices[q, j]].item(), round(distances[q, j].item(), 6)]
            for q in range(len(images)) for j in range(k)
        ]  # fmt: skip
        table = Table(["query", "label", "predicted", "neighbour", "memory_index", "neighbour_label", "distance"], rows)
        publish(trainer, "knn/neighbours", fig, table, self.dpi)


def draw_neighbours(images, labels, predicted, neighbours, neighbour_labels, distances, names, statistics, title: str):
    """One row per query: the query (true and voted class, red when wrong), then its neighbours, nearest first."""
    queries, shown = neighbours.shape[:2]
    tiles = torch.cat([images[:, None], neighbours], dim=1).flatten(0, 1)  # (Q * (1 + shown), C, H, W)
    titles, colours = [], []
    for q in range(queries):
        titles.append(f"query {names[labels[q]]}\nvoted {names[predicted[q]]}")
        colours.append("black" if labels[q] == predicted[q] else "darkred")
        titles += [f"{names[neighbour_labels[q, j]]}\nd={distances[q, j]:.3g}" for j in range(shown)]
        colours += ["dimgray"] * shown
    return tile_grid(displayable(tiles, *statistics), titles, shown + 1, title, colours)
