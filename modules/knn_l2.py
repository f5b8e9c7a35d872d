"""The exact L2 search: a fast matrix product filters, exact sums re-score, a proven bound certifies.

A matrix product ranks every memory row approximately; the best ``CANDIDATES`` rows per query
are re-scored exactly as the sum of squared differences; a proven bound on the product's error
then certifies that no other row can come as close as the k-th. The product runs in bfloat16
where the device multiplies it fast (``modules/device_speed.py``), else in float32. Queries a
bfloat16 filter cannot certify (on data whose distances barely differ) are ranked again in
float32, with its much smaller bound, and what neither certifies is scored against every row.
"""

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Literal

import torch
from torch import Tensor

from modules.device_speed import bfloat16_is_fast
from modules.knn_keys import top_k_keys, unpack

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


class MemoryIndex:
    """The memory rows ``(N, D)`` and what the L2 filter needs of them, computed once, block by block.

    ``precision``: the filter's product, ``bfloat16``, ``float32`` or ``auto`` (bfloat16 where the
    device multiplies it fast). For bfloat16, ``folded`` ``(N, D + 2)`` holds each centred row and,
    split in two bfloat16 parts, ``-|m|^2 / 2``: one product with ``[q, 1, 1]`` gives
    ``q.m - |m|^2 / 2``, which ranks rows as ``|q - m|^2`` does, with no pass over the products.
    Its size: half the memory's again. The float32 filter multiplies the memory itself. ``work``
    lends the search its buffer of products, kept between calls until ``release``.
    """

    def __init__(self, memory: Tensor, precision: Precision = "auto", block_rows: int = 8192) -> None:
        self.memory = memory
        self.scratch: Tensor | None = None  # the search's byte buffer, kept from one call to the next
        self._lock = threading.Lock()  # held by the search using it
        if precision == "auto":
            with full_precision_products():  # time float32 as the filter runs it
                precision = "bfloat16" if bfloat16_is_fast(memory.device) else "float32"
        self.dtype = getattr(torch, precision)
        n, dim = memory.shape
        norms = torch.linalg.vector_norm(memory, dim=1)
        bad = (~norms.isfinite()).nonzero().view(-1)  # NaN, infinite, or too long for float32: no distance ranks
        if len(bad):
            raise ValueError(
                f"the memory: {len(bad)} rows hold NaN, infinite or float32-overflowing values, the first is "
                f"row {int(bad[0])}; check the training inputs (a NaN pixel or feature in the data)"
            )
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
    def work(self, nbytes: int) -> Iterator[Tensor]:
        """A byte buffer of ``nbytes`` for one search, the same memory search after search: a fresh one
        costs a page fault every 4 KiB (batches of 1,000 MNIST queries: 24,500 faults a batch and a
        fifth of the search's time, ``bench/knn.py --batch-size 1000``). A search in another thread
        meanwhile gets a buffer of its own: sharing one would mix their products. ``release()``
        gives the kept one back."""
        if not self._lock.acquire(blocking=False):
            yield torch.empty(nbytes, dtype=torch.uint8, device=self.memory.device)
            return
        try:
            if self.scratch is None or len(self.scratch) < nbytes:
                self.scratch = None  # the smaller one goes before the larger one is taken
                self.scratch = torch.empty(nbytes, dtype=torch.uint8, device=self.memory.device)
            yield self.scratch[:nbytes]
        finally:
            self._lock.release()

    def release(self) -> None:
        self.scratch = None

    def __getstate__(self) -> dict:  # a copied or pickled model (deepcopy, torch.save) takes no lock or buffer
        return {**self.__dict__, "_lock": None, "scratch": None}

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state, _lock=threading.Lock())


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


def exact_sq_l2(queries: Tensor, memory: Tensor, candidates: Tensor, rows: Tensor | None = None) -> Tensor:
    """Sums of squared differences ``(q, c)`` of each query and its candidate rows ``(q, c)``.

    ``rows``: a ``(>= q * c, D)`` buffer of the memory's dtype to gather the candidate rows into, reused
    across calls (a fresh one costs a page fault every 4 KiB: gathering 1,000 queries' 32 rows of MNIST
    into new memory takes 5x as long as into a buffer already touched).
    """
    q, c = candidates.shape
    if rows is None:
        gathered = memory[candidates]
    else:
        gathered = torch.index_select(memory, 0, candidates.reshape(-1), out=rows[: q * c]).view(q, c, -1)
    return gathered.sub_(queries[:, None, :]).square_().sum(2)  # (q, c, D) in place


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


def rescore(queries: Tensor, memory: Tensor, candidates: Tensor, k: int, budget_bytes: int, work: Tensor) -> Tensor:
    """The ``k`` best keys ``(q, k)`` among each query's candidates, by exact sums of squared differences.

    The candidate rows are gathered into ``work``, whose products the filter no longer needs; where not
    even one query's candidates fit there, into new memory, a quarter of the budget at a time.
    """
    count = candidates.shape[1]
    rows = as_matrix(work, memory.dtype, queries.shape[1])
    step = len(rows) // count
    if step == 0:
        rows = None  # (step, count, D) temporaries, 12 bytes an element, in a quarter of the budget
        step = max(1, budget_bytes // (4 * 12 * count * queries.shape[1]))
    parts = range(0, len(queries), step)
    exact = torch.cat([exact_sq_l2(queries[i : i + step], memory, candidates[i : i + step], rows) for i in parts])
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
        keys[rows] = rescore(queries[rows], index.memory, candidates, k, budget_bytes, work)
        if count == n:  # every row was a candidate: nothing was left out
            return keys
        rows = rows[~certified(keys[rows], bound, queries[rows], index)]
        if len(rows) == 0:
            return keys
    for row in rows.tolist():
        keys[row] = exhaustive(queries[row], index.memory, k, budget_bytes)
    return keys
