"""Exact k-nearest-neighbour search in blocks bounded by a memory budget, and the vote.

L2 is a filter-and-refine search that stays exact: a bfloat16 matrix product (twice the
float32 rate on CPUs with AVX512-BF16, more on GPUs) ranks every memory row approximately; the
best ``CANDIDATES`` rows per query are re-scored exactly as the sum of squared differences; a
proven bound on the bfloat16 error then certifies that no other row can come as close as the
k-th. Queries it cannot certify (on data whose distances barely differ) are ranked again in
float32 with its much smaller bound, and exhaustively if even that fails. L1 and cosine rank
float32 distances directly.

Ties: rows at exactly equal distance are taken in memory order (lowest index first): the
search ranks ``(distance, index)`` pairs packed into one int64 key.
"""

from contextlib import contextmanager
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor

Distance = Literal["l1", "l2", "cosine"]
CANDIDATES = 32  # rows re-scored exactly per query (at least 2k)
BF16_UNIT = 2.0**-8  # unit roundoff of bfloat16 (8 significant bits)


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

    ``folded`` ``(N, D + 2)`` bfloat16 holds each centred row and, split in two bfloat16 parts,
    ``-|m|^2 / 2``: one product with ``[q, 1, 1]`` gives ``q.m - |m|^2 / 2``, which ranks rows as
    ``|q - m|^2`` does, with no pass over the products. Its size: half the memory's again.
    """

    def __init__(self, memory: Tensor, block_rows: int = 8192) -> None:
        self.memory = memory
        self.centre = memory.mean(0)  # centred rows are shorter: smaller bfloat16 errors
        n, dim = memory.shape
        self.folded = torch.empty(n, dim + 2, dtype=torch.bfloat16, device=memory.device)
        norms, centred_norms, residuals = (memory.new_zeros(n) for _ in range(3))
        for start in range(0, n, block_rows):
            rows = slice(start, start + block_rows)
            centred = memory[rows] - self.centre
            self.folded[rows, :dim] = centred.bfloat16()
            half_sq = -0.5 * torch.linalg.vector_norm(centred, dim=1).square()
            self.folded[rows, dim] = half_sq.bfloat16()
            self.folded[rows, dim + 1] = (half_sq - self.folded[rows, dim].float()).bfloat16()
            norms[rows] = torch.linalg.vector_norm(memory[rows], dim=1)
            centred_norms[rows] = torch.linalg.vector_norm(centred, dim=1)
            residuals[rows] = torch.linalg.vector_norm(centred - self.folded[rows, :dim].float(), dim=1)
        self.sq_norms = norms.square()  # (N,)
        self.max_norm, self.max_centred_norm, self.max_residual = (x.max() if n else x.sum() for x in (norms, centred_norms, residuals))


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


def l2_neighbour_keys(queries: Tensor, index: MemoryIndex, k: int, budget_bytes: int, work: Tensor) -> Tensor:
    """``(q, k)`` keys of the exact L2 neighbours (values: squared distances) by filter and refine.

    Error bounds, u the unit roundoff: ``bf16(q).bf16(m)`` differs from ``q.m`` by at most
    ``|q| |m - bf16(m)| + |q - bf16(q)| |m|`` (Cauchy-Schwarz), the split ``-|m|^2 / 2`` by
    ``u16^2 |m|^2 / 2``, float32 sums by ``(D + 2) u32`` times the sum of the terms' sizes;
    rounding the product ``p`` to bfloat16 moves ``-2 p`` by at most ``u16 |2 p|``. A float32
    product errs by at most ``D u32 |q| |m|``. ``work``: a bfloat16 ``(>= q, N)`` buffer reused across
    chunks (a fresh one costs page faults every time).
    """
    memory, n, dim = index.memory, len(index.memory), queries.shape[1]
    centred = queries - index.centre
    c_norms, norms = torch.linalg.vector_norm(centred, dim=1), torch.linalg.vector_norm(queries, dim=1)  # (q,)
    c_residuals = torch.linalg.vector_norm(centred - centred.bfloat16().float(), dim=1)
    accumulation, half_sq = 1.01 * (dim + 2) * 2.0**-24, index.max_centred_norm.square() / 2
    bf16_error = c_norms * index.max_residual + c_residuals * index.max_centred_norm + 2.0**-15 * half_sq
    bf16_error = 2 * (bf16_error + accumulation * (c_norms * index.max_centred_norm + half_sq))
    f32_error = 2 * accumulation * norms * index.max_norm
    slack = 1e-5 * (norms + index.max_norm).square()  # float32 rounding of norms, sums and centring
    folded = torch.cat([centred.bfloat16(), centred.new_ones(len(queries), 2, dtype=torch.bfloat16)], 1)  # (q, D + 2)
    count = min(max(CANDIDATES, 2 * k), n)  # candidates re-scored per query

    def bf16_pass(rows: Tensor) -> tuple[Tensor, Tensor]:
        products = torch.matmul(folded[rows], index.folded.T, out=work[: len(rows)])  # (q', N) q.m - |m|^2 / 2
        found, candidates = products.topk(min(count + 1, n), dim=1)
        edge = -2 * found[:, -1].float()  # the (count + 1)-th smallest |m|^2 - 2 q.m
        rounding = 1.01 * BF16_UNIT * edge.abs()
        return edge - rounding + c_norms[rows].square() - bf16_error[rows], candidates[:, :count]

    def f32_pass(rows: Tensor) -> tuple[Tensor, Tensor]:
        step = max(1, work.numel() * 2 // (4 * n))  # float32 rows in the bfloat16 buffer's bytes
        edges, candidates = [], []
        for part in rows.split(step):
            approx = torch.addmm(index.sq_norms[None], queries[part], memory.T, alpha=-2)  # (q', N) |m|^2 - 2 q.m
            found, best = approx.topk(min(count + 1, n), dim=1, largest=False)
            edges.append(found[:, -1] + norms[part].square() - f32_error[part])
            candidates.append(best[:, :count])
        return torch.cat(edges), torch.cat(candidates)

    rows = torch.arange(len(queries), device=queries.device)
    keys = torch.empty(len(queries), k, dtype=torch.long, device=queries.device)
    step = max(1, budget_bytes // (4 * 12 * count * dim))  # a quarter of the budget: (step, count, D) float32 temporaries
    for approximate in (bf16_pass, f32_pass):
        edge, candidates = approximate(rows)  # lower bounds of the distances outside the candidates
        parts = range(0, len(rows), step)
        refined = torch.cat([exact_sq_l2(queries[rows[i : i + step]], memory, candidates[i : i + step]) for i in parts])
        keys[rows] = top_k_keys(refined, k, candidates)
        if count == n:
            return keys
        outside = edge - slack[rows]
        outside = outside - 1e-4 * outside.abs()  # float32 rounding of the re-scored sums
        rows = rows[unpack(keys[rows])[0].max(1).values >= outside]  # not certified: no row outside is nearer
        if len(rows) == 0:
            return keys
    everything = torch.arange(n, device=memory.device)
    for row in rows.tolist():  # neither bound certified these: score every row exactly
        parts = everything.split(max(1, budget_bytes // (12 * dim)))
        refined = torch.cat([exact_sq_l2(queries[row : row + 1], memory, part[None]) for part in parts], 1)
        keys[row] = top_k_keys(refined, k, everything)[0]
    return keys


def pairwise_distances(queries: Tensor, memory: Tensor, distance: Distance) -> Tensor:
    """``(Q, D)`` x ``(M, D)`` -> ``(Q, M)`` float32 L1 or 1 - cosine distances."""
    if distance == "l1":
        return torch.cdist(queries, memory, p=1)
    return torch.addmm(queries.new_ones(()), F.normalize(queries, dim=1), F.normalize(memory, dim=1).T, alpha=-1)


def nearest_neighbours(
    queries: Tensor, memory: Tensor | MemoryIndex, k: int, distance: Distance, budget_bytes: int
) -> tuple[Tensor, Tensor]:
    """The ``k`` nearest memory rows of every query: ``(distances, indices)``, both ``(Q, k)``, nearest first.

    Queries go in chunks whose distance rows fit ``budget_bytes`` (for L2: 4 bytes per query-memory
    pair in three quarters of it, the exact re-scoring in the last quarter; 4 bytes otherwise),
    at least one query a chunk.
    L2 distances come back squared. ``memory`` may be a ``MemoryIndex`` built once for many calls.
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
        index = MemoryIndex(memory)
    everything = torch.arange(len(memory), device=memory.device)
    # L2: 2 bytes of product and up to 2 of the matrix product's own scratch, in 3/4 of the budget.
    per_query = 16 * len(memory) // 3 if distance == "l2" else 4 * len(memory)
    rows = min(len(queries), max(1, budget_bytes // per_query))
    if distance == "l2":
        work = memory.new_empty(rows, len(memory), dtype=torch.bfloat16)
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
