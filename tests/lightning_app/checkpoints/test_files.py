"""Checkpoints you can trust: the newest last.ckpt, integrity records, refusals that run no code."""

import builtins
import errno
import functools
import http.server
import os
import threading
from pathlib import Path

import pytest
import torch
from lightning.pytorch.callbacks import Callback

from lightning_app.checkpoints import files as checkpoints
from lightning_app.checkpoints import AtomicCheckpointIO, load_checkpoint, record_path
from lightning_app.cli import main
from lightning_app.generate import generate

ROOT = Path(__file__).parents[3]
# Digits at batch size 128: 11 batches per epoch, 3 of them here.
DIGITS = ["--config", str(ROOT / "configs/digits_mlp.yaml"), "--trainer.logger", "false", "--data.batch_size", "128",
          "--trainer.limit_train_batches", "3", "--trainer.enable_progress_bar", "false",
          "--trainer.enable_model_summary", "false", "--trainer.num_sanity_val_steps", "0"]  # fmt: skip


class RecordLast(Callback):
    """Records the global step of last.ckpt at the start of every epoch (after the last one's save point)."""

    def __init__(self) -> None:
        self.steps: list[int] = []

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        last = Path(trainer.checkpoint_callback.dirpath) / "last.ckpt"
        if last.exists():
            self.steps.append(torch.load(last, weights_only=True)["global_step"])


@pytest.fixture(scope="module")
def mlp_checkpoint(tmp_path_factory) -> Path:
    """last.ckpt of a one-epoch Digits MLP run (the model and data of configs/digits_mlp.yaml)."""
    folder = tmp_path_factory.mktemp("mlp")
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(folder)
        main(["fit", *DIGITS, "--trainer.max_epochs", "1", "--test_after_fit", "false"])
    (last,) = folder.glob("runs/lightning_app/digits_mlp-*/checkpoints/last.ckpt")
    return last


def test_last_is_the_newest_state_though_the_metric_stops_improving(in_tmp):
    # Learning rate 0: val/acc never improves after the first epoch, so no top-k checkpoint is written again.
    cli = main(["fit", *DIGITS, "--trainer.max_epochs", "3", "--optimizer.init_args.lr", "0.0", "--test_after_fit", "false",
                "--trainer.callbacks+=tests.lightning_app.checkpoints.test_files.RecordLast"])  # fmt: skip
    (recorder,) = [c for c in cli.trainer.callbacks if isinstance(c, RecordLast)]
    assert recorder.steps == [3, 6]  # written at the save point of epochs 0 and 1
    last = Path(cli.trainer.checkpoint_callback.dirpath) / "last.ckpt"
    assert torch.load(last, weights_only=True)["global_step"] == 9 == cli.trainer.global_step
    assert [p.name for p in last.parent.glob("epoch*.ckpt")] == ["epoch0-step3.ckpt"]


def test_integrity_record_catches_a_flipped_byte(mlp_checkpoint, tmp_path):
    digest = record_path(mlp_checkpoint).read_text().split()
    assert digest == [checkpoints.hashlib.sha256(mlp_checkpoint.read_bytes()).hexdigest(), "last.ckpt"]  # sha256sum format
    corrupt = tmp_path / "checkpoints" / "last.ckpt"
    corrupt.parent.mkdir()
    data = bytearray(mlp_checkpoint.read_bytes())
    data[len(data) // 2] ^= 0xFF  # inside the weights
    corrupt.write_bytes(data)
    record_path(corrupt).write_text(record_path(mlp_checkpoint).read_text())
    with pytest.raises(ValueError, match=rf"{corrupt} is corrupt: its SHA-256 is .*integrity record"):
        main(["test", *DIGITS, "--ckpt_path", str(corrupt)])
    record_path(corrupt).unlink()  # a checkpoint from elsewhere: no record, a warning
    corrupt.write_bytes(mlp_checkpoint.read_bytes())
    with pytest.warns(UserWarning, match="has no integrity record"):
        assert load_checkpoint(corrupt)["global_step"] == 3


def test_a_model_class_other_than_the_checkpoints_is_an_error(mlp_checkpoint, in_tmp):
    with pytest.raises(ValueError, match=r"modules\.CNN, is not the class of checkpoint .*last\.ckpt, modules\.MLP"):
        main(["test", *DIGITS, "--model", "modules.CNN", "--ckpt_path", str(mlp_checkpoint)])


def test_data_of_another_shape_than_the_checkpoints_is_an_error(mlp_checkpoint, mnist_dir, in_tmp):
    mnist = ["--data", "datamodules.MNIST", "--data.data_dir", str(mnist_dir)]
    with pytest.raises(ValueError, match=r"trained with input_shape=\(1, 8, 8\), but the data module gives \(1, 28, 28\)"):
        main(["test", *DIGITS, *mnist, "--ckpt_path", str(mlp_checkpoint)])


WICKED = "from pathlib import Path\nPath('{marker}').touch()\nimport lightning\nclass GPT(lightning.LightningModule): pass\n"


def test_a_class_path_outside_the_project_is_not_imported(mlp_checkpoint, in_tmp, monkeypatch):
    monkeypatch.syspath_prepend(str(in_tmp))  # as `python -m` does: the working directory is importable
    marker = in_tmp / "payload-ran"
    (in_tmp / "w.py").write_text(WICKED.format(marker=marker))
    crafted = in_tmp / "crafted.ckpt"
    checkpoint = torch.load(mlp_checkpoint, weights_only=True)
    checkpoint["hyper_parameters"]["_class_path"] = "w.GPT"
    AtomicCheckpointIO().save_checkpoint(checkpoint, crafted)  # a valid record: only the class path is wrong
    with pytest.raises(ValueError, match=r"names the model class 'w\.GPT', which is not imported.*--trusted_packages \[w\]"):
        main(["test", *DIGITS, "--ckpt_path", str(crafted)])
    assert not marker.exists()
    with pytest.raises(ValueError, match=r"'w\.GPT', which is not imported"):
        generate(str(crafted))
    assert not marker.exists()
    checkpoint["hyper_parameters"].update(_class_path="modules.MLP", hidden_sizes=[{"class_path": "w.GPT"}])
    AtomicCheckpointIO().save_checkpoint(checkpoint, crafted)  # the right class, a class in an argument
    with pytest.raises(ValueError, match=r"the hyperparameters \['hidden_sizes'\] name classes"):
        main(["test", *DIGITS, "--ckpt_path", str(crafted)])
    assert not marker.exists()
    checkpoint["hyper_parameters"].update(_class_path="w.GPT")
    AtomicCheckpointIO().save_checkpoint(checkpoint, crafted)
    # Trusted on purpose: imported, and then it is still not the model given.
    with pytest.raises(ValueError, match=r"modules\.MLP, is not the class of checkpoint .*w\.GPT"):
        main(["test", *DIGITS, "--ckpt_path", str(crafted), "--trusted_packages", "[w]"])
    assert marker.exists()


class Payload:
    """Unpickling it creates a file: a stand-in for any code a crafted pickle runs."""

    def __init__(self, marker: Path) -> None:
        self.marker = str(marker)

    def __reduce__(self):
        return builtins.open, (self.marker, "w")


@pytest.fixture
def served(tmp_path):
    """A loopback HTTP server of tmp_path/www; yields (base URL, list of requested paths)."""
    (tmp_path / "www").mkdir()
    requests = []

    class Handler(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args) -> None:
            requests.append(self.path)

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Handler, directory=tmp_path / "www"))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_port}", requests
    server.shutdown()


