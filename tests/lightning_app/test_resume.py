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

from datamodules.base import BatchLoader
from lightning_app.cli import main
from lightning_app.resume import find_last_checkpoint, resolve_resume

ROOT = Path(__file__).parents[2]
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
    wandb_ids = {p.name.rsplit("-", 1)[-1] for p in (killed / "runs/wandb").glob("offline-run-*")}
    assert len(list((killed / "runs/wandb").glob("offline-run-*"))) == 2 and wandb_ids == {folder.name}

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
    assert state == {"epoch": 4, "yielded": 2}

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
    logger = {"init_args": {"save_dir": str(tmp_path), "project": "lightning_app", "id": None, "version": None, "resume": None}}
    logger["dict_kwargs"] = {"group": "digits_mlp"}
    config = {"ckpt_path": ckpt_path, "trainer": {"default_root_dir": "runs", "logger": logger}}
    config.update(model={"class_path": "modules.MLP"}, data={"class_path": "datamodules.Digits"})
    return dict_to_namespace(config)


def test_resolve_resume_sets_the_path_and_the_wandb_run(tmp_path):
    last = write_run(tmp_path / "lightning_app", "run123", "modules.MLP", "digits_mlp", 1000.0)
    config = fit_config(tmp_path, "last")
    resolve_resume(config, "fit")
    assert config.ckpt_path == str(last)
    assert config.trainer.logger.init_args.id == "run123" and config.trainer.logger.init_args.resume == "allow"

    named = fit_config(tmp_path, "last")
    named.trainer.logger.init_args.id = "slurm-42"  # a requeued job names its run: its own last.ckpt only
    resolve_resume(named, "fit")
    assert named.ckpt_path is None and named.trainer.logger.init_args.id == "slurm-42"
    own = write_run(tmp_path / "lightning_app", "slurm-42", "modules.MLP", "digits_mlp", 500.0)  # older than run123
    named = fit_config(tmp_path, "last")
    named.trainer.logger.init_args.id = "slurm-42"
    resolve_resume(named, "fit")
    assert named.ckpt_path == str(own) and named.trainer.logger.init_args.resume == "allow"

    nothing = fit_config(tmp_path / "empty", "last")
    resolve_resume(nothing, "fit")  # a first attempt of a requeued job: a new run, not an error
    assert nothing.ckpt_path is None and nothing.trainer.logger.init_args.id is None
