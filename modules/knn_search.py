"""Exact k-nearest-neighbour search in blocks bounded by a memory budget, and the vote.

L2 is a filter-and-refine search that stays exact: a fast matrix product ranks every memory
row approximately; the best ``CANDIDATES`` rows per query are re-scored exactly as the sum of
squared differences; a proven bound on the product's error then certifies that no other row
can come as close as the k-th. The product runs in bfloat16 where the device multiplies it
fast (``modules/device_speed.py``), else in float32. Queries a bfloat16 filter cannot certify
(on data whose distances barely differ) are ranked again in float32, with its much smaller
bound, and what neither certifies is scored against every row. L1 and cosine rank float32
distances directly.

Ties: rows at exactly equal distance are taken in memory order (lowest index first): the
search ranks ``(distance, index)`` pairs packed into one int64 key.
"""

from contextlib import contextmanager
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor

from modules.device_speed import bfloat16_is_fast

Distance = Literal["l1", "l2", "cosine"]
Precision = Literal["auto", "bfloat16", "float32"]
# Rows re-scored exactly per query (at least 2k): enough that the first row left out is usually
# provably farther than the k-th, few enough that re-scoring costs little beside the product.
CANDIDATES = 32
BF16_UNIT = 2.0**-8  # unit roundoff of bfloat16 (8 significant bits)
F32_UNIT = 2.0**-24  # unit roundoff of float32 (24 significant bits)
MARGIN = 1.01  # the rounding bounds below are first order; 1% more covers the higher-order terms
# Float32 rounding of the norms, of the centring and of |q|^2 + |m|^2, relative to (|q| + |m|)^2.
NORM_ROUNDING = 1e-5
# Float32 rounding of a re-scored sum of squares, relative to the sum (torch sums in a cascade,
# whose error grows as log D: far below this at any image size).
RESCORE_ROUNDING = 1e-4


def pack(values: Tensor, indices: Tensor) -> Tensor:
    """int64 keys that sort like ``(value, index)`` for float32 values (-0.0 counts as 0.0)."""
    bits = values.add(0.0).view(torch.int32)
    bits = bits ^ ((bits >> 31) & 0x7FFFFFFF)  # negative floats: keep the int order equal to the float order
    return (bits.to(torch.int64) << 32) | indices


def unpack(keys: Tensor) -> tuple[Tensor, Tensor]:
    bits = (keys >> 32).to(torch.int32)
    return (bits ^ ((bits >> 31) & 0x7FFFFFFF)).view(torch.float32), keys & 0xFFFFFFFF


def top_k_keys(values: Tensor, k: int, indices: Tensor) -> Tensor:
    """The ``k`` smallest ``(value, index)`` keys per row of ``values`` ``(q, n)``; ``indices`` ``(q, n)`` or ``(n,)``."""
    indices = indices.expand_as(values)
    found, columns = values.topk(min(k + 1, values.shape[1]), dim=1, largest=False)
    keys = pack(found[:, :k], indices.gather(1, columns[:, :k]))
    if found.shape[1] > k:  # where the (k+1)-th equals the k-th, topk kept either: rank those rows by key
        tied = (found[:, k] == found[:, k - 1]).nonzero().squeeze(1)
        if len(tied):
            keys[tied] = pack(values[tied], indices[tied]).topk(k, dim=1, largest=False).values
    return keys


class MemoryIndex:
    """The memory rows ``(N, D)`` and what the L2 filter needs of them, computed once, block by block.

    ``precision``: the filter's product, ``bfloat16``, ``float32`` or ``auto`` (bfloat16 where the
    device multiplies it fast). For bfloat16, ``folded`` ``(N, D + 2)`` holds each centred row and,
    split in two bfloat16 parts, ``-|m|^2 / 2``: one product with ``[q, 1, 1]`` gives
    ``q.m - |m|^2 / 2``, which ranks rows as ``|q - m|^2`` does, with no pass over the products.
    Its size: half the memory's again. The float32 filter multiplies the memory itself.
    """

    def __init__(self, memory: Tensor, precision: Precision = "auto", block_rows: int = 8192) -> None:
        self.memory = memory
        if precision == "auto":
            with full_precision_products():  # time float32 as the filter runs it
                precision = "bfloat16" if bfloat16_is_fast(memory.device) else "float32"
        self.dtype = getattr(torch, precision)
        n, dim = memory.shape
        norms = torch.linalg.vector_norm(memory, dim=1)
        self.sq_norms = norms.square()  # (N,)
        self.max_norm = norms.max() if n else norms.sum()
        if self.dtype != torch.bfloat16:
            return
        self.centre = memory.mean(0)  # centred rows are shorter: smaller bfloat16 errors
        self.folded = torch.empty(n, dim + 2, dtype=torch.bfloat16, device=memory.device)
        centred_norms, residuals = memory.new_zeros(n), memory.new_zeros(n)
        for start in range(0, n, block_rows):
            rows = slice(start, start + block_rows)
            centred = memory[rows] - self.centre
            self.folded[rows, :dim] = centred.bfloat16()
            half_sq = -0.5 * torch.linalg.vector_norm(centred, dim=1).square()
            self.folded[rows, dim] = half_sq.bfloat16()
            self.folded[rows, dim + 1] = (half_sq - self.folded[rows, dim].float()).bfloat16()
            centred_norms[rows] = torch.linalg.vector_norm(centred, dim=1)
            residuals[rows] = torch.linalg.vector_norm(centred - self.folded[rows, :dim].float(), dim=1)
        self.max_centred_norm, self.max_residual = (x.max() if n else x.sum() for x in (centred_norms, residuals))


