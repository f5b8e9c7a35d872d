"""A picture never costs a run: any failure is a warning naming it, and names are drawn as plain, short text."""

import json

import pytest

from datamodules import Digits
from lightning_app.cli import main
from lightning_app.pictures import ClassifierPictures
from lightning_app.pictures.base import label
from tests.lightning_app.checkpoints.test_files import DIGITS

HOSTILE = ["$\\undefinedcommand$", "x" * 5000, "tab\there\x1b[31m", *map(str, range(3, 10))]


def test_names_are_one_short_line_of_plain_text():
    assert label("x" * 5000) == "x" * 23 + "…" and len(label("x" * 24)) == 24
    assert label("tab\there\x1b[31m\n") == "tab?here?[31m?"
    assert label("$\\undefinedcommand$") == "$\\undefinedcommand$"  # kept as written: drawn without mathtext


def test_hostile_class_names_are_drawn_and_the_run_is_recorded(in_tmp, monkeypatch, recwarn):
    monkeypatch.setattr(Digits, "class_names", HOSTILE)
    cli = main(["fit", *DIGITS, "--trainer.max_epochs", "1"])
    assert "test/acc" in cli.trainer.callback_metrics
    (run,) = in_tmp.glob("runs/lightning_app/digits_mlp-*")
    summary = json.loads((run / "summary.json").read_text())
    assert summary["status"] == "finished" and "test/acc" in summary["test"]
    assert (run / "pictures" / "test" / "confusion_matrix.png").stat().st_size > 0
    assert not [w for w in recwarn.list if "ClassifierPictures" in str(w.message)]


def test_a_failing_picture_is_a_warning_and_the_run_goes_on(in_tmp, monkeypatch):
    def broken(self, trainer, counts, mistakes):
        raise RuntimeError("the disk is gone")

    monkeypatch.setattr(ClassifierPictures, "_draw", broken)
    with pytest.warns(UserWarning, match=r"ClassifierPictures: no pictures after on_test_epoch_end failed "
                                         r"\(RuntimeError: the disk is gone\); the run goes on"):  # fmt: skip
        cli = main(["fit", *DIGITS, "--trainer.max_epochs", "1"])
    (run,) = in_tmp.glob("runs/lightning_app/digits_mlp-*")
    summary = json.loads((run / "summary.json").read_text())
    assert summary["status"] == "finished" and summary["test"]["test/acc"] == pytest.approx(
        cli.trainer.callback_metrics["test/acc"].item()
    )
    assert (run / "checkpoints" / "last.ckpt").is_file()
