"""BatchLoader: batches by indexing, seeded shuffles, and DDP shards that cover each split once."""

import torch

from datamodules.base import BatchLoader


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


def test_eval_shards_cover_every_sample_exactly_once():
    data = (torch.arange(11),)
    shards = [labels_seen(BatchLoader(data, 3, rank=r, world_size=3)) for r in range(3)]
    assert torch.equal(torch.cat(shards).sort().values, torch.arange(11))
    assert [len(BatchLoader(data, 3, rank=r, world_size=3)) for r in range(3)] == [2, 2, 1]


def test_train_shards_are_disjoint_and_equal_length():
    data = (torch.arange(11),)
    loaders = [BatchLoader(data, 2, shuffle=True, seed=0, rank=r, world_size=2) for r in range(2)]
    for loader in loaders:
        loader.set_epoch(5)
    shards = [labels_seen(loader) for loader in loaders]
    assert len(shards[0]) == len(shards[1]) == 5 and len(loaders[0]) == len(loaders[1]) == 3
    assert not set(shards[0].tolist()) & set(shards[1].tolist())
