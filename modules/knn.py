"""The k-nearest-neighbour classifier: memorise the training set, then vote among the k closest.

Tie-breaks, both deterministic and independent of chunk sizes:
- neighbours at exactly equal distance: the one memorised first wins (the search ranks
  ``(distance, memory index)`` pairs packed into one int64 key wherever the k-th and
  (k+1)-th distances are equal);
- classes with equal votes: the smallest class index wins (``argmax`` takes the first
  maximum), as in scikit-learn's ``KNeighborsClassifier``.
"""

import math
from typing import Literal

import lightning as L
import torch
import torch.nn.functional as F
from torch import Tensor
from torchmetrics.classification import MulticlassAccuracy

Distance = Literal["l1", "l2", "cosine"]
BYTES_PER_PAIR = 12  # one float32 distance and one int64 sort key per (query, memory row) pair


def pairwise_distances(queries: Tensor, memory: Tensor, distance: Distance, memory_sq: Tensor | None = None) -> Tensor:
    """``(Q, D)`` x ``(M, D)`` -> ``(Q, M)``: L1, 1 - cosine, or for L2 the squared distance less
    ``|q|^2`` (a per-query constant, so the ranking is the L2 ranking; add it back to the k kept).
    ``memory_sq``: the rows' squared norms ``(M,)``, when already computed."""
    if distance == "l1":
        return torch.cdist(queries, memory, p=1)
    if distance == "cosine":
        return torch.addmm(queries.new_ones(()), F.normalize(queries, dim=1), F.normalize(memory, dim=1).T, alpha=-1)
    # |q - m|^2 - |q|^2 = |m|^2 - 2 q.m: one matrix product instead of a (Q, M, D) difference.
    memory_sq = torch.linalg.vector_norm(memory, dim=1).square() if memory_sq is None else memory_sq
    return torch.addmm(memory_sq[None], queries, memory.T, alpha=-2)


def _keys(values: Tensor, indices: Tensor) -> Tensor:
    """Packs float32 values and int indices into int64 keys that sort by (value, index)."""
    bits = values.add(0.0).view(torch.int32)  # + 0.0 turns -0.0 into 0.0
    bits = bits ^ ((bits >> 31) & 0x7FFFFFFF)  # negative floats: flip to keep the int order = float order
    return (bits.to(torch.int64) << 32) | indices


def _block_top_k(block: Tensor, k: int, offset: int) -> Tensor:
    """The ``k`` smallest ``(value, offset + column)`` keys of each row of ``block``, ``(q, k)``."""
    values, columns = block.topk(min(k + 1, block.shape[1]), dim=1, largest=False, sorted=True)
    keys = _keys(values[:, :k], columns[:, :k] + offset)
    if values.shape[1] > k:
        # Where the (k+1)-th value equals the k-th, topk may have kept either: redo those rows by key.
        tied = (values[:, k] == values[:, k - 1]).nonzero().squeeze(1)
        if len(tied):
            columns = torch.arange(offset, offset + block.shape[1], device=block.device)
            keys[tied] = _keys(block[tied], columns.expand(len(tied), -1)).topk(k, 1, largest=False).values
    return keys


