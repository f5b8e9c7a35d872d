"""compare reads run folders it did not write: FIFOs, devices, folders and wrong types leave out a run, line or field."""

import json
import os
from pathlib import Path

import pytest

from lightning_app import compare

SUMMARY = {"model": "MLP", "data": "Digits", "status": "finished", "train_seconds": 3.0, "processes": 1, "test": {"test/acc": 0.9}}


def write_run(folder: Path, summary: dict | str = SUMMARY, lines: tuple[str, ...] = ('{"epoch": 0, "val/acc": 0.5}',)) -> Path:
    folder.mkdir(parents=True)
    (folder / "summary.json").write_text(summary if isinstance(summary, str) else json.dumps(summary))
    (folder / "metrics.jsonl").write_text("".join(line + "\n" for line in lines))
    (folder / "config.yaml").write_text("model:\n  init_args:\n    dropout: 0.1\n")
    return folder


def listed(tmp_path: Path) -> tuple[list[str], str]:
    """The runs ``compare --runs`` lists under ``tmp_path`` and the warnings it gave."""
    with pytest.warns(UserWarning) as caught:
        text = compare.main([str(tmp_path), "--runs"])
    return [row.split("|")[1].strip() for row in text.splitlines()[2:]], "\n".join(str(w.message) for w in caught)


@pytest.mark.parametrize("name", ["summary.json", "config.yaml", "metrics.jsonl"])
def test_a_fifo_leaves_its_run_out_instead_of_blocking(tmp_path, name):
    write_run(tmp_path / "good")
    bad = write_run(tmp_path / "fifo")
    (bad / name).unlink()
    os.mkfifo(bad / name)  # opening it for reading would wait for a writer for ever
    runs, warned = listed(tmp_path)
    assert runs == ["good"] and f"{bad / name} is a FIFO, not a regular file" in warned


def test_a_link_to_a_device_or_a_folder_is_not_read(tmp_path):
    write_run(tmp_path / "good")
    device = write_run(tmp_path / "device")
    (device / "summary.json").unlink()
    (device / "summary.json").symlink_to("/dev/zero")  # would never end
    folder = write_run(tmp_path / "folder")
    (folder / "metrics.jsonl").unlink()
    (folder / "metrics.jsonl").mkdir()
    runs, warned = listed(tmp_path)
    assert runs == ["good"]
    assert f"{device / 'summary.json'} is a device or socket" in warned and f"{folder / 'metrics.jsonl'} is a folder" in warned


def test_read_dict_names_the_file_it_will_not_read(tmp_path):
    os.mkfifo(tmp_path / "summary.json")
    with pytest.raises(ValueError, match=f"{tmp_path / 'summary.json'} is a FIFO"):
        compare.read_dict(tmp_path / "summary.json", json.loads)
    (tmp_path / "list.json").write_text("[1]")
    with pytest.raises(ValueError, match=f"{tmp_path / 'list.json'} holds a list, not a mapping"):
        compare.read_dict(tmp_path / "list.json", json.loads)
    (tmp_path / "big.json").write_text('{"a": "' + "x" * 100 + '"}')
    assert compare.read_text(tmp_path / "big.json", limit=200).startswith('{"a"')
    with pytest.raises(ValueError, match="big.json is larger than 100 bytes"):
        compare.read_text(tmp_path / "big.json", limit=100)
    assert compare.MAX_BYTES == 64 * 2**20


def test_summary_fields_of_the_wrong_type_are_dropped_with_a_warning(tmp_path):
    wrong = {**SUMMARY, "test": [1], "train_seconds": "12", "processes": "2", "last": {"val/acc": "0.5"}}
    folder = write_run(tmp_path / "wrong", json.dumps(wrong))
    runs, warned = listed(tmp_path)
    assert runs == ["wrong"]  # still listed, without those fields
    path = folder / "summary.json"
    for field, value in (("test", "[1]"), ("train_seconds", "'12'"), ("processes", "'2'")):
        assert f"{path}: field {field!r} left out: {value} is not" in warned
    with pytest.warns(UserWarning):
        run = compare.load_run(folder)
    assert run.summary == {"model": "MLP", "data": "Digits", "status": "finished"}


def test_metrics_lines_and_values_of_the_wrong_type_are_skipped(tmp_path):
    lines = (
        '{"epoch": 0, "val/acc": 0.5, "val/loss": 1.0}',
        '{"epoch": Infinity, "val/acc": 0.9}',  # JSON that Python reads as inf
        '{"epoch": "1", "val/acc": 0.9}',
        '{"epoch": 1, "val/acc": "0.75", "val/loss": 0.8}',  # a string among floats
        '{"epoch": 2, "val/acc": 0.8, "val/loss": NaN}',
    )
    folder = write_run(tmp_path / "lines", lines=lines)
    runs, warned = listed(tmp_path)
    path = folder / "metrics.jsonl"
    assert runs == ["lines"]
    assert f"{path}, line 2: skipped, field 'epoch' is inf, not a count" in warned
    assert f"{path}, line 3: skipped, field 'epoch' is '1', not a count" in warned
    assert f"{path}, line 4: field 'val/acc' left out: '0.75' is not a finite number" in warned
    assert f"{path}, line 5: field 'val/loss' left out: nan is not a finite number" in warned
    with pytest.warns(UserWarning):
        history = compare.load_run(folder).history
    assert history == [{"epoch": 0, "val/acc": 0.5, "val/loss": 1.0}, {"epoch": 1, "val/loss": 0.8}, {"epoch": 2, "val/acc": 0.8}]
    with pytest.warns(UserWarning):
        groups = json.loads(compare.main([str(folder), "--json"]))  # the statistics see only the finite values
    assert groups[0]["metrics"]["val/acc best"]["mean"] == 0.8 and groups[0]["metrics"]["val/loss final"]["mean"] == 0.8
