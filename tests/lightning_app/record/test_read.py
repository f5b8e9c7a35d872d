"""Writing a file whole: a reader sees the old file or the new one, and a failed write leaves nothing."""

import os

import pytest

from lightning_app.record.read import replace_file


def test_a_file_is_replaced_whole_through_a_partial_file_of_this_process(tmp_path, monkeypatch):
    path = tmp_path / "summary.json"
    path.write_text("old")
    seen = []
    real = os.replace
    monkeypatch.setattr(os, "replace", lambda src, dst: seen.append((src.name, path.read_text())) or real(src, dst))
    replace_file(path, "new")
    replace_file(tmp_path / "picture.png", b"\x89PNG")
    assert seen[0] == (f".summary.json.{os.getpid()}.part", "old")  # until the rename, readers see the old file
    assert path.read_text() == "new" and (tmp_path / "picture.png").read_bytes() == b"\x89PNG"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["picture.png", "summary.json"]


def test_a_failed_write_keeps_the_old_file_and_leaves_no_partial_file(tmp_path, monkeypatch):
    path = tmp_path / "best.yaml"
    path.write_text("old")

    def full(src, dst):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", full)
    with pytest.raises(OSError, match="No space left"):
        replace_file(path, "new")
    assert path.read_text() == "old" and [p.name for p in tmp_path.iterdir()] == ["best.yaml"]
