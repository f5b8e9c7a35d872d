"""Two "nodes" on localhost: `torchrun --nnodes 2 --nproc-per-node 1` (gloo) runs `fit --trainer.num_nodes 2`."""

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import lightning as L
import pytest
import torch

from datamodules import Digits
from modules import MLP

ROOT = Path(__file__).parents[2]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_two_nodes_train_one_model_on_the_whole_data(tmp_path):
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--nnodes", "2", "--nproc-per-node", "1"]
    torchrun += ["--rdzv-backend", "c10d", "--rdzv-endpoint", f"127.0.0.1:{free_port()}", "--rdzv-id", "test"]
    fit = ["-m", "lightning_app", "fit", "--config", str(ROOT / "configs/digits_mlp.yaml"), "--trainer.max_epochs", "2"]
    fit += ["--trainer.num_nodes", "2", "--trainer.devices", "1", "--trainer.accelerator", "cpu", "--trainer.strategy", "ddp"]
    fit += ["--trainer.enable_progress_bar", "false"]
    env = {k: v for k, v in os.environ.items() if k != "WANDB_SERVICE"}  # each node starts its own W&B service
    env.update(PYTHONPATH=str(ROOT), WANDB_MODE="offline", GLOO_SOCKET_IFNAME="lo")
    nodes = [subprocess.Popen([*torchrun, *fit], cwd=tmp_path, env=env, stderr=subprocess.PIPE) for _ in range(2)]
    for node in nodes:
        _, stderr = node.communicate(timeout=300)
        assert node.returncode == 0, stderr.decode()[-3000:]

    (run,) = (tmp_path / "runs/lightning_app").iterdir()  # one run, written by global rank 0 only
    summary = json.loads((run / "summary.json").read_text())
    assert (summary["processes"], summary["nodes"], summary["status"]) == (2, 2, "finished")
    best = next((run / "checkpoints").glob("epoch*.ckpt"))
    # Each rank takes half of the 1,294 training images: 11 batches of 64 per epoch instead of 21.
    assert torch.load(best, weights_only=True)["global_step"] == 2 * 11

    # The test accuracy synchronised over both nodes is the accuracy of those weights on the whole test split.
    model = MLP.load_from_checkpoint(best, map_location="cpu", weights_only=True)
    trainer = L.Trainer(logger=False, enable_progress_bar=False, enable_model_summary=False, enable_checkpointing=False)
    (single,) = trainer.test(model, datamodule=Digits(batch_size=64, test_split=0.2), verbose=False)
    assert summary["test"]["test/acc"] == pytest.approx(single["test/acc"], abs=1e-6)
