"""Feature-space kNN: how well a trained model's penultimate features separate the classes."""

from typing import Literal

import lightning as L
import torch
from lightning.pytorch.callbacks import Callback
from torch import Tensor, nn

from datamodules.base import gather_shards
from modules.knn_search import Distance, nearest_neighbours, vote


class FeatureKNN(Callback):
    """After every validation epoch, logs ``val/knn_acc``: the accuracy of a k-nearest-neighbour
    vote in the model's penultimate feature space, training samples voting for validation samples.

    The features are the input of the model's last ``nn.Linear`` (its classifier head), taken with
    a forward pre-hook, so any classifier here works unchanged. The embedded training samples are
    the first ``max_train_samples`` of the training loader (seeded, so the same ones every
    epoch). Under DDP each rank embeds its shards; the training features are gathered and each
    rank scores its validation shard, with the correct counts summed over ranks.

    Args:
        k: Neighbours that vote.
        distance: ``cosine`` (the usual choice for learned features), ``l2`` or ``l1``.
        weights: ``uniform`` or ``distance`` (1 / distance) votes.
        max_train_samples: Training samples embedded per epoch (all ranks together); fewer is faster.
        chunk_mb: Memory budget of one block of distances, in MiB.
    """

    def __init__(
        self,
        k: int = 20,
        distance: Distance = "cosine",
        weights: Literal["uniform", "distance"] = "uniform",
        max_train_samples: int = 10000,
        chunk_mb: float = 256.0,
    ) -> None:
        if k < 1:
            raise ValueError(f"FeatureKNN k={k}: a vote needs at least one neighbour")
        self.k, self.distance, self.weights = k, distance, weights
        self.max_train_samples = max_train_samples
        self.budget = int(chunk_mb * 2**20)

    @torch.no_grad()
    def embed(self, trainer: L.Trainer, module: L.LightningModule, loader, limit: float) -> tuple[Tensor, Tensor]:
        """Penultimate features ``(n, F)`` and labels ``(n,)`` of up to ``limit`` samples of ``loader``."""
        heads = [m for m in module.modules() if isinstance(m, nn.Linear)]
        if not heads:
            raise ValueError(f"FeatureKNN needs a model with an nn.Linear head; {type(module).__name__} has none")
        captured: list[Tensor] = []
        hook = heads[-1].register_forward_pre_hook(lambda _, inputs: captured.append(inputs[0].flatten(1)))
        labels, seen = [], 0
        try:
            for batch in loader:
                if seen >= limit:
                    break
                batch = tuple(t[: int(min(limit - seen, len(t)))].to(module.device) for t in batch)
                images, batch_labels = trainer.datamodule.on_after_batch_transfer(batch, 0)  # normalised, not augmented
                module(images)
                labels.append(batch_labels)
                seen += len(batch_labels)
        finally:
            hook.remove()
        return torch.cat(captured).float(), torch.cat(labels)

    def on_validation_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.sanity_checking:
            return
        datamodule = trainer.datamodule
        per_rank = -(-self.max_train_samples // trainer.world_size)
        memory, memory_labels = gather_shards(pl_module, *self.embed(trainer, pl_module, datamodule.train_dataloader(), per_rank))
        features, labels = self.embed(trainer, pl_module, datamodule.val_dataloader(), float("inf"))
        distances, indices = nearest_neighbours(features, memory, min(self.k, len(memory)), self.distance, self.budget)
        num_classes = getattr(datamodule, "num_classes", int(memory_labels.max()) + 1)
        scores = vote(distances, memory_labels[indices], num_classes, self.weights, self.distance)
        correct = trainer.strategy.reduce((scores.argmax(1) == labels).sum().float(), reduce_op="sum")
        total = trainer.strategy.reduce(torch.tensor(float(len(labels)), device=pl_module.device), reduce_op="sum")
        pl_module.log("val/knn_acc", correct / total)
