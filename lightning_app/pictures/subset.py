"""A fixed, seeded subset of a stream of batches: the same samples every run, whatever the batch size.

Spread over the whole split, not its first samples: MNIST's test split is ordered, its first 5,000 the easier half.
"""

import torch
from torch import Tensor


def subset_keys(positions: Tensor, seed: int) -> Tensor:
    """One key per sample position; a subset of n samples is the n positions with the smallest keys.

    Fibonacci hashing sends consecutive positions far apart in [0, 2^32), so the smallest keys are
    spread over the whole split; the seed permutes the keys. Distinct positions get distinct keys.
    """
    return (positions.long() * 2654435761 % 2**32) ^ (seed * 2246822519 % 2**32)


class SeededSubset:
    """Keeps the rows of a stream of batches whose ``subset_keys`` are the ``size`` smallest.

    Batches are kept as they come and merged only when twice ``size`` rows are held, so each row
    is copied a bounded number of times; once ``size`` rows were kept, a row whose key exceeds the
    largest kept key is dropped on arrival.
    """

    def __init__(self, size: int, seed: int) -> None:
        self.size, self.seed = size, seed
        self.parts: list[dict[str, Tensor]] = []
        self.count = 0
        self.bound: Tensor | None = None  # the largest kept key, once rows had to be dropped

    def add(self, positions: Tensor, **columns: Tensor) -> None:
        """Offers a batch: ``positions`` ``(B,)`` in the stream, and columns ``(B, ...)`` kept with them."""
        columns = {"key": subset_keys(positions, self.seed), "position": positions, **columns}
        if self.bound is not None:
            chosen = columns["key"] < self.bound
            columns = {name: column[chosen] for name, column in columns.items()}
        self.parts.append(columns)
        self.count += len(columns["key"])
        if self.count > 2 * self.size:
            self._merge()

    def _merge(self) -> None:
        merged = {name: torch.cat([part[name] for part in self.parts]) for name in self.parts[0]}
        if len(merged["key"]) > self.size:
            keep = merged["key"].topk(self.size, largest=False).indices.sort().values  # in stream order
            merged = {name: column[keep] for name, column in merged.items()}
            self.bound = merged["key"].max()
        self.parts, self.count = [merged], len(merged["key"])

    def rows(self) -> dict[str, Tensor]:
        """The kept rows, in stream order: ``key``, ``position`` and the columns given to ``add``; {} if none."""
        if not self.parts:
            return {}
        self._merge()
        return self.parts[0]
