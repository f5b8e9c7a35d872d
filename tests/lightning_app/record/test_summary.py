"""metrics.jsonl holds each epoch's own metrics, never an earlier epoch's."""

import json

import pytest

from lightning_app.cli import main
from tests.lightning_app.checkpoints.test_files import DIGITS


def test_an_epoch_without_validation_has_no_val_metrics(in_tmp):
    main(["fit", *DIGITS, "--trainer.max_epochs", "3", "--trainer.check_val_every_n_epoch", "2",
          "--checkpoint.monitor", "step", "--test_after_fit", "false"])  # fmt: skip
    (run,) = in_tmp.glob("runs/lightning_app/digits_mlp-*")
    lines = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [line["epoch"] for line in lines] == [0, 1, 2]
    assert [sorted(key for key in line if key.startswith("val/")) for line in lines] == [[], ["val/acc", "val/acc_best", "val/loss"], []]
    assert all("train/loss" in line for line in lines)


def test_a_metrics_file_that_is_a_folder_fails_at_the_start_naming_it(in_tmp):
    args = [*DIGITS, "--trainer.max_epochs", "1", "--test_after_fit", "false"]
    main(["fit", *args])
    (metrics,) = in_tmp.glob("runs/lightning_app/digits_mlp-*/metrics.jsonl")
    metrics.unlink()
    metrics.mkdir()
    with pytest.raises(ValueError, match=f"{metrics} is not a regular file, and each epoch appends"):
        main(["fit", *DIGITS, "--trainer.max_epochs", "2", "--test_after_fit", "false", "--ckpt_path", "last"])
