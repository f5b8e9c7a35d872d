"""The k-nearest-neighbour classifier: memorise the training set, then vote among the k closest.

The search (``modules/knn_search.py``) is exact, in chunks bounded by ``chunk_mb``. Tie-breaks,
deterministic and independent of chunk sizes: neighbours at exactly equal distance are taken
in memory order (the first memorised wins); classes with equal votes go to the smallest class
index, as in scikit-learn's ``KNeighborsClassifier``.
"""

import math
from typing import Literal

import lightning as L
import torch
from torch import Tensor
from torchmetrics.classification import MulticlassAccuracy

from datamodules.base import gather_shards
from modules.knn_l2 import MemoryIndex
from modules.knn_search import Distance, nearest_neighbours, vote


class KNN(L.LightningModule):
    """k-nearest-neighbour classifier over flattened, normalised images; no parameters, no optimizer.

    A training epoch memorises every batch (O(1) per sample); validation, test and predict
    search the memory (O(N) per query). Under DDP each rank memorises its shard and the shards
    are gathered into the whole memory once, at the end of the pass: queries are then answered
    locally with no per-batch collective (evaluation shards differ in length, so a per-batch
    collective could deadlock), and the checkpoint holds the whole memory. The gathered memory is
    put back in the single-process order (``BatchLoader`` deals a shuffled permutation out to
    ranks in turn), so predictions, ties included, equal a one-device run's whenever the device
    count divides the training split (else the loader drops the remainder, and warns so).

    Args:
        input_shape: Shape of one input, ``(C, H, W)``; set from the data module.
        num_classes: Number of classes; set from the data module.
        k: Neighbours that vote.
        distance: ``l1`` (sum of absolute differences), ``l2`` (Euclidean) or ``cosine`` (1 - cosine similarity).
        weights: ``uniform`` (one vote each) or ``distance`` (votes weighted by 1 / distance).
        chunk_mb: Memory budget of one chunk of queries' distances to every memorised row, in MiB
            (4 bytes per query and memorised row; for L2, 4 in bfloat16 or 8 in float32, in three quarters of it).
    """

    def __init__(
        self,
        input_shape: tuple[int, ...] = (1, 28, 28),
        num_classes: int = 10,
        k: int = 3,
        distance: Distance = "l2",
        weights: Literal["uniform", "distance"] = "uniform",
        chunk_mb: float = 256.0,
    ) -> None:
        super().__init__()
        if k < 1:
            raise ValueError(f"k={k}: a vote needs at least one neighbour, set --model.k to 1 or more")
        if chunk_mb <= 0:
            raise ValueError(f"chunk_mb={chunk_mb} must be positive")
        self.save_hyperparameters()
        self.automatic_optimization = False
        # Registered buffers: the memory goes into the checkpoint and to the device with the module.
        self.register_buffer("memory", torch.zeros(0, math.prod(input_shape)))  # (N, C*H*W)
        self.register_buffer("memory_labels", torch.zeros(0, dtype=torch.long))  # (N,)
        self.pending: list[tuple[Tensor, Tensor]] = []
        self.index: MemoryIndex | None = None  # what the L2 search derives from the memory, built on first use
        self.budget = int(chunk_mb * 2**20)
        self.val_acc = MulticlassAccuracy(num_classes, average="micro", validate_args=False)
        self.test_acc = MulticlassAccuracy(num_classes, average="micro", validate_args=False)

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs) -> None:
        # A checkpoint's memory has its own length: the buffers take its shape before the copy. The test
        # after fit reloads the memory just memorised: a buffer that already holds the loaded values keeps
        # them, and they are not copied again (a copy into fresh memory took 0.44 s for MNIST's, docs/speed.md).
        for name in ("memory", "memory_labels"):
            loaded, current = state_dict.get(prefix + name), getattr(self, name)
            if not isinstance(loaded, Tensor):
                continue  # missing or of another type: the module's own load reports it
            if same_values(loaded, current):
                state_dict = {**state_dict, prefix + name: current}  # copied onto itself: nothing moves
            else:
                setattr(self, name, torch.empty_like(loaded, device=current.device))
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def forward(self, images: Tensor) -> Tensor:
        """Normalised class scores (vote shares) ``(B, num_classes)`` for images ``(B, C, H, W)``."""
        if len(self.memory) == 0:
            raise RuntimeError(
                "KNN has nothing memorised: run `fit` first, or pass `--ckpt_path` a checkpoint written by `fit`"
            )
        hp = self.hparams
        if self.index is not None and self.index.memory is not self.memory:  # memorised, loaded or moved since
            if same_values(self.index.memory, self.memory):  # the same memory reloaded (the test after fit)
                self.index.memory = self.memory  # what the index derived from it still holds: 0.2 s not rebuilt
            else:
                self.index = None
        if self.index is None:
            self.index = MemoryIndex(self.memory) if hp.distance == "l2" else None
        memory = self.index if self.index is not None else self.memory
        distances, indices = nearest_neighbours(images.flatten(1).float(), memory, hp.k, hp.distance, self.budget)
        scores = vote(distances, self.memory_labels[indices], hp.num_classes, hp.weights, hp.distance)
        return scores / scores.sum(1, keepdim=True)

    def on_train_epoch_start(self) -> None:
        self.pending = []  # each epoch memorises afresh: a second epoch re-memorises the same split

    def training_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> None:
        images, labels = batch
        self.pending.append((images.flatten(1).float(), labels))
        # `global_step` counts optimizer steps, and checkpoints are written only when it moves:
        # stepping Lightning's stand-in for "no optimizer" (it changes nothing) counts each batch.
        self.optimizers().step()

    def _memorise(self) -> None:
        """Concatenates the memorised batches and, under DDP, gathers every rank's shard."""
        if not self.pending:
            return
        memory = torch.cat([images for images, _ in self.pending])
        labels = torch.cat([labels for _, labels in self.pending])
        self.pending = []
        self.memory, self.memory_labels = gather_shards(self, memory, labels)

    def on_validation_start(self) -> None:
        self._memorise()  # validation after a training epoch runs before on_train_epoch_end

    def on_train_epoch_end(self) -> None:
        self._memorise()

    def _evaluate(self, batch: tuple[Tensor, Tensor], accuracy: MulticlassAccuracy, name: str) -> None:
        images, labels = batch
        accuracy.update(self(images).argmax(1), labels)
        self.log(name, accuracy, on_step=False, on_epoch=True, prog_bar=True)

    def validation_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> None:
        if self.trainer.sanity_checking and len(self.memory) == 0:
            return  # the sanity check runs before anything is memorised
        self._evaluate(batch, self.val_acc, "val/acc")

    def test_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> None:
        self._evaluate(batch, self.test_acc, "test/acc")

    def predict_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> Tensor:
        return self(batch[0]).argmax(1)

    def setup(self, stage: str) -> None:
        precision = str(self.trainer.precision)
        if precision.endswith("-true") and precision != "32-true":  # the module, memory included, cast whole
            raise ValueError(
                f"--trainer.precision {precision}: KNN memorises and searches float32 images (the search's error "
                "bounds are float32's); run it with --trainer.precision 32-true (the default) or a mixed precision"
            )
        # DistributedDataParallel refuses a module without trainable parameters, and kNN has no
        # gradients to synchronise: keep the plain module; the ranks meet only in `_memorise`.
        if stage == "fit" and hasattr(self.trainer.strategy, "configure_ddp"):
            self.trainer.strategy.configure_ddp = lambda: None

    def teardown(self, stage: str) -> None:
        if self.index is not None:  # the search's buffer (up to chunk_mb) serves every batch of a run, then goes
            self.index.release()

    def configure_optimizers(self) -> None:
        return None


def same_values(a: Tensor, b: Tensor) -> bool:
    """Equal shapes, types, devices and every value (a pass over both: 0.03 s for MNIST's memory)."""
    return a.shape == b.shape and a.dtype == b.dtype and a.device == b.device and torch.equal(a, b)
