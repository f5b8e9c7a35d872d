"""Keys that rank ``(distance, index)`` pairs, so that every search breaks ties the same way.

Rows at exactly equal distance are taken in memory order (lowest index first), whatever the
chunk sizes: a search ranks ``(distance, index)`` pairs packed into one int64 key.
"""

import torch
from torch import Tensor


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
