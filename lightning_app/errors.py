"""Errors a user meets before anything is built, said so that the line that matters comes last."""

import re

import torch
from lightning.pytorch.cli import LightningArgumentParser

from lightning_app.checkpoints.model_class import import_class

UNION = "Does not validate against any of the Union subtypes"
NOISE = ("Given value", "Subtypes:", "Errors:", "- Expected a <class 'NoneType'>")  # lines every union error holds


def useful_last(message: str) -> str:
    """``message`` with its deepest reason repeated as the last line, under the full key it concerns.

    jsonargparse reports a wrong value inside a class (``--model.hidden_sizes abc``) as a union error
    whose one useful line sits in the middle of the subtypes and given values."""
    if UNION not in message:
        return message
    lines = [line for line in message.splitlines() if line.strip() and not line.strip().startswith(NOISE)]
    deepest = max(range(len(lines)), key=lambda i: len(lines[i]) - len(lines[i].lstrip()))
    keys = [m[1] for line in lines[: deepest + 1] if (m := re.search(r'Parser key "([^"]+)"', line))]
    reason = lines[deepest].strip().removeprefix("- ")
    return f"{message.rstrip()}\nIn short: {'.'.join(keys)}: {reason}" if keys else f"{message.rstrip()}\nIn short: {reason}"


class UsefulErrorParser(LightningArgumentParser):
    """Lightning's parser whose errors end with the line that says what to fix (``useful_last``)."""

    def error(self, message: str, ex: Exception | None = None):
        super().error(useful_last(message), ex)


def check_optimizer(config) -> None:
    """Fails when an optimizer is given for a model without trainable parameters (``modules.KNN``),
    naming both; the model is built on the ``meta`` device to count them, which allocates nothing."""
    optimizer, model = config.get("optimizer"), config.model
    if not optimizer or not model or import_class(model.class_path) is None:
        return
    init_args = dict(model.get("init_args") or {})
    try:
        with torch.device("meta"):
            built = import_class(model.class_path)(**init_args)
    except Exception:  # noqa: BLE001  needs a value the data module links in: instantiation will say so
        return
    if not any(parameter.requires_grad for parameter in built.parameters()):
        given = optimizer.class_path if hasattr(optimizer, "class_path") else optimizer
        raise ValueError(
            f"{model.class_path} trains no parameters, so it takes no optimizer, but {given} is given: drop "
            "--optimizer and the config's `optimizer:` (configs/mnist_knn.yaml is a config without one)"
        )
