"""`--compile true`: compiled equals eager, compiled checkpoints load uncompiled, kNN is left alone."""

import functools
import os
import subprocess
import sys
from pathlib import Path

import lightning as L
import pytest
import torch

from lightning_app.cli import main
from lightning_app.defaults import compile_model
from lightning_app.generate import generate, load_language_model
from modules import MLP
from tests.compiler import compiler_problem
from tests.fakes import write_text

ROOT = Path(__file__).parents[2]
GPT = str(ROOT / "configs" / "shakespeare_gpt.yaml")


@pytest.fixture
def compiler():
    if compiler_problem() is not None:
        pytest.skip(f"torch.compile is unavailable here: {compiler_problem()}")


@pytest.fixture
def eager_backend(monkeypatch):
    """torch.compile traces with dynamo but runs the graph eagerly: the plumbing, with no C++ compiler."""
    monkeypatch.setattr(torch, "compile", functools.partial(torch.compile, backend="eager"))


def gpt_fit(text: Path, *extra: str) -> list[str]:
    """The shipped GPT config shrunk to seconds: 1 layer of width 32, context 16, two epochs of 4 steps."""
    return ["fit", "--config", GPT, "--trainer.logger", "false", "--trainer.enable_progress_bar", "false",
            "--trainer.max_epochs", "2", "--data.init_args.path", str(text),
            "--data.init_args.block_size", "16", "--data.init_args.batch_size", "4",
            "--data.init_args.batches_per_epoch", "4", "--model.init_args.num_layers", "1",
            "--model.init_args.d_model", "32", "--model.init_args.nhead", "2", *extra]  # fmt: skip


def best_checkpoint(folder: Path) -> Path:
    (best,) = [p for p in folder.rglob("*.ckpt") if p.name != "last.ckpt"]
    return best


@pytest.mark.slow
def test_compiled_output_and_gradients_equal_eager(compiler):
    torch.manual_seed(0)
    eager = MLP(input_shape=(1, 8, 8), num_classes=10, hidden_sizes=[16])
    compiled = MLP(input_shape=(1, 8, 8), num_classes=10, hidden_sizes=[16])
    compiled.load_state_dict(eager.state_dict())
    assert compile_model(compiled)
    images, labels = torch.randn(8, 1, 8, 8), torch.arange(8)
    for model in (eager, compiled):
        model.loss(model(images), labels).backward()
    torch.testing.assert_close(compiled(images), eager(images), rtol=1e-5, atol=1e-6)
    for (name, p), q in zip(eager.named_parameters(), compiled.parameters(), strict=True):
        torch.testing.assert_close(q.grad, p.grad, rtol=1e-5, atol=1e-6, msg=name)
    assert list(compiled.state_dict()) == list(eager.state_dict())  # no `_orig_mod.` prefixes


def test_compile_option_reaches_the_model_but_not_the_checkpoint(eager_backend, in_tmp):
    text = write_text(in_tmp / "verse.txt")
    compiled = main(gpt_fit(text, "--compile", "true", "--checkpoint.dirpath", "compiled"))
    eager = main(gpt_fit(text, "--checkpoint.dirpath", "eager"))
    assert compiled.model._compiled_call_impl is not None and eager.model._compiled_call_impl is None
    checkpoint = torch.load(best_checkpoint(in_tmp / "compiled"), weights_only=True)
    assert "compile" not in checkpoint["hyper_parameters"]
    assert list(checkpoint["state_dict"]) == list(eager.model.state_dict())
    # The same seed and data: the compiled run trains the same weights as the eager one.
    for name, value in torch.load(best_checkpoint(in_tmp / "eager"), weights_only=True)["state_dict"].items():
        torch.testing.assert_close(checkpoint["state_dict"][name], value, msg=name)


@pytest.mark.slow
def test_checkpoint_of_a_compiled_bf16_fit_loads_uncompiled_and_generates(compiler, in_tmp):
    text = write_text(in_tmp / "verse.txt")
    cli = main(gpt_fit(text, "--compile", "true", "--trainer.precision", "bf16-mixed"))
    best = best_checkpoint(in_tmp / "runs")
    model = load_language_model(str(best))
    assert model._compiled_call_impl is None
    score = cli.trainer.checkpoint_callback.best_model_score.item()
    validated = L.Trainer(logger=False, enable_progress_bar=False, precision="bf16-mixed")
    (metrics,) = validated.validate(model, datamodule=cli.datamodule)
    assert metrics["val/loss"] == pytest.approx(score, rel=1e-3)  # the compiled run's own validation
    generate(str(best), prompt="To be", length=30, seed=0, output="sample.txt")
    sample = Path("sample.txt").read_text()
    assert sample.startswith("To be") and len(sample.rstrip("\n")) >= 35


@pytest.mark.slow
def test_compiled_ddp_fit_on_two_processes(compiler, in_tmp):
    text = write_text(in_tmp / "verse.txt")
    env = {k: v for k, v in os.environ.items() if k != "WANDB_SERVICE"} | {"PYTHONPATH": str(ROOT)}
    command = [sys.executable, "-m", "lightning_app", *gpt_fit(text, "--compile", "true"),
               "--trainer.strategy", "ddp", "--trainer.devices", "2", "--trainer.accelerator", "cpu"]  # fmt: skip
    run = subprocess.run(command, env=env, capture_output=True, text=True, timeout=900)
    assert run.returncode == 0, run.stderr[-3000:]
    checkpoint = torch.load(best_checkpoint(in_tmp / "runs"), weights_only=True)
    assert checkpoint["global_step"] == 8 and not any("_orig_mod" in key for key in checkpoint["state_dict"])
    assert load_language_model(str(best_checkpoint(in_tmp / "runs"))).generate_text("To", 10)[0].startswith("To")


def test_knn_is_left_uncompiled_and_unchanged(in_tmp):
    config = str(ROOT / "configs" / "digits_knn.yaml")
    args = ["fit", "--config", config, "--trainer.logger", "false", "--trainer.enable_progress_bar", "false"]
    plain = main(args)
    compiled = main([*args, "--compile", "true"])
    assert compiled.model._compiled_call_impl is None
    assert compiled.trainer.callback_metrics["test/acc"] == plain.trainer.callback_metrics["test/acc"]