@contextmanager
def full_precision_products():
    """The bounds assume float32 products in float32 and bfloat16 products summed in float32:
    switch off TF32 / reduced-precision float32 and cuBLAS's reduced-precision bfloat16 sums."""
    matmul = torch.backends.cuda.matmul
    precision, reduction = torch.get_float32_matmul_precision(), matmul.allow_bf16_reduced_precision_reduction
    torch.set_float32_matmul_precision("highest")
    matmul.allow_bf16_reduced_precision_reduction = False
    try:
        yield
    finally:
        torch.set_float32_matmul_precision(precision)
        matmul.allow_bf16_reduced_precision_reduction = reduction


def exact_sq_l2(queries: Tensor, memory: Tensor, candidates: Tensor) -> Tensor:
    """Sums of squared differences ``(q, c)`` of each query and its candidate rows ``(q, c)``."""
    return memory[candidates].sub_(queries[:, None, :]).square_().sum(2)  # (q, c, D) in place


def as_matrix(work: Tensor, dtype: torch.dtype, columns: int) -> Tensor:
    """The flat byte buffer ``work`` as the largest ``(rows, columns)`` matrix of ``dtype`` it holds."""
    size = dtype.itemsize * columns
    return work[: len(work) // size * size].view(dtype).view(-1, columns)


def bf16_filter(queries: Tensor, index: MemoryIndex, count: int, work: Tensor) -> tuple[Tensor, Tensor]:
    """The ``count`` best candidates ``(q, count)`` by a bfloat16 product, and a lower bound ``(q,)``
    of the squared distance of every row left out.

    Error bounds, u the unit roundoff: ``bf16(q).bf16(m)`` differs from ``q.m`` by at most
    ``|q| |m - bf16(m)| + |q - bf16(q)| |m|`` (Cauchy-Schwarz), the split ``-|m|^2 / 2`` by
    ``u16^2 |m|^2 / 2`` (doubled here), float32 sums by ``(D + 2) u32`` times the sum of the
    terms' sizes; rounding the product ``p`` to bfloat16 moves ``-2 p`` by at most ``u16 |2 p|``.
    """
    dim = queries.shape[1]
    centred = queries - index.centre
    norms = torch.linalg.vector_norm(centred, dim=1)  # (q,)
    residuals = torch.linalg.vector_norm(centred - centred.bfloat16().float(), dim=1)
    half_sq = index.max_centred_norm.square() / 2
    error = norms * index.max_residual + residuals * index.max_centred_norm + 2 * BF16_UNIT**2 * half_sq
    accumulation = MARGIN * (dim + 2) * F32_UNIT
    error = 2 * (error + accumulation * (norms * index.max_centred_norm + half_sq))
    folded = torch.cat([centred.bfloat16(), centred.new_ones(len(queries), 2, dtype=torch.bfloat16)], 1)  # (q, D + 2)
    out = as_matrix(work, torch.bfloat16, len(index.memory))[: len(queries)]
    products = torch.matmul(folded, index.folded.T, out=out)  # (q, N) q.m - |m|^2 / 2
    found, candidates = products.topk(min(count + 1, len(index.memory)), dim=1)
    edge = -2 * found[:, -1].float()  # the (count + 1)-th smallest |m|^2 - 2 q.m
    return edge - MARGIN * BF16_UNIT * edge.abs() + norms.square() - error, candidates[:, :count]


def f32_filter(queries: Tensor, index: MemoryIndex, count: int, work: Tensor) -> tuple[Tensor, Tensor]:
    """``bf16_filter`` in float32, whose product errs by at most ``(D + 2) u32 |q| |m|``; in parts that fit ``work``."""
    n, dim = index.memory.shape
    out = as_matrix(work, torch.float32, n)
    norms = torch.linalg.vector_norm(queries, dim=1)  # (q,)
    error = 2 * MARGIN * (dim + 2) * F32_UNIT * norms * index.max_norm
    edges, candidates = [], []
    for part in torch.arange(len(queries), device=queries.device).split(len(out)):
        approx = torch.addmm(index.sq_norms[None], queries[part], index.memory.T, alpha=-2, out=out[: len(part)])
        found, best = approx.topk(min(count + 1, n), dim=1, largest=False)  # (q', N) |m|^2 - 2 q.m
        edges.append(found[:, -1] + norms[part].square() - error[part])
        candidates.append(best[:, :count])
    return torch.cat(edges), torch.cat(candidates)


def rescore(queries: Tensor, memory: Tensor, candidates: Tensor, k: int, budget_bytes: int) -> Tensor:
    """The ``k`` best keys ``(q, k)`` among each query's candidates, by exact sums of squared differences."""
    # A quarter of the budget: (step, count, D) float32 temporaries, 12 bytes an element.
    step = max(1, budget_bytes // (4 * 12 * candidates.shape[1] * queries.shape[1]))
    parts = range(0, len(queries), step)
    exact = torch.cat([exact_sq_l2(queries[i : i + step], memory, candidates[i : i + step]) for i in parts])
    return top_k_keys(exact, k, candidates)


def certified(keys: Tensor, bound: Tensor, queries: Tensor, index: MemoryIndex) -> Tensor:
    """``(q,)`` True where every row left out is provably farther than the k-th re-scored neighbour."""
    norms = torch.linalg.vector_norm(queries, dim=1)
    outside = bound - NORM_ROUNDING * (norms + index.max_norm).square()
    outside = outside - RESCORE_ROUNDING * outside.abs()
    return unpack(keys)[0].max(1).values < outside


def exhaustive(query: Tensor, memory: Tensor, k: int, budget_bytes: int) -> Tensor:
    """The ``k`` best keys of one query ``(D,)`` against every memory row, in blocks of the budget."""
    everything = torch.arange(len(memory), device=memory.device)
    parts = everything.split(max(1, budget_bytes // (12 * len(query))))
    exact = torch.cat([exact_sq_l2(query[None], memory, part[None]) for part in parts], 1)
    return top_k_keys(exact, k, everything)[0]


def l2_neighbour_keys(queries: Tensor, index: MemoryIndex, k: int, budget_bytes: int, work: Tensor) -> Tensor:
    """``(q, k)`` keys of the exact L2 neighbours (values: squared distances): filter, re-score, certify.

    A bfloat16 index filters in bfloat16, then in float32 the queries that did not certify; what
    neither certifies is scored against every row. ``work``: a byte buffer of ``(>= q, N)`` products
    in the index's precision, reused across chunks (a fresh one costs page faults every time).
    """
    n = len(index.memory)
    count = min(max(CANDIDATES, 2 * k), n)
    filters = (bf16_filter, f32_filter) if index.dtype == torch.bfloat16 else (f32_filter,)
    keys = torch.empty(len(queries), k, dtype=torch.long, device=queries.device)
    rows = torch.arange(len(queries), device=queries.device)  # the queries not certified yet
    for approximate in filters:
        bound, candidates = approximate(queries[rows], index, count, work)
        keys[rows] = rescore(queries[rows], index.memory, candidates, k, budget_bytes)
        if count == n:  # every row was a candidate: nothing was left out
            return keys
        rows = rows[~certified(keys[rows], bound, queries[rows], index)]
        if len(rows) == 0:
            return keys
    for row in rows.tolist():
        keys[row] = exhaustive(queries[row], index.memory, k, budget_bytes)
    return keys


def pairwise_distances(queries: Tensor, memory: Tensor, distance: Distance) -> Tensor:
    """``(Q, D)`` x ``(M, D)`` -> ``(Q, M)`` float32 L1 or 1 - cosine distances."""
    if distance == "l1":
        return torch.cdist(queries, memory, p=1)
    return torch.addmm(queries.new_ones(()), F.normalize(queries, dim=1), F.normalize(memory, dim=1).T, alpha=-1)


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
    in three quarters of it, the exact re-scoring in the last quarter; 4 bytes otherwise), at
    least one query a chunk. L2 distances come back squared. ``memory`` may be a ``MemoryIndex``
    built once for many calls; else ``precision`` chooses the L2 filter's (see ``MemoryIndex``).
    """
    index = memory if isinstance(memory, MemoryIndex) else None
    memory = index.memory if index is not None else memory
    if queries.shape[1:] != memory.shape[1:]:
        raise ValueError(
            f"queries have {queries.shape[1]} features but the memory rows have {memory.shape[1]}: "
            "query with data of the shape that was memorised"
        )
    if not 1 <= k <= len(memory):
        raise ValueError(f"k={k} needs 1 <= k <= {len(memory)} (the memorised samples): lower k or memorise more")
    if len(memory) >= 2**31:
        raise ValueError(f"{len(memory)} memory rows: the search packs indices in 31 bits")
    if distance == "l2" and index is None:
        index = MemoryIndex(memory, precision)
    everything = torch.arange(len(memory), device=memory.device)
    per_query = 2 * index.dtype.itemsize * len(memory) * 4 // 3 if distance == "l2" else 4 * len(memory)
    rows = min(len(queries), max(1, budget_bytes // per_query))
    if distance == "l2":
        # At least one float32 row: the float32 pass after a bfloat16 one shares the buffer.
        work = memory.new_empty(max(rows * index.dtype.itemsize, 4) * len(memory), dtype=torch.uint8)
    keys = []
    with full_precision_products():
        for chunk in queries.split(rows):
            if distance == "l2":
                keys.append(l2_neighbour_keys(chunk, index, k, budget_bytes, work))
            else:
                keys.append(top_k_keys(pairwise_distances(chunk, memory, distance), k, everything))
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
    return torch.zeros(len(labels), num_classes, device=labels.device).scatter_add_(1, labels, votes)
