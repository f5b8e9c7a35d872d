"""The training step every gradient-trained classifier shares: loss, accuracy, logging."""

from typing import Literal

import lightning as L
import torch
import torch.nn.functional as F
from torch import Tensor
from torchmetrics import MaxMetric, MeanMetric
from torchmetrics.classification import MulticlassAccuracy


def hinge_loss(scores: Tensor, targets: Tensor, margin: float = 1.0) -> Tensor:
    """Multiclass SVM loss: sum over wrong classes j of max(0, s_j - s_y + margin), batch mean."""
    correct = scores.gather(1, targets[:, None])  # (B, 1)
    margins = (scores - correct + margin).clamp(min=0).scatter(1, targets[:, None], 0.0)  # (B, K)
    return margins.sum(dim=1).mean()


class Classifier(L.LightningModule):
    """Base of the classifiers: subclasses build layers in ``__init__`` and define ``forward``.

    Metrics: ``train/loss``, ``train/acc``, ``val/loss``, ``val/acc``, ``val/acc_best``,
    ``test/loss``, ``test/acc``. Epoch values are torchmetrics states, summed over every rank
    before they are computed, so a multi-device run reports the accuracy of the whole split.
    """

    def __init__(
        self,
        num_classes: int,
        loss: Literal["cross_entropy", "hinge"] = "cross_entropy",
        label_smoothing: float = 0.0,
    ) -> None:
        super().__init__()
        self.loss_name = loss
        self.label_smoothing = label_smoothing
        for stage in ("train", "val", "test"):
            setattr(self, f"{stage}_acc", MulticlassAccuracy(num_classes, average="micro", validate_args=False))
            setattr(self, f"{stage}_loss", MeanMetric())
        self.val_acc_best = MaxMetric()

    def loss(self, logits: Tensor, labels: Tensor) -> Tensor:
        if self.loss_name == "hinge":
            return hinge_loss(logits, labels)
        return F.cross_entropy(logits, labels, label_smoothing=self.label_smoothing)

    def _step(self, batch: tuple[Tensor, Tensor], stage: str) -> Tensor:
        images, labels = batch
        logits = self(images)
        loss = self.loss(logits, labels)
        accuracy, mean_loss = getattr(self, f"{stage}_acc"), getattr(self, f"{stage}_loss")
        accuracy.update(logits, labels)
        mean_loss.update(loss.detach(), weight=len(labels))
        self.log(f"{stage}/acc", accuracy, on_step=False, on_epoch=True, prog_bar=stage != "train")
        self.log(f"{stage}/loss", mean_loss, on_step=False, on_epoch=True)
        return loss

    def training_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> Tensor:
        loss = self._step(batch, "train")
        # The per-step value is this rank's batch alone: syncing it would cost a collective per step.
        self.log("train/loss_step", loss.detach(), on_step=True, on_epoch=False, prog_bar=True)
        return loss

    def validation_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> None:
        self._step(batch, "val")

    def test_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> None:
        self._step(batch, "test")

    def predict_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> Tensor:
        return self(batch[0]).argmax(dim=-1)

    def on_train_start(self) -> None:
        self.val_acc_best.reset()  # forget the sanity check's accuracy

    def on_validation_epoch_end(self) -> None:
        if not self.trainer.sanity_checking:
            self.val_acc_best.update(self.val_acc.compute())
            self.log("val/acc_best", self.val_acc_best.compute())

    def configure_optimizers(self) -> torch.optim.Optimizer:
        """Used only when the config names no optimizer (the CLI's ``optimizer:`` replaces it)."""
        return torch.optim.Adam(self.parameters(), lr=1.0e-3)
