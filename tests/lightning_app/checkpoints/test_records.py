"""What a checkpoint write flushes to disk, how a record cut short by a power cut reads, how a checked file loads."""

import os
from pathlib import Path

import pytest
import torch

from lightning_app.checkpoints import files as checkpoints
from lightning_app.checkpoints import AtomicCheckpointIO, load_checkpoint, record_path

STATE = {"state_dict": {"weight": torch.arange(6.0)}, "global_step": 5}


def test_the_checkpoint_is_flushed_before_its_rename_and_the_record_is_not(tmp_path, monkeypatch):
    flushed = []
    real_fsync = checkpoints.os.fsync
    name = lambda fd: Path(os.readlink(f"/proc/self/fd/{fd}")).name  # noqa: E731  the file behind the descriptor
    monkeypatch.setattr(checkpoints.os, "fsync", lambda fd: flushed.append(name(fd)) or real_fsync(fd))
    path = tmp_path / "last.ckpt"
    AtomicCheckpointIO().save_checkpoint(STATE, path)
    assert flushed == ["last.ckpt.part"]  # the checkpoint's bytes, before the rename; not the record
    digest = checkpoints.hashlib.sha256(path.read_bytes()).hexdigest()
    assert record_path(path).read_text() == f"{digest}  last.ckpt\n"


@pytest.mark.parametrize("record", ["", "\0\0\0\0", "3f2a  last.ckpt\n"])
def test_a_record_without_a_digest_loads_unchecked_with_a_warning(record, tmp_path):
    path = tmp_path / "last.ckpt"
    AtomicCheckpointIO().save_checkpoint(STATE, path)
    record_path(path).write_text(record)
    checkpoints._checked.clear()  # as in a new process
    with pytest.warns(UserWarning, match=r"integrity record last\.ckpt\.sha256 holds no SHA-256 .*loaded unchecked"):
        assert load_checkpoint(path)["global_step"] == 5


def test_a_record_with_another_digest_is_still_an_error(tmp_path):
    path = tmp_path / "last.ckpt"
    AtomicCheckpointIO().save_checkpoint(STATE, path)
    record_path(path).write_text(f"{'0' * 64}  last.ckpt\n")
    checkpoints._checked.clear()
    with pytest.raises(ValueError, match=f"{path} is corrupt: .* says {'0' * 64}"):
        load_checkpoint(path)


def test_a_checkpoint_is_hashed_once_per_process(tmp_path, monkeypatch):
    path = tmp_path / "last.ckpt"
    AtomicCheckpointIO().save_checkpoint(STATE, path)
    checkpoints._checked.clear()  # as in a new process
    assert load_checkpoint(path)["global_step"] == 5  # hashed and checked
    monkeypatch.setattr(checkpoints.hashlib, "sha256", lambda: pytest.fail("hashed again"))
    assert load_checkpoint(path)["global_step"] == 5


@pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="maps through Linux's /proc/self/fd")
def test_a_checkpoint_loads_mapped_from_the_very_file_that_was_checked(tmp_path, monkeypatch):
    path, other = tmp_path / "last.ckpt", tmp_path / "other.ckpt"
    AtomicCheckpointIO().save_checkpoint(STATE, path)
    AtomicCheckpointIO().save_checkpoint({**STATE, "global_step": 6}, other)
    checkpoints._checked.clear()
    verify = checkpoints._verify

    def verify_then_replace(checked: Path, file) -> bool:  # another writer renames a new file over it meanwhile
        whole = verify(checked, file)
        os.replace(other, checked)
        return whole

    monkeypatch.setattr(checkpoints, "_verify", verify_then_replace)
    loaded = load_checkpoint(path)
    assert loaded["global_step"] == 5  # the checked bytes, not the file that took the name since
    torch.testing.assert_close(loaded["state_dict"]["weight"], torch.arange(6.0))
    with open("/proc/self/maps") as maps:  # mapped, not read into fresh memory; the replaced file lives on
        assert any(line.rstrip().endswith(f"{path} (deleted)") for line in maps)


def test_a_checkpoint_in_torchs_legacy_format_loads_read(tmp_path):
    path = tmp_path / "old.ckpt"
    torch.save(STATE, path, _use_new_zipfile_serialization=False)  # not a zip: torch cannot map it
    with pytest.warns(UserWarning, match="no integrity record"):
        assert load_checkpoint(path)["global_step"] == 5


def test_a_checkpoint_that_cannot_be_mapped_is_read(tmp_path, monkeypatch):
    path = tmp_path / "last.ckpt"
    AtomicCheckpointIO().save_checkpoint(STATE, path)
    load = torch.load

    def no_mapping(*args, mmap=None, **kwargs):  # as on a file system without mmap
        if mmap:
            raise RuntimeError("unable to mmap 1,200 bytes from file </proc/self/fd/7>: No such device (19)")
        return load(*args, **kwargs)

    monkeypatch.setattr(checkpoints.torch, "load", no_mapping)
    assert load_checkpoint(path)["global_step"] == 5
