"""A run killed with SIGKILL mid-epoch resumes with `--ckpt_path last` to the same result, under the same W&B id."""

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml
from jsonargparse import Namespace, dict_to_namespace
from lightning.pytorch.callbacks import Callback

from datamodules.base import BatchLoader
from lightning_app.cli import main
from lightning_app.checkpoints.ckpt_path import continue_run, find_last_checkpoint, resolve_last
from lightning_app.record.logger import WANDB_LOGGER

ROOT = Path(__file__).parents[3]
# Digits: 1,294 training images, 21 batches of 64 per epoch. Dropout makes the random state matter.
FIT = [
    "fit", "--config", str(ROOT / "configs/digits_mlp.yaml"), "--trainer.max_epochs", "2", "--model.dropout", "0.2",
    "--faults.last_every_n_steps", "5", "--trainer.enable_progress_bar", "false", "--trainer.enable_model_summary", "false",
    "--test_after_fit", "false",
]  # fmt: skip
CSV = ["--trainer.logger", "lightning.pytorch.loggers.CSVLogger", "--trainer.logger.save_dir", "runs"]
KILL_AT = 28  # epoch 1, batch 7: the newest last.ckpt is from step 25, mid-epoch


def run_folders(root: Path) -> list[Path]:
    return sorted(p for p in (root / "runs/lightning_app").iterdir() if p.is_dir())


def weights(path: Path) -> dict[str, torch.Tensor]:
    return torch.load(path, map_location="cpu", weights_only=True)["state_dict"]


@pytest.mark.slow
def test_killed_run_resumes_to_the_same_result(in_tmp, monkeypatch):
    killed = in_tmp / "killed"
    killed.mkdir()
    kill = ["--trainer.callbacks+=tests.lightning_app.killer.KillAtStep", f"--trainer.callbacks.step={KILL_AT}"]
    # Its own W&B service: a child sharing the parent's (WANDB_SERVICE) would leave the killed run open there.
    env = {k: v for k, v in os.environ.items() if k != "WANDB_SERVICE"}
    env.update(PYTHONPATH=str(ROOT), WANDB_MODE="offline")
    process = subprocess.run([sys.executable, "-m", "lightning_app", *FIT, *kill], cwd=killed, env=env, capture_output=True)
    assert process.returncode == -signal.SIGKILL, process.stderr.decode()[-2000:]
    (folder,) = run_folders(killed)
    last = folder / "checkpoints/last.ckpt"
    assert torch.load(last, weights_only=True)["global_step"] == 25
    assert not list(folder.rglob("*.part"))

    monkeypatch.chdir(killed)
    main([*FIT, "--ckpt_path", "last"])
    assert run_folders(killed) == [folder]  # the same run folder, not a new run
    logger = yaml.safe_load((folder / "config.yaml").read_text())["trainer"]["logger"]
    assert logger["dict_kwargs"]["group"] == "digits_mlp"  # the resumed run is still found as this experiment
    assert find_last_checkpoint(killed / "runs/lightning_app", "modules.MLP", "datamodules.Digits", "digits_mlp") == last
    # Each W&B run's id from its file (run-<id>.wandb): a resume within the killed run's second gets a folder
    # name with a suffix (offline-run-<time>-<id>-1), so the folder's name does not end with the id.
    runs = list((killed / "runs/wandb").glob("offline-run-*"))
    wandb_ids = {file.name.removeprefix("run-").removesuffix(".wandb") for run in runs for file in run.glob("run-*.wandb")}
    assert len(runs) == 2 and wandb_ids == {folder.name}

    reference = in_tmp / "reference"
    reference.mkdir()
    monkeypatch.chdir(reference)
    main([*FIT, *CSV])  # W&B plays no part in the numbers: a lighter logger for the reference
    (uninterrupted,) = (reference / "runs").glob("version_*")

    resumed_epochs = [json.loads(line) for line in (folder / "metrics.jsonl").read_text().splitlines()]
    reference_epochs = [json.loads(line) for line in (uninterrupted / "metrics.jsonl").read_text().splitlines()]
    drop_time = [{k: v for k, v in record.items() if k != "time"} for record in resumed_epochs + reference_epochs]
    assert drop_time[:2] == drop_time[2:]  # every train and val metric of both epochs, exactly
    resumed, expected = (json.loads((f / "summary.json").read_text()) for f in (folder, uninterrupted))
    assert resumed["last"] == expected["last"] and resumed["resumed"] == 1 and resumed["status"] == "finished"
    final, final_reference = weights(last), weights(uninterrupted / "checkpoints/last.ckpt")
    assert all(torch.equal(final[name], final_reference[name]) for name in final_reference)


