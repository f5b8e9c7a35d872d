"""One run per run folder: runs without a logger get folders of their own; a busy folder is refused at once."""

import contextlib
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from lightning_app.cli import main

ROOT = Path(__file__).parents[3]
FIT = ["fit", "--config", str(ROOT / "configs/digits_mlp.yaml"), "--trainer.logger", "false", "--data.batch_size", "128",
       "--trainer.limit_train_batches", "3", "--trainer.enable_progress_bar", "false", "--trainer.enable_model_summary",
       "false", "--trainer.num_sanity_val_steps", "0", "--test_after_fit", "false"]  # fmt: skip
HOLD = "import sys; from pathlib import Path; from lightning_app.record.folder import lock_folder; lock = lock_folder(Path(sys.argv[1]))"
HOLD += "; print('locked', flush=True); sys.stdin.read()"


def snapshot(folder: Path) -> dict[Path, int]:
    return {path: path.stat().st_mtime_ns for path in folder.rglob("*")}


def test_runs_without_a_logger_get_folders_of_their_own(in_tmp):
    main([*FIT, "--trainer.max_epochs", "1"])
    main([*FIT, "--trainer.max_epochs", "1", "--model.hidden_sizes", "[8]"])
    first, second = sorted((in_tmp / "runs/lightning_app").iterdir(), key=lambda p: p.stat().st_mtime)
    assert first.name.startswith("digits_mlp-") and second.name.startswith("digits_mlp-")
    assert "- 128\n" in (first / "config.yaml").read_text() and "- 8\n" in (second / "config.yaml").read_text()
    assert all((run / "checkpoints/last.ckpt").is_file() and (run / "summary.json").is_file() for run in (first, second))


@contextlib.contextmanager
def held(folder: Path):
    """Another process that holds ``folder``'s lock until it is killed with SIGKILL; yields its PID."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(folder)], env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    try:
        assert holder.stdout.readline() == b"locked\n"
        yield holder.pid
    finally:
        holder.kill()  # SIGKILL: no code of its own releases the lock, the kernel does
        holder.wait()


@pytest.mark.slow
def test_a_second_run_on_a_busy_folder_fails_at_once(in_tmp):
    main([*FIT, "--trainer.max_epochs", "1"])
    (run,) = (in_tmp / "runs/lightning_app").iterdir()
    with held(run) as pid:
        before = snapshot(run)
        with pytest.raises(RuntimeError, match=rf"{run} is in use by PID {pid} on .*: another run is training there"):
            main([*FIT, "--trainer.max_epochs", "2", "--ckpt_path", "last"])
        assert snapshot(run) == before  # not a byte written: no config, no metrics, no checkpoint
    resumed = main([*FIT, "--trainer.max_epochs", "2", "--ckpt_path", "last"])  # the stale lock does not block
    assert resumed.trainer.global_step == 6 and torch.load(run / "checkpoints/last.ckpt", weights_only=True)["global_step"] == 6
    assert (run / "run.lock").read_text().startswith(f"PID {os.getpid()} on ")


@pytest.mark.slow
def test_a_busy_wandb_run_is_refused_before_it_is_opened(in_tmp):
    at = FIT.index("--trainer.logger")
    wandb = [*FIT[:at], *FIT[at + 2 :], "--trainer.logger.init_args.id", "busy"]  # the default logger, W&B, offline
    with held(in_tmp / "runs/lightning_app/busy") as pid:
        with pytest.raises(RuntimeError, match=rf"lightning_app/busy is in use by PID {pid}"):
            main(wandb)
    assert not list(in_tmp.glob("runs/wandb/*busy*"))  # no W&B run was started (or finished) under that id


@pytest.mark.parametrize("key, value", [("id", "../../escaped"), ("id", "a/b"), ("version", ".."), ("project", "/etc"),
                                        ("name", "x\ny")])  # fmt: skip
def test_a_run_id_that_leaves_the_runs_root_is_refused_before_any_file_is_made(key, value, in_tmp, monkeypatch):
    (in_tmp / "work").mkdir()
    monkeypatch.chdir(in_tmp / "work")  # runs/lightning_app/../../escaped is in_tmp/work/escaped
    with pytest.raises(ValueError, match=rf"--trainer.logger.init_args.{key} '.*' is not a run name: use letters"):
        main(["fit", "--config", str(ROOT / "configs/digits_mlp.yaml"), f"--trainer.logger.init_args.{key}={value}"])
    assert list(in_tmp.rglob("*")) == [in_tmp / "work"]  # no lock, no folder
