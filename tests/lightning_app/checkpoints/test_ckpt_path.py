"""Every model family, through the CLI: fit, then validate, test, predict and resume its checkpoint by path."""

import inspect
import json
import typing

import pytest
import torch

import modules
from lightning_app.cli import LINKED, main
from tests.fakes import exported_models, small_kwargs, write_text


def families() -> list[tuple[str, dict]]:
    """Every exported model; each RNN cell on its own."""
    cases = []
    for cls in exported_models():
        cell = inspect.signature(cls).parameters.get("cell")
        for variant in typing.get_args(cell.annotation) if cell else [None]:
            cases.append((cls.__name__, {"cell": variant} if variant else {}))
    return cases


COMMON = ["--trainer.logger", "false", "--trainer.enable_progress_bar", "false", "--trainer.enable_model_summary", "false",
          "--trainer.num_sanity_val_steps", "0"]  # fmt: skip


def args_for(name: str, variant: dict, folder) -> list[str]:
    # Sizes the data module links into the model (a Transformer's block_size) come from the data's arguments below.
    small = {key: value for key, value in small_kwargs(getattr(modules, name)).items() if key not in LINKED}
    values = {**small, **variant}
    model = [f"--model.{key}={value if isinstance(value, str) else json.dumps(value)}" for key, value in values.items()]
    if "vocab" in inspect.signature(getattr(modules, name)).parameters:
        text = write_text(folder / "verse.txt", repeats=8)
        data = ["--data", "datamodules.Text", "--data.path", str(text), "--data.block_size", "8",
                "--data.batch_size", "4", "--data.batches_per_epoch", "3", "--checkpoint.monitor", "val/loss",
                "--checkpoint.mode", "min"]  # fmt: skip
    else:
        data = ["--data", "datamodules.Digits", "--data.batch_size", "128", "--trainer.limit_train_batches", "3"]
    return ["--model", f"modules.{name}", *model, *data, *COMMON]


def predictions(cli) -> torch.Tensor:
    return torch.cat(cli.trainer.predict_loop.predictions)


@pytest.mark.parametrize(("name", "variant"), families(), ids=lambda v: v if isinstance(v, str) else v.get("cell", ""))
def test_fit_then_everything_by_path(name, variant, in_tmp):
    args = args_for(name, variant, in_tmp)
    fit = main(["fit", *args, "--trainer.max_epochs", "1"])
    (last,) = in_tmp.glob("runs/lightning_app/*/checkpoints/last.ckpt")
    steps = fit.trainer.global_step
    val = {k: v.item() for k, v in fit.trainer.callback_metrics.items() if k.startswith("val/")}

    validated = main(["validate", *args, "--ckpt_path", str(last)])
    assert {k: validated.trainer.callback_metrics[k].item() for k in val} == pytest.approx(val)
    if "test/acc" in fit.trainer.callback_metrics:  # image data: fit tested its best (here: its last) checkpoint
        tested = main(["test", *args, "--ckpt_path", str(last)])
        assert tested.trainer.callback_metrics["test/acc"].item() == fit.trainer.callback_metrics["test/acc"].item()
    predicted = main(["predict", *args, "--ckpt_path", str(last)])
    model = fit.model.eval()
    loader = predicted.datamodule.predict_dataloader()
    with torch.no_grad():
        expected = [model.predict_step(predicted.datamodule.on_after_batch_transfer(b, 0), i) for i, b in enumerate(loader)]
    assert torch.equal(predictions(predicted), torch.cat(expected))  # the checkpoint's model predicts as the trained one

    resumed = main(["fit", *args, "--trainer.max_epochs", "2", "--ckpt_path", str(last), "--test_after_fit", "false"])
    assert resumed.trainer.global_step == 2 * steps
    assert torch.load(last, weights_only=True)["global_step"] == 2 * steps  # the same run folder, continued
    summary = json.loads((last.parents[1] / "summary.json").read_text())
    assert summary["resumed"] == 1 and summary["epochs"] == 2
