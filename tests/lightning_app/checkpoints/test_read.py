"""Files read beside a checkpoint or in a run folder: regular files only, read with a bound, errors naming them."""

import hashlib
import json
import os
from pathlib import Path

import pytest
import torch
import yaml

from datamodules import CIFAR10
from lightning_app.checkpoints import files as checkpoints
from lightning_app.checkpoints import AtomicCheckpointIO, load_checkpoint, record_path
from lightning_app.checkpoints.ckpt_path import find_last_checkpoint
from lightning_app.record.summary import read_summary

STATE = {"state_dict": {"weight": torch.arange(6.0)}, "global_step": 5}


@pytest.fixture
def checkpoint(tmp_path) -> Path:
    path = tmp_path / "last.ckpt"
    AtomicCheckpointIO().save_checkpoint(STATE, path)
    checkpoints._checked.clear()  # as in a new process
    return path


def replace_with(path: Path, kind: str) -> None:
    """``path`` becomes a link to /dev/zero, a folder, a FIFO or a link loop."""
    path.unlink(missing_ok=True)
    if kind == "zero":
        path.symlink_to("/dev/zero")
    elif kind == "folder":
        path.mkdir()
    elif kind == "fifo":
        os.mkfifo(path)
    else:
        path.symlink_to(path.name)


@pytest.mark.parametrize("kind, says", [("zero", "device"), ("folder", "folder"), ("fifo", "FIFO"), ("loop", "symbolic")])
def test_a_record_that_is_not_a_regular_file_is_an_error_naming_it(kind, says, checkpoint):
    replace_with(record_path(checkpoint), kind)
    with pytest.raises(ValueError, match=f"integrity record is unusable: {record_path(checkpoint)} .*{says}"):
        load_checkpoint(checkpoint)


def test_a_huge_record_is_not_read_whole(checkpoint):
    with open(record_path(checkpoint), "wb") as file:
        file.truncate(1 << 30)  # a sparse gigabyte
    with pytest.raises(ValueError, match="last.ckpt.sha256 is larger than 4096 bytes"):
        load_checkpoint(checkpoint)


@pytest.mark.parametrize("line", ["{}  last.ckpt\n", "{} *last.ckpt\r\n", "{}\n", "SHA256 (last.ckpt) = {}\n"])
def test_records_that_sha256sum_accepts_are_checked(line, checkpoint, recwarn):
    digest = hashlib.sha256(checkpoint.read_bytes()).hexdigest()
    record_path(checkpoint).write_text(line.format(digest.upper()))
    assert load_checkpoint(checkpoint)["global_step"] == 5 and not recwarn.list  # checked: no "unchecked" warning
    record_path(checkpoint).write_text(line.format(("0" * 64).upper()))
    checkpoints._checked.clear()
    with pytest.raises(ValueError, match=f"{checkpoint} is corrupt: .* says {'0' * 64}"):
        load_checkpoint(checkpoint)


@pytest.mark.parametrize("kind", ["zero", "folder", "fifo"])
def test_a_checkpoint_that_is_not_a_regular_file_is_an_error_naming_it(kind, tmp_path):
    path = tmp_path / "model.ckpt"
    replace_with(path, kind)
    with pytest.raises(ValueError, match=f"{path} is a .*, not a regular file"):
        load_checkpoint(path)


@pytest.mark.parametrize("content, says", [(b"{", "Expecting"), (b"[1]", "a JSON list"), (b"\xff", "decode")])
def test_a_summary_that_is_not_one_is_an_error_naming_it(content, says, tmp_path):
    path = tmp_path / "summary.json"
    path.write_bytes(content)
    with pytest.raises(ValueError, match=f"{path}: not a run summary .*{says}"):
        read_summary(path)
    replace_with(path, "zero")
    with pytest.raises(ValueError, match=f"{path}: not a run summary .*device"):
        read_summary(path)
    path.unlink()
    assert read_summary(path) == {}
    path.write_text(json.dumps({"resumed": 2}))
    assert read_summary(path) == {"resumed": 2}


def test_a_run_config_that_is_a_fifo_fails_the_search_for_last_naming_it(tmp_path):
    run = tmp_path / "lightning_app" / "a"
    (run / "checkpoints").mkdir(parents=True)
    (run / "checkpoints" / "last.ckpt").write_bytes(b"")
    os.mkfifo(run / "config.yaml")  # read whole, the search would wait for a writer forever
    with pytest.raises(ValueError, match=f"{run / 'config.yaml'} is not a run's config .*FIFO"):
        find_last_checkpoint(tmp_path / "lightning_app", "modules.MLP", "datamodules.Digits", None)
    (run / "config.yaml").unlink()
    (run / "config.yaml").write_text(yaml.safe_dump(["not", "a", "mapping"]))
    with pytest.raises(ValueError, match="not a mapping"):
        find_last_checkpoint(tmp_path / "lightning_app", "modules.MLP", "datamodules.Digits", None)


@pytest.mark.parametrize("kind, says", [("zero", "device"), ("folder", "folder")])
def test_a_cifar_names_file_that_is_not_a_regular_file_is_an_error_naming_it(kind, says, tmp_path):
    names = tmp_path / CIFAR10.folder / CIFAR10.names_file
    names.parent.mkdir()
    replace_with(names, kind)
    with pytest.raises(ValueError, match=f"{names} is a {says}"):
        CIFAR10(data_dir=str(tmp_path)).read_class_names()
