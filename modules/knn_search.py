"""Exact k-nearest-neighbour search in blocks bounded by a memory budget, and the vote.

L2 goes through a filter-and-refine search that stays exact (``modules/knn_l2.py``); L1 and
cosine rank float32 distances directly. Queries and memory holding NaN or infinity are refused.
Ties: rows at exactly equal distance are taken in
memory order, lowest index first (``modules/knn_keys.py``).
"""

from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor

from modules.knn_keys import top_k_keys, unpack
from modules.knn_l2 import MemoryIndex, Precision, full_precision_products, l2_neighbour_keys

Distance = Literal["l1", "l2", "cosine"]


def pairwise_distances(queries: Tensor, memory: Tensor, distance: Distance) -> Tensor:
    """``(Q, D)`` x ``(M, D)`` -> ``(Q, M)`` float32 L1 or 1 - cosine distances."""
    if distance == "l1":
        return torch.cdist(queries, memory, p=1)
    return torch.addmm(queries.new_ones(()), F.normalize(queries, dim=1), F.normalize(memory, dim=1).T, alpha=-1)


def require_finite(rows: Tensor, what: str) -> None:
    """Raises naming ``what`` and its first row with a NaN or infinity: such a row has no distance
    that ranks, and would otherwise vote silently for whatever sorts first.

    One pass of row sums (finite sums need finite rows); only rows whose sum is not finite are
    checked element by element, so a row of huge finite values is not mistaken for a bad one.
    """
    suspect = (~rows.sum(1).isfinite()).nonzero().view(-1)  # (S,)
    if len(suspect) == 0:
        return
    bad = suspect[~rows[suspect].isfinite().all(1)]
    if len(bad):
        raise ValueError(
            f"{what}: {len(bad)} rows hold NaN or infinite values, the first is row {int(bad[0])}; "
            "check the inputs (a NaN pixel or feature in the data) before searching"
        )


def nearest_neighbours(
    queries: Tensor,
    memory: Tensor | MemoryIndex,
    k: int,
    distance: Distance,
    budget_bytes: int,
    precision: Precision = "auto",
) -> tuple[Tensor, Tensor]:
    """The ``k`` nearest memory rows of every query: ``(distances, indices)``, both ``(Q, k)``, nearest first.

    Queries go in chunks whose distance rows fit ``budget_bytes`` (for L2: the product and the
    matrix product's own scratch, 2 bytes each per query-memory pair in bfloat16 and 4 in float32,
    in three quarters of it, the exact re-scoring in that buffer once the filter is done with it, or
    in the last quarter where one query's candidates do not fit there; 4 bytes otherwise), at
    least one query a chunk. L2 distances come back squared. ``memory`` may be a ``MemoryIndex``
    built once for many calls; else ``precision`` chooses the L2 filter's (see ``MemoryIndex``).
    """
    index = memory if isinstance(memory, MemoryIndex) else None
    memory = index.memory if index is not None else memory
    if queries.dtype != torch.float32 or memory.dtype != torch.float32:
        raise TypeError(
            f"queries ({queries.dtype}) and memory ({memory.dtype}) must both be float32, the precision the "
            "search's error bounds are proven for: convert them with .float()"
        )
    if queries.shape[1:] != memory.shape[1:]:
        raise ValueError(
            f"queries have {queries.shape[1]} features but the memory rows have {memory.shape[1]}: "
            "query with data of the shape that was memorised"
        )
    if not 1 <= k <= len(memory):
        raise ValueError(f"k={k} needs 1 <= k <= {len(memory)} (the memorised samples): lower k or memorise more")
    if len(memory) >= 2**31:
        raise ValueError(f"{len(memory)} memory rows: the search packs indices in 31 bits")
    require_finite(queries, "the queries")
    if len(queries) == 0:  # nothing to search (L2's chunks and re-scoring need a query)
        return queries.new_zeros(0, k), torch.zeros(0, k, dtype=torch.long, device=queries.device)
    if distance != "l2":
        require_finite(memory, "the memory")  # an L2 MemoryIndex checked it when it was built
    elif index is None:
        index = MemoryIndex(memory, precision)
    per_query = 2 * index.dtype.itemsize * len(memory) * 4 // 3 if distance == "l2" else 4 * len(memory)
    chunks = queries.split(min(len(queries), max(1, budget_bytes // per_query)))
    if distance == "l2":
        # At least one float32 row: the float32 pass after a bfloat16 one shares the buffer.
        with index.work(max(len(chunks[0]) * index.dtype.itemsize, 4) * len(memory)) as work, full_precision_products():
            keys = [l2_neighbour_keys(chunk, index, k, budget_bytes, work) for chunk in chunks]
    else:
        everything = torch.arange(len(memory), device=memory.device)
        with full_precision_products():
            keys = [top_k_keys(pairwise_distances(chunk, memory, distance), k, everything) for chunk in chunks]
    distances, indices = unpack(torch.cat(keys).sort(dim=1).values)
    return distances.clamp_min(0.0), indices


def vote(
    distances: Tensor, labels: Tensor, num_classes: int, weights: Literal["uniform", "distance"], distance: Distance
) -> Tensor:
    """Class scores ``(Q, num_classes)`` from the neighbours' ``(Q, k)`` distances and labels.

    Equal scores go to the smallest class index (``argmax`` takes the first). ``distance``
    weights are 1 / distance (L2: the root of the squared distance); a query with neighbours at
    distance 0 counts those alone, as scikit-learn does.
    """
    if weights == "uniform":
        votes = torch.ones_like(distances)
    else:
        d = distances.sqrt() if distance == "l2" else distances
        exact = d == 0
        votes = torch.where(exact.any(1, keepdim=True), exact.to(d.dtype), 1.0 / d)
    return votes.new_zeros(len(labels), num_classes).scatter_add_(1, labels, votes)
