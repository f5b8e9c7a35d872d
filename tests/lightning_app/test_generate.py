"""Language models end to end, as a user runs them: fit a shipped config, then generate from its checkpoint."""

import os
import subprocess
import sys
from pathlib import Path

import lightning as L
import pytest
import torch
import yaml

from datamodules import Text
from lightning_app.cli import main
from lightning_app.generate import generate, load_language_model
from tests.fakes import small_args, write_text

ROOT = Path(__file__).parents[2]
# With test_after_fit on, a data module without a test split is simply not tested.
EXTRA = {"shakespeare_gpt": [], "shakespeare_gru": ["--test_after_fit", "true"]}


def small(config: str) -> list[str]:
    """The config's model and data at tests/fakes.py's SMALL sizes (the data arguments after it win)."""
    return small_args(yaml.safe_load((ROOT / "configs" / f"{config}.yaml").read_text()))


@pytest.mark.slow
@pytest.mark.parametrize("config", EXTRA)
def test_fit_then_generate_without_the_data_file(config, in_tmp):
    text = write_text(in_tmp / "verse.txt")
    main(
        ["fit", "--config", str(ROOT / "configs" / f"{config}.yaml"), *small(config), "--trainer.logger", "false",
         "--trainer.max_epochs", "1", "--trainer.enable_progress_bar", "false", "--data.init_args.path", str(text),
         "--data.init_args.block_size", "16", "--data.init_args.batch_size", "4", "--data.init_args.batches_per_epoch", "5",
         *EXTRA[config]]
    )  # fmt: skip
    best = [p for p in (in_tmp / "runs").rglob("*.ckpt") if p.name != "last.ckpt"]
    assert len(best) == 1 and (best[0].parent / "last.ckpt").exists()
    vocab = "".join(sorted(set(text.read_text())))
    assert torch.load(best[0], weights_only=True)["hyper_parameters"]["vocab"] == vocab
    text.unlink()  # generation needs the checkpoint only

    model = load_language_model(str(best[0]))
    assert model.vocab == vocab and not model.training
    generate(str(best[0]), prompt="To be", length=40, seed=3, num_samples=2, output="a.txt")
    generate(str(best[0]), prompt="To be", length=40, seed=3, num_samples=2, output="b.txt")
    samples = Path("a.txt").read_text().split("\n---------------\n")
    assert Path("a.txt").read_text() == Path("b.txt").read_text()
    assert len(samples) == 2 and all(s.startswith("To be") and len(s.rstrip("\n")) >= 40 for s in samples)
    with pytest.raises(ValueError, match=r"\['Z'\] are not in the model's vocabulary"):
        generate(str(best[0]), prompt="Zounds")
    with pytest.raises(FileNotFoundError, match="missing.ckpt: no such checkpoint"):
        generate("missing.ckpt")

    # The same through the command line, in a fresh process: the same seed gives the same text.
    args = ["--ckpt_path", str(best[0]), "--prompt", "To", "--length", "30", "--top_k", "5", "--seed", "1"]
    run = subprocess.run([sys.executable, "-m", "lightning_app.generate", *args], cwd=ROOT, capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    generate(str(best[0]), prompt="To", length=30, top_k=5, seed=1, output="same.txt")
    assert run.stdout == Path("same.txt").read_text()


@pytest.mark.parametrize(
    ("argument", "value", "message"),
    [("top_k", 0, "--top_k must be 1 or more, got 0"), ("num_samples", 0, "--num_samples must be 1 or more, got 0"),
     ("length", -1, "--length must be 0 or more, got -1"), ("temperature", -0.5, "--temperature must be 0 or more")],
)  # fmt: skip
def test_a_bad_argument_is_named_with_its_range(argument, value, message):
    with pytest.raises(ValueError, match=message):
        generate("never-read.ckpt", **{argument: value})


@pytest.mark.slow
def test_ddp_validation_loss_equals_one_process(in_tmp):
    """Two ranks train on their own random windows and split the validation windows between them;
    the synchronised loss must equal one process's loss over the whole validation text."""
    text = write_text(in_tmp / "verse.txt")
    env = {k: v for k, v in os.environ.items() if k != "WANDB_SERVICE"}
    env.update(PYTHONPATH=str(ROOT))
    command = [sys.executable, "-m", "lightning_app", "fit", "--config", str(ROOT / "configs" / "shakespeare_gpt.yaml"),
               *small("shakespeare_gpt"), "--trainer.logger", "false", "--trainer.max_epochs", "1", "--trainer.enable_progress_bar", "false",
               "--data.init_args.path", str(text), "--data.init_args.block_size", "16", "--data.init_args.batch_size", "5",
               "--data.init_args.batches_per_epoch", "3",
               "--trainer.strategy", "ddp", "--trainer.devices", "2", "--trainer.accelerator", "cpu"]  # fmt: skip
    subprocess.run(command, env=env, check=True, capture_output=True, timeout=300)
    (best,) = [p for p in (in_tmp / "runs").rglob("*.ckpt") if p.name != "last.ckpt"]
    checkpoint = torch.load(best, weights_only=True)
    (ddp_loss,) = [s["best_model_score"] for k, s in checkpoint["callbacks"].items() if k.startswith("ModelCheckpoint")]
    data = Text(path=str(text), block_size=16, batch_size=5)
    trainer = L.Trainer(logger=False, enable_progress_bar=False, enable_model_summary=False)
    (single,) = trainer.validate(load_language_model(str(best)), datamodule=data)
    assert single["val/loss"] == pytest.approx(ddp_loss.item(), rel=1e-5)


@pytest.mark.parametrize("output", [".", "no/such/folder/text.txt"])
def test_an_output_that_cannot_be_written_is_named_before_generating(output, in_tmp, monkeypatch):
    monkeypatch.setattr("lightning_app.generate.load_language_model", lambda *args: pytest.fail("loaded first"))
    with pytest.raises(ValueError, match=f"--output {output}: give a file in an existing folder"):
        generate("any.ckpt", output=output)


def test_cuda_without_cuda_is_said_so_and_not_blamed_on_the_checkpoint(in_tmp, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(ValueError, match="--device cuda: CUDA is not available on this machine; use --device cpu"):
        generate("any.ckpt", device="cuda")


@pytest.mark.slow
def test_the_command_loads_torch_with_the_collector_off_and_runs_with_it_on():
    from tests.lightning_app.test_main import spy

    seen = spy("lightning_app.generate", ["torch"], ["--help"])
    assert seen["seen"] == {"torch": False}  # loaded with the collector off
    assert seen["on"] and seen["frozen"] > 50_000  # then frozen out of its reach, and the collector on
