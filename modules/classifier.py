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
    ``test/loss``, ``test/acc``. Epoch values are sums over every rank, so a multi-device run
    reports the accuracy of the whole split. Validation and test use torchmetrics; the training
    step keeps three running sums instead, since a metric object's update costs more than the
    small models' whole step on a CPU.
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
        for stage in ("val", "test"):
            setattr(self, f"{stage}_acc", MulticlassAccuracy(num_classes, average="micro", validate_args=False))
            setattr(self, f"{stage}_loss", MeanMetric())
        self.val_acc_best = MaxMetric()
        self.register_buffer("train_sums", torch.zeros(3), persistent=False)  # correct, loss x samples, samples

    def loss(self, logits: Tensor, labels: Tensor) -> Tensor:
        if self.loss_name == "hinge":
            return hinge_loss(logits, labels)
        return F.cross_entropy(logits, labels, label_smoothing=self.label_smoothing)

    def training_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> Tensor:
        images, labels = batch
        logits = self(images)
        loss = self.loss(logits, labels)
        with torch.no_grad():  # device-side sums: no host sync per step
            correct = (logits.argmax(dim=-1) == labels).sum().float()
            n = len(labels)
            self.train_sums += torch.stack([correct, loss.float() * n, torch.full_like(correct, n)])
        # Loggers receive step values every `log_every_n_steps` steps, and a `self.log` call costs
        # more than a small model's whole step on a CPU: log just those steps. The value is this
        # rank's batch alone (syncing it would cost a collective per step).
        if (self.trainer.global_step + 1) % self.trainer.log_every_n_steps == 0:
            self.log("train/loss_step", loss.detach(), prog_bar=True)
        return loss

    def on_train_epoch_end(self) -> None:
        correct, loss_sum, seen = self.trainer.strategy.reduce(self.train_sums, reduce_op="sum")
        self.log_dict({"train/acc": correct / seen, "train/loss": loss_sum / seen})
        self.train_sums.zero_()

    def _evaluate(self, batch: tuple[Tensor, Tensor], stage: str) -> None:
        images, labels = batch
        logits = self(images)
        accuracy, mean_loss = getattr(self, f"{stage}_acc"), getattr(self, f"{stage}_loss")
        accuracy.update(logits, labels)
        mean_loss.update(self.loss(logits, labels), weight=len(labels))
        self.log(f"{stage}/acc", accuracy, prog_bar=True)
        self.log(f"{stage}/loss", mean_loss)

    def validation_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> None:
        self._evaluate(batch, "val")

    def test_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> None:
        self._evaluate(batch, "test")

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
