"""Checkpoints that lie: sizes that would fill the memory, a corrupt last.ckpt beside good ones."""

import hashlib
from pathlib import Path

import pytest
import torch

from lightning_app.checkpoints import AtomicCheckpointIO, record_path
from lightning_app.checkpoints import files as checkpoints
from lightning_app.cli import main
from tests.lightning_app.checkpoints.test_files import DIGITS, mlp_checkpoint  # noqa: F401  a fixture


def test_a_checkpoint_asking_for_huge_layers_is_refused_before_they_are_allocated(mlp_checkpoint, in_tmp):  # noqa: F811
    checkpoint = torch.load(mlp_checkpoint, weights_only=True)
    checkpoint["hyper_parameters"]["hidden_sizes"] = [2_000_000, 2_000_000]  # 4e12 weights: 16 TB in float32
    crafted = in_tmp / "crafted.ckpt"
    AtomicCheckpointIO().save_checkpoint(checkpoint, crafted)  # a valid record: the lie is inside
    with pytest.raises(ValueError, match=rf"{crafted}: its hyperparameters build net\.1\.weight of shape "
                                         r"\[2000000, 64\], but its state_dict holds \[\d+, 64\]"):  # fmt: skip
        main(["test", *DIGITS, "--ckpt_path", str(crafted)])


BY_STEP = ["--checkpoint.monitor", "step", "--checkpoint.mode", "max"]  # the top-1 checkpoint is the newest epoch's


def crafted(source: Path, folder: Path, change) -> Path:
    """A copy of ``source`` changed by ``change(checkpoint)``, with a valid record: the lie is inside."""
    checkpoint = torch.load(source, weights_only=True)
    change(checkpoint)
    AtomicCheckpointIO().save_checkpoint(checkpoint, folder / "crafted.ckpt")
    return folder / "crafted.ckpt"


def test_a_checkpoint_with_a_nan_weight_is_refused_naming_it(mlp_checkpoint, in_tmp):  # noqa: F811
    path = crafted(mlp_checkpoint, in_tmp, lambda c: c["state_dict"]["net.1.weight"].view(-1)[7].fill_(float("nan")))
    with pytest.raises(ValueError, match=f"{path}: its parameter net.1.weight holds NaN or infinite values"):
        main(["test", *DIGITS, "--ckpt_path", str(path)])


def test_hyperparameters_that_are_not_a_mapping_are_named(mlp_checkpoint, in_tmp):  # noqa: F811
    path = crafted(mlp_checkpoint, in_tmp, lambda c: c.update(hyper_parameters=[1, 2]))
    with pytest.raises(ValueError, match=f"{path}: not a Lightning checkpoint"):
        main(["test", *DIGITS, "--ckpt_path", str(path)])


@pytest.fixture
def corrupt_last(in_tmp) -> tuple[Path, Path]:
    """A two-epoch run whose last.ckpt then has a byte flipped; returns it and the run's other checkpoint."""
    main(["fit", *DIGITS, *BY_STEP, "--trainer.max_epochs", "2", "--test_after_fit", "false"])
    (last,) = in_tmp.glob("runs/lightning_app/digits_mlp-*/checkpoints/last.ckpt")
    (good,) = set(last.parent.glob("*.ckpt")) - {last}
    data = bytearray(last.read_bytes())
    data[len(data) // 2] ^= 0xFF
    last.write_bytes(bytes(data))
    checkpoints._checked.clear()  # as in a new process
    return last, good


def test_fit_from_a_corrupt_last_continues_from_the_newest_good_checkpoint(corrupt_last):
    last, good = corrupt_last
    with pytest.warns(UserWarning, match=rf"checkpoints/last.ckpt is corrupt: .*; continuing from .*/{good.name}, "):
        cli = main(["fit", *DIGITS, *BY_STEP, "--trainer.max_epochs", "3", "--test_after_fit", "false", "--ckpt_path", "last"])
    assert cli.trainer.current_epoch == 3 and cli.trainer.global_step == 9  # epochs 0-1 restored, the third trained
    assert Path(cli.trainer.checkpoint_callback.dirpath) == last.parent  # the same run


@pytest.mark.parametrize("subcommand", ["validate", "test", "predict"])
def test_evaluating_a_corrupt_last_names_the_good_checkpoint(subcommand, corrupt_last):
    last, good = corrupt_last
    good = good.relative_to(Path.cwd())  # as the search for `last` names it
    with pytest.raises(ValueError, match=rf"last.ckpt is corrupt: .*; the newest checkpoint of that run that verifies "
                                         rf"is {good}: pass --ckpt_path {good}"):  # fmt: skip
        main([subcommand, *DIGITS, "--ckpt_path", "last"])


def test_a_last_that_does_not_unpickle_falls_back_too(corrupt_last):
    last, good = corrupt_last
    last.write_bytes(b"not a zip file")
    record_path(last).write_text(f"{hashlib.sha256(b'not a zip file').hexdigest()}  last.ckpt\n")
    with pytest.raises(ValueError, match=rf"last.ckpt is not a checkpoint of tensors .*pass --ckpt_path .*/{good.name}"):
        main(["test", *DIGITS, "--ckpt_path", "last"])