def test_batch_loader_state_skips_the_batches_already_seen():
    tensors = (torch.arange(10), torch.arange(10) * 2)
    loader = BatchLoader(tensors, batch_size=3, shuffle=True, seed=1)
    loader.set_epoch(4)
    iterator = iter(loader)
    seen = [next(iterator)[0] for _ in range(2)]
    state = loader.state_dict()
    assert state == {"epoch": 4, "yielded": 2, "drawn": 2}

    restored = BatchLoader(tensors, batch_size=3, shuffle=True, seed=1)
    restored.load_state_dict(state)
    rest = [batch[0] for batch in restored]
    assert torch.equal(torch.cat(seen + rest).sort().values, torch.arange(10))  # each sample once in the epoch
    full = BatchLoader(tensors, batch_size=3, shuffle=True, seed=1)
    full.set_epoch(4)
    assert torch.equal(torch.cat(seen + rest), torch.cat([b[0] for b in full]))  # the same order as uninterrupted
    assert len(list(restored)) == 4  # the next pass is a whole epoch again

    other_epoch = BatchLoader(tensors, batch_size=3, shuffle=True, seed=1)
    other_epoch.load_state_dict(state)
    other_epoch.set_epoch(5)  # resumed at an epoch boundary: nothing to skip
    assert len(list(other_epoch)) == 4


def write_run(project: Path, run_id: str, model: str, group: str, mtime: float) -> Path:
    config = {"model": {"class_path": model}, "data": {"class_path": "datamodules.Digits"}}
    config["trainer"] = {"logger": {"dict_kwargs": {"group": group}}}
    (project / run_id / "checkpoints").mkdir(parents=True)
    (project / run_id / "config.yaml").write_text(yaml.safe_dump(config))
    last = project / run_id / "checkpoints/last.ckpt"
    last.write_bytes(b"")
    os.utime(last, (mtime, mtime))
    return last


def test_last_is_the_newest_checkpoint_of_the_same_experiment(tmp_path):
    project = tmp_path / "lightning_app"
    older = write_run(project, "a", "modules.MLP", "digits_mlp", 1000.0)
    newer = write_run(project, "b", "modules.MLP", "digits_mlp", 2000.0)
    write_run(project, "c", "modules.LinearSoftmax", "digits_mlp", 3000.0)  # another model
    write_run(project, "d", "modules.MLP", "digits_mlp_wide", 4000.0)  # another experiment
    assert find_last_checkpoint(project, "modules.MLP", "datamodules.Digits", "digits_mlp") == newer
    os.utime(older, (5000.0, 5000.0))
    assert find_last_checkpoint(project, "modules.MLP", "datamodules.Digits", "digits_mlp") == older
    assert find_last_checkpoint(project, "modules.MLP", "datamodules.MNIST", "digits_mlp") is None


def fit_config(tmp_path: Path, ckpt_path: str | None) -> Namespace:
    logger = {"class_path": WANDB_LOGGER}
    logger["init_args"] = {"save_dir": str(tmp_path), "project": "lightning_app", "id": None, "version": None, "resume": None}
    logger["dict_kwargs"] = {"group": "digits_mlp"}
    config = {"ckpt_path": ckpt_path, "trainer": {"default_root_dir": "runs", "logger": logger}}
    config.update(model={"class_path": "modules.MLP"}, data={"class_path": "datamodules.Digits"})
    return dict_to_namespace(config)


def resolve(config: Namespace, subcommand: str = "fit") -> None:
    """What the CLI does before it builds anything: `last` becomes a path, the logger points at its run."""
    asked_last = config.ckpt_path == "last"
    resolve_last(config, subcommand, "digits_mlp")
    continue_run(config, subcommand, "digits_mlp", asked_last)


