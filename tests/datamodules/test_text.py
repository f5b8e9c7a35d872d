"""The text data module: vocabulary, splits, windows, DDP shards, download and bad files."""

import hashlib
import http.server
import threading
from functools import partial

import pytest
import torch

from datamodules import Text
from datamodules.text import TINY_SHAKESPEARE_VOCAB
from tests.fakes import write_text


@pytest.fixture
def text_file(tmp_path):
    return write_text(tmp_path / "verse.txt")


def ready(path, **kwargs) -> Text:
    data = Text(path=str(path), **kwargs)
    data.setup("fit")
    return data


def windows(data: Text, loader) -> list[tuple[torch.Tensor, torch.Tensor]]:
    return [data.on_after_batch_transfer(batch, 0) for batch in loader]


def test_vocabulary_and_tokens_round_trip(text_file):
    text = text_file.read_text()
    data = ready(text_file, block_size=16)
    assert data.vocab == "".join(sorted(set(text))) and data.vocab_size == len(set(text))
    assert "".join(data.vocab[i] for i in data.tokens.tolist()) == text
    assert data.n_train == int(0.9 * len(text))  # nanoGPT's split


def test_training_windows_are_shifted_pairs_from_the_training_text(text_file):
    data = ready(text_file, block_size=16, batch_size=4, batches_per_epoch=5)
    text = text_file.read_text()
    batches = windows(data, data.train_dataloader())
    assert len(batches) == 5
    for x, y in batches:
        assert x.shape == y.shape == (4, 16) and x.dtype == torch.long
        assert torch.equal(x[:, 1:], y[:, :-1])  # y is x moved one character on
        for row_x, row_y in zip(x, y):
            window = "".join(data.vocab[i] for i in row_x.tolist()) + data.vocab[row_y[-1]]
            assert window in text[: data.n_train]


def test_training_windows_are_seeded_per_epoch_and_rank(text_file):
    data = ready(text_file, block_size=16, batch_size=4, batches_per_epoch=3)
    loader = data.train_dataloader()
    first, again = list(loader), list(loader)
    assert all(torch.equal(a[0], b[0]) for a, b in zip(first, again))
    loader.set_epoch(1)
    assert not all(torch.equal(a[0], b[0]) for a, b in zip(first, loader))
    loader.set_epoch(0)
    loader.rank, loader.world_size = 1, 2
    assert not all(torch.equal(a[0], b[0]) for a, b in zip(first, loader))


def test_validation_windows_tile_the_validation_text(text_file):
    data = ready(text_file, block_size=16, batch_size=5)
    text = text_file.read_text()
    val = text[data.n_train :]
    xs = torch.cat([x for x, _ in windows(data, data.val_dataloader())])
    assert len(xs) == (len(val) - 1) // 16
    assert "".join(data.vocab[i] for i in xs.flatten().tolist()) == val[: len(xs) * 16]


def test_validation_batches_have_val_batch_size_windows_and_the_same_windows(text_file):
    small, large = (ready(text_file, block_size=16, batch_size=2, val_batch_size=n) for n in (1, 7))
    assert [len(b[0]) for b in large.val_dataloader()][:-1] == [7] * (len(large.val_dataloader()) - 1)
    every = [torch.cat([b[0] for b in data.val_dataloader()]) for data in (small, large)]
    assert torch.equal(*every)


def test_validation_shards_split_the_windows_between_ranks(text_file):
    data = ready(text_file, block_size=16, batch_size=3)
    everything = torch.cat([b[0] for b in data.val_dataloader()])
    shards = []
    for rank in range(2):
        loader = data.val_dataloader()
        loader.rank, loader.world_size = rank, 2
        shards.append(torch.cat([b[0] for b in loader]))
    assert sorted(torch.cat(shards).tolist()) == everything.tolist()  # each window once, on one rank


def test_tiny_shakespeare_vocabulary_is_known_before_the_download(in_tmp):
    data = Text()  # path None: data/tinyshakespeare/input.txt, not there yet
    assert data.vocab == TINY_SHAKESPEARE_VOCAB and data.vocab_size == 65
    assert not (in_tmp / "data").exists()  # nothing was downloaded to learn it


def serve(directory):
    handler = partial(http.server.SimpleHTTPRequestHandler, directory=str(directory))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def test_prepare_data_downloads_and_checks_the_text(tmp_path, monkeypatch):
    served = write_text(tmp_path / "site" / "input.txt")
    server = serve(served.parent)
    try:
        monkeypatch.setattr(Text, "url", f"http://127.0.0.1:{server.server_port}/")
        monkeypatch.setattr(Text, "md5", hashlib.md5(served.read_bytes()).hexdigest())
        data = Text(data_dir=str(tmp_path / "data"), block_size=16)
        data.prepare_data()
        assert (tmp_path / "data" / "input.txt").read_bytes() == served.read_bytes()
        monkeypatch.setattr(Text, "md5", "0" * 32)
        corrupt = Text(data_dir=str(tmp_path / "other"))
        with pytest.raises(RuntimeError, match="checksum mismatch"):
            corrupt.prepare_data()
        assert not (tmp_path / "other" / "input.txt").exists()
    finally:
        server.shutdown()


@pytest.mark.parametrize(
    ("content", "kwargs", "error", "match"),
    [
        (None, {}, FileNotFoundError, "no such text file"),
        (b"", {}, ValueError, "is empty"),
        ("caf\u00e9 ".encode("latin-1") * 50, {}, ValueError, "byte 3 is not UTF-8"),
        (b"abcdefghij" * 10, {"block_size": 64}, ValueError, "validation text has 10 characters"),
        (b"ab" * 100 + b"xyz", {"block_size": 4}, ValueError, r"absent from the training text: \['x', 'y', 'z'\]"),
    ],
    ids=["missing", "empty", "latin-1", "block_size", "unseen-characters"],
)
def test_bad_text_files_are_clear_errors(tmp_path, content, kwargs, error, match):
    path = tmp_path / "input.txt"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(error, match=match):
        Text(path=str(path), **kwargs).vocab


@pytest.mark.parametrize("name", ["block_size", "batch_size", "batches_per_epoch", "val_batch_size"])
@pytest.mark.parametrize("value", [0, -1])
def test_a_size_below_one_is_named(text_file, name, value):
    with pytest.raises(ValueError, match=f"{name} must be 1 or more, got {value}"):
        Text(path=str(text_file), **{name: value})


def test_data_dir_that_is_a_file_is_named(text_file):
    with pytest.raises(NotADirectoryError, match=f"data_dir {text_file} is a file"):
        Text(data_dir=str(text_file))
