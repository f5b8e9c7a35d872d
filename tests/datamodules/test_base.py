"""BatchLoader: batches by indexing, seeded shuffles, DDP shards that cover each split once and
that ``gather_shards`` puts back in the one-process order."""

from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F

from datamodules.base import BatchLoader, gather_shards


def labels_seen(loader):
    return torch.cat([batch[-1] for batch in loader])


def test_batches_are_whole_tensor_indexing():
    images, labels = torch.arange(10).view(10, 1, 1, 1).to(torch.uint8), torch.arange(10)
    batches = list(BatchLoader((images, labels), batch_size=4))
    assert [len(b[1]) for b in batches] == [4, 4, 2] and len(BatchLoader((images, labels), 4)) == 3
    assert torch.equal(batches[0][0].flatten(), images[:4].flatten())


def test_shuffle_is_seeded_and_changes_with_epoch():
    data = (torch.arange(100),)
    loader = BatchLoader(data, batch_size=100, shuffle=True, seed=1)
    first = next(iter(loader))[0]
    assert torch.equal(first, next(iter(BatchLoader(data, 100, shuffle=True, seed=1)))[0])
    loader.set_epoch(1)
    assert not torch.equal(first, next(iter(loader))[0])
    assert torch.equal(first.sort().values, torch.arange(100))


def test_drawn_counts_the_batches_of_the_run_and_is_restored():
    data = (torch.arange(10),)
    loader = BatchLoader(data, batch_size=4, shuffle=True)
    list(loader)
    loader.set_epoch(1)
    iterator = iter(loader)
    next(iterator)
    assert loader.drawn == 4  # 3 batches in epoch 0, 1 in epoch 1
    restored = BatchLoader(data, batch_size=4, shuffle=True)
    restored.load_state_dict(loader.state_dict())
    list(restored)
    assert restored.drawn == 6
    without_count = BatchLoader(data, batch_size=4, shuffle=True)
    without_count.load_state_dict({"epoch": 1, "yielded": 1})
    assert without_count.drawn == 4


def test_eval_shards_cover_every_sample_exactly_once():
    data = (torch.arange(11),)
    shards = [labels_seen(BatchLoader(data, 3, rank=r, world_size=3)) for r in range(3)]
    assert torch.equal(torch.cat(shards).sort().values, torch.arange(11))
    assert [len(BatchLoader(data, 3, rank=r, world_size=3)) for r in range(3)] == [2, 2, 1]


def test_train_shards_are_disjoint_and_equal_length():
    data = (torch.arange(11),)
    with pytest.warns(UserWarning, match="11 training samples over 2 devices: every epoch leaves out 1"):
        loaders = [BatchLoader(data, 2, shuffle=True, seed=0, rank=r, world_size=2) for r in range(2)]
    for loader in loaders:
        loader.set_epoch(5)
    shards = [labels_seen(loader) for loader in loaders]
    assert len(shards[0]) == len(shards[1]) == 5 and len(loaders[0]) == len(loaders[1]) == 3
    assert not set(shards[0].tolist()) & set(shards[1].tolist())


def gathered_on_rank_0(shards: list[torch.Tensor]) -> torch.Tensor:
    """``gather_shards`` as rank 0 runs it, with ``all_gather`` answered from every rank's shard."""

    def all_gather(tensor: torch.Tensor) -> torch.Tensor:  # (W, ...): each rank's tensor, shards padded alike
        if tensor.dim() == 0:
            return torch.tensor([len(shard) for shard in shards])
        return torch.stack([F.pad(shard, [0, len(tensor) - len(shard)]) for shard in shards])

    module = SimpleNamespace(trainer=SimpleNamespace(world_size=len(shards)), all_gather=all_gather)
    return gather_shards(module, shards[0])[0]


@pytest.mark.filterwarnings("ignore:11 training samples")
@pytest.mark.parametrize("shuffle", [False, True])
@pytest.mark.parametrize("world_size", [2, 3])
def test_gathered_shards_are_the_one_process_order(shuffle, world_size):
    data = (torch.arange(100, 111),)  # 11 samples: shards of unequal length when not shuffled
    one = labels_seen(BatchLoader(data, 4, shuffle, seed=3))
    shards = []
    for rank in range(world_size):
        loader = BatchLoader(data, 4, shuffle, seed=3, rank=rank, world_size=world_size)
        shards.append(labels_seen(loader))
    expected = one[: len(one) - len(one) % world_size] if shuffle else one  # training drops the remainder
    assert torch.equal(gathered_on_rank_0(shards), expected)
    prefixes = [shard[:2] for shard in shards]  # what a monitor embeds: the first rows of every shard
    assert torch.equal(gathered_on_rank_0(prefixes), one[: 2 * world_size])