def test_resolve_resume_sets_the_path_and_the_wandb_run(tmp_path):
    last = write_run(tmp_path / "lightning_app", "run123", "modules.MLP", "digits_mlp", 1000.0)
    config = fit_config(tmp_path, "last")
    resolve(config)
    assert config.ckpt_path == str(last)
    assert config.trainer.logger.init_args.id == "run123" and config.trainer.logger.init_args.resume == "allow"

    named = fit_config(tmp_path, "last")
    named.trainer.logger.init_args.id = "slurm-42"  # a requeued job names its run: its own last.ckpt only
    resolve(named)
    assert named.ckpt_path is None and named.trainer.logger.init_args.id == "slurm-42"
    own = write_run(tmp_path / "lightning_app", "slurm-42", "modules.MLP", "digits_mlp", 500.0)  # older than run123
    named = fit_config(tmp_path, "last")
    named.trainer.logger.init_args.id = "slurm-42"
    resolve(named)
    assert named.ckpt_path == str(own) and named.trainer.logger.init_args.resume == "allow"

    nothing = fit_config(tmp_path / "empty", "last")
    resolve(nothing)  # a first attempt of a requeued job: a new run, not an error
    assert nothing.ckpt_path is None and nothing.trainer.logger.init_args.id is None
    with pytest.raises(FileNotFoundError, match=r"no last\.ckpt of experiment 'digits_mlp' .* in .*empty/lightning_app"):
        resolve(fit_config(tmp_path / "empty", "last"), "test")  # nothing to evaluate: an error


class SignalAtStep(Callback):
    """Sends this process a signal at the end of the batch that reaches ``global_step == step``.

    Args:
        step: Optimizer step after which the signal comes.
        signum: The signal: 2 for SIGINT (Ctrl-C), 15 for SIGTERM.
    """

    def __init__(self, step: int, signum: int) -> None:
        self.step, self.signum = step, signum

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx: int) -> None:
        if trainer.global_step == self.step:
            os.kill(os.getpid(), self.signum)


# Digits at batch size 128: 11 steps per epoch, two epochs.
SIGNALLED = [*FIT, "--data.batch_size", "128", "--faults.last_every_n_steps", "0", "--trainer.logger", "false"]


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory) -> dict[str, torch.Tensor]:
    """The final weights of the run the signal tests interrupt, run without interruption."""
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(tmp_path_factory.mktemp("uninterrupted"))
        return weights(Path(main(SIGNALLED).trainer.checkpoint_callback.dirpath) / "last.ckpt")


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_a_signal_stops_cleanly_and_the_run_resumes_from_that_step(signum, uninterrupted, in_tmp):
    stop = [f"--trainer.callbacks+={__name__}.SignalAtStep", "--trainer.callbacks.step=14", f"--trainer.callbacks.signum={signum}"]
    with pytest.raises(SystemExit) as stopped:
        main([*SIGNALLED, *stop])  # the signal comes mid-epoch 1, at step 14
    assert stopped.value.code == 128 + signum
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # our Ctrl-C handler is gone again
    (last,) = in_tmp.glob("runs/lightning_app/digits_mlp-*/checkpoints/last.ckpt")
    assert torch.load(last, weights_only=True)["global_step"] == 14
    summary = json.loads((last.parents[1] / "summary.json").read_text())
    assert summary["status"].startswith(f"stopped: {signal.Signals(signum).name} at epoch 1, global step 14: last.ckpt")

    resumed = main([*SIGNALLED, "--ckpt_path", "last"])
    assert resumed.trainer.global_step == 22 and Path(resumed.trainer.default_root_dir) == last.parents[1]
    final = weights(last)
    assert all(torch.equal(final[name], uninterrupted[name]) for name in uninterrupted)  # as if never stopped


class SignalInValidation(Callback):
    """Sends this process a signal when the validation of epoch ``epoch`` starts.

    Args:
        epoch: The epoch whose validation is interrupted.
        signum: The signal.
    """

    def __init__(self, epoch: int, signum: int) -> None:
        self.epoch, self.signum = epoch, signum

    def on_validation_start(self, trainer, pl_module) -> None:
        if trainer.current_epoch == self.epoch and not trainer.sanity_checking:
            os.kill(os.getpid(), self.signum)


def test_ctrl_c_in_the_last_validation_stops_before_the_test(in_tmp):
    fit = [*SIGNALLED, "--test_after_fit", "true"]
    stop = [f"--trainer.callbacks+={__name__}.SignalInValidation", "--trainer.callbacks.epoch=1", "--trainer.callbacks.signum=2"]
    with pytest.raises(SystemExit) as stopped:
        main([*fit, *stop])
    assert stopped.value.code == 130
    (run,) = in_tmp.glob("runs/lightning_app/digits_mlp-*")
    assert torch.load(run / "checkpoints/last.ckpt", weights_only=True)["global_step"] == 22  # the end of training
    summary = json.loads((run / "summary.json").read_text())
    assert "test" not in summary and summary["status"].startswith("stopped: SIGINT at epoch 2, global step 22")  # after it
