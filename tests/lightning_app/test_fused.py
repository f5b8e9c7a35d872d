"""The optimizer takes torch's fused step where it has one and the config chose no implementation."""

from pathlib import Path

import pytest
import torch
from torch import nn

from lightning_app.cli import main
from lightning_app.fused import fuse

CPU = torch.device("cpu")
MLP_CONFIG = str(Path(__file__).parents[2] / "configs" / "mnist_mlp.yaml")


def parameters():
    return nn.Linear(4, 3).parameters()


@pytest.mark.parametrize("make", [torch.optim.Adam, torch.optim.AdamW, lambda p: torch.optim.SGD(p, lr=0.1, momentum=0.9)])
def test_adam_adamw_and_sgd_become_fused_on_a_cpu(make):
    optimizer = make(parameters())
    assert fuse(optimizer, CPU)
    assert all(group["fused"] for group in optimizer.param_groups)


def test_the_fused_step_equals_the_loop_within_rounding():
    torch.manual_seed(0)
    loop = nn.Linear(16, 8)
    fused = nn.Linear(16, 8)
    fused.load_state_dict(loop.state_dict())
    optimizers = [torch.optim.Adam(loop.parameters(), lr=1e-2), torch.optim.Adam(fused.parameters(), lr=1e-2)]
    assert fuse(optimizers[1], CPU) and not optimizers[0].param_groups[0]["fused"]
    x = torch.randn(32, 16)
    for _ in range(5):
        for model, optimizer in zip((loop, fused), optimizers):
            optimizer.zero_grad()
            model(x).square().mean().backward()
            optimizer.step()
    assert torch.allclose(loop.weight, fused.weight, atol=1e-6)


@pytest.mark.parametrize("chosen", [{"fused": False}, {"foreach": True}, {"foreach": False}, {"differentiable": True}])
def test_a_chosen_implementation_is_kept(chosen):
    optimizer = torch.optim.Adam(parameters(), **chosen)
    assert not fuse(optimizer, CPU)
    assert optimizer.param_groups[0]["fused"] in (None, False)


def test_other_optimizers_and_devices_are_left_alone():
    assert not fuse(torch.optim.RMSprop(parameters()), CPU)
    assert not fuse(torch.optim.Adam(parameters()), torch.device("meta"))  # no fused kernels there
    integer = torch.optim.SGD([torch.zeros(2, dtype=torch.float64), torch.zeros(2).long()], lr=0.1)
    assert not fuse(integer, CPU)


def test_the_cli_fuses_unless_the_config_says_otherwise(mnist_dir, in_tmp):
    fit = ["fit", "--config", MLP_CONFIG, "--data.data_dir", str(mnist_dir), "--trainer.max_epochs", "1",
           "--trainer.logger", "false", "--trainer.enable_progress_bar", "false", "--test_after_fit", "false"]  # fmt: skip
    (optimizer,) = main(fit).trainer.optimizers
    assert optimizer.param_groups[0]["fused"] is True
    (optimizer,) = main([*fit, "--optimizer.init_args.fused", "false"]).trainer.optimizers
    assert optimizer.param_groups[0]["fused"] is False