def nearest_neighbours(
    queries: Tensor, memory: Tensor, k: int, distance: Distance, budget_bytes: int
) -> tuple[Tensor, Tensor]:
    """The ``k`` nearest memory rows of every query: ``(distances, indices)``, both ``(Q, k)``, nearest first.

    Distances are computed for blocks of queries x memory rows that fit ``budget_bytes``
    (``BYTES_PER_PAIR`` each); a block's top-k merges into a running top-k, so no ``(Q, M)``
    matrix exists at once. L2 distances come back squared.
    """
    if queries.shape[1:] != memory.shape[1:]:
        raise ValueError(
            f"queries have {queries.shape[1]} features but the memory rows have {memory.shape[1]}: "
            "query with data of the shape that was memorised"
        )
    if not 1 <= k <= len(memory):
        raise ValueError(f"k={k} needs 1 <= k <= {len(memory)} (the memorised samples): lower k or memorise more")
    if len(memory) >= 2**31:
        raise ValueError(f"{len(memory)} memory rows: the search packs indices in 31 bits")
    block_rows = min(len(memory), max(k, budget_bytes // BYTES_PER_PAIR))
    query_rows = max(1, budget_bytes // (BYTES_PER_PAIR * block_rows))
    memory_sq = torch.linalg.vector_norm(memory, dim=1).square() if distance == "l2" else None
    all_distances, all_indices = [], []
    for query_chunk in queries.split(query_rows):
        best = None  # (q, k) int64 keys
        for start in range(0, len(memory), block_rows):
            stop = start + block_rows
            block = pairwise_distances(
                query_chunk, memory[start:stop], distance, None if memory_sq is None else memory_sq[start:stop]
            )
            keys = _block_top_k(block, k, start)
            best = keys if best is None else torch.cat([best, keys], 1).topk(k, 1, largest=False).values
        best = best.sort(dim=1).values
        bits = (best >> 32).to(torch.int32)
        values = (bits ^ ((bits >> 31) & 0x7FFFFFFF)).view(torch.float32)
        if distance == "l2":
            values = values + torch.linalg.vector_norm(query_chunk, dim=1, keepdim=True).square()
        all_distances.append(values.clamp_min(0.0))
        all_indices.append(best & 0xFFFFFFFF)
    return torch.cat(all_distances), torch.cat(all_indices)


def vote(
    distances: Tensor, labels: Tensor, num_classes: int, weights: Literal["uniform", "distance"], distance: Distance
) -> Tensor:
    """Class scores ``(Q, num_classes)`` from the neighbours' ``(Q, k)`` distances and labels.

    ``distance`` weights are 1 / distance (L2: the root of the squared distance); a query with
    neighbours at distance 0 counts those alone, as scikit-learn does.
    """
    if weights == "uniform":
        votes = torch.ones_like(distances)
    else:
        d = distances.sqrt() if distance == "l2" else distances
        exact = d == 0
        votes = torch.where(exact.any(1, keepdim=True), exact.to(d.dtype), 1.0 / d)
    return torch.zeros(len(labels), num_classes, device=labels.device).scatter_add_(1, labels, votes)


def gather_shards(module: L.LightningModule, *shards: Tensor) -> tuple[Tensor, ...]:
    """Under DDP, every rank's ``(n_r, ...)`` shards joined in the single-process order; else unchanged.

    ``BatchLoader`` deals a permutation out to the ranks in turn, so rank r's j-th sample was
    sample ``j * world + r``: the gathered rows are sorted by that position. Shards may differ in length.
    """
    world = module.trainer.world_size
    if world == 1:
        return shards
    device = shards[0].device
    lengths = module.all_gather(torch.tensor(len(shards[0]), device=device))  # (W,)
    longest = int(lengths.max())
    position = torch.arange(longest, device=device)[None] * world + torch.arange(world, device=device)[:, None]  # (W, L)
    valid = torch.arange(longest, device=device)[None] < lengths[:, None]  # (W, L)
    order = position[valid].argsort()
    gathered = []
    for shard in shards:
        padding = [0, 0] * (shard.dim() - 1) + [0, longest - len(shard)]
        gathered.append(module.all_gather(F.pad(shard, padding))[valid][order])  # (W, L, ...) -> (sum n_r, ...)
    return tuple(gathered)


class KNN(L.LightningModule):
    """k-nearest-neighbour classifier over flattened, normalised images; no parameters, no optimizer.

    A training epoch memorises every batch (O(1) per sample); validation, test and predict
    search the memory (O(N) per query). Under DDP each rank memorises its shard and the shards
    are gathered into the whole memory once, at the end of the pass: queries are then answered
    locally with no per-batch collective (evaluation shards differ in length, so a per-batch
    collective could deadlock), and the checkpoint holds the whole memory. The gathered memory is
    put back in the single-process order (``BatchLoader`` deals a shuffled permutation out to
    ranks in turn), so predictions, ties included, equal a one-device run's.

    Args:
        input_shape: Shape of one input, ``(C, H, W)``; set from the data module.
        num_classes: Number of classes; set from the data module.
        k: Neighbours that vote.
        distance: ``l1`` (sum of absolute differences), ``l2`` (Euclidean) or ``cosine`` (1 - cosine similarity).
        weights: ``uniform`` (one vote each) or ``distance`` (votes weighted by 1 / distance).
        chunk_mb: Memory budget of one block of distances and sort keys, in MiB (12 bytes per query-memory pair).
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
        self.val_acc = MulticlassAccuracy(num_classes, average="micro", validate_args=False)
        self.test_acc = MulticlassAccuracy(num_classes, average="micro", validate_args=False)

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs) -> None:
        # A checkpoint's memory has its own length: resize the empty buffers to it before copying.
        for name in ("memory", "memory_labels"):
            if prefix + name in state_dict:
                setattr(self, name, torch.empty_like(state_dict[prefix + name], device=getattr(self, name).device))
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def forward(self, images: Tensor) -> Tensor:
        """Normalised class scores (vote shares) ``(B, num_classes)`` for images ``(B, C, H, W)``."""
        if len(self.memory) == 0:
            raise RuntimeError(
                "KNN has nothing memorised: run `fit` first, or pass `--ckpt_path` a checkpoint written by `fit`"
            )
        hp = self.hparams
        budget = int(hp.chunk_mb * 2**20)
        distances, indices = nearest_neighbours(images.flatten(1).float(), self.memory, hp.k, hp.distance, budget)
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
        memory, labels = gather_shards(self, memory, labels)
        self.memory, self.memory_labels = memory, labels

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
        # DistributedDataParallel refuses a module without trainable parameters, and kNN has no
        # gradients to synchronise: keep the plain module; the ranks meet only in `_memorise`.
        if stage == "fit" and hasattr(self.trainer.strategy, "configure_ddp"):
            self.trainer.strategy.configure_ddp = lambda: None

    def configure_optimizers(self) -> None:
        return None