def test_a_remote_checkpoint_is_refused_and_never_unpickled(served, mlp_checkpoint, in_tmp, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(in_tmp / "torch-home"))  # where torch.hub would cache a download
    url, requests = served
    marker = in_tmp / "payload-ran"
    checkpoint = torch.load(mlp_checkpoint, weights_only=True)
    torch.save({**checkpoint, "payload": Payload(marker)}, in_tmp / "www" / "model.ckpt")
    for run in (lambda: main(["test", *DIGITS, "--ckpt_path", f"{url}/model.ckpt"]), lambda: generate(f"{url}/model.ckpt")):
        with pytest.raises(ValueError, match=rf"{url}/model.ckpt: remote checkpoints are not loaded"):
            run()
    with pytest.raises(ValueError, match="remote checkpoints are not loaded"):
        AtomicCheckpointIO().load_checkpoint(f"{url}/model.ckpt")
    assert not marker.exists() and requests == []  # nothing was even downloaded
    refused = r"www/model.ckpt is not a checkpoint of tensors and plain data, and is not loaded \(Unsupported global: GLOBAL io"
    with pytest.raises(ValueError, match=refused):
        main(["test", *DIGITS, "--ckpt_path", str(in_tmp / "www" / "model.ckpt")])  # the same file, local: weights_only
    assert not marker.exists()


def test_weights_only_false_is_refused(mlp_checkpoint, in_tmp):
    with pytest.raises(ValueError, match="weights_only=False is refused"):
        main(["test", *DIGITS, "--ckpt_path", str(mlp_checkpoint), "--weights_only", "false"])


@pytest.mark.parametrize("subcommand", ["validate", "test", "predict"])
def test_evaluating_last_with_nothing_to_evaluate_fails(subcommand, in_tmp):
    looked = rf"no last\.ckpt of experiment 'digits_mlp' \(modules\.MLP on datamodules\.Digits\) in .*runs/lightning_app"
    with pytest.raises(FileNotFoundError, match=looked):
        main([subcommand, *DIGITS, "--ckpt_path", "last"])


class FullDisk:
    """A file on a full disk: every write fails with ENOSPC."""

    def __init__(self, file) -> None:
        self.file = file

    def write(self, data) -> int:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    def __getattr__(self, name: str):
        return getattr(self.file, name)

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.file.close()


def test_a_full_disk_says_so_and_keeps_the_previous_checkpoint(tmp_path, monkeypatch):
    path = tmp_path / "checkpoints" / "last.ckpt"
    AtomicCheckpointIO().save_checkpoint({"global_step": 5}, path)
    full = lambda file, mode="r": FullDisk(builtins.open(file, mode)) if "w" in mode else builtins.open(file, mode)  # noqa: E731
    monkeypatch.setattr(checkpoints, "open", full, raising=False)
    with pytest.raises(OSError, match=rf"No space left to write checkpoint {path} \(No space left on device in {path.parent}\)"):
        AtomicCheckpointIO().save_checkpoint({"global_step": 6, "state_dict": {"w": torch.ones(1000)}}, path)
    monkeypatch.undo()
    assert load_checkpoint(path)["global_step"] == 5  # the previous one, with its record
    assert sorted(p.name for p in path.parent.iterdir()) == ["last.ckpt", "last.ckpt.sha256"]
