"""Which model class a checkpoint may name, and whether the model its hyperparameters build fits its
state dict: checked before anything is allocated (``ckpt_path.py`` and ``generate`` call these)."""

import importlib
import inspect
from typing import Any

import lightning as L
import torch

PROJECT_PACKAGES = ("modules",)  # model classes a checkpoint may name without --trusted_packages


def import_class(class_path: str) -> Any:
    """The class at ``<module>.<name>``; None when the module has no such name (or there is no module)."""
    module, _, name = class_path.rpartition(".")
    return getattr(importlib.import_module(module), name, None) if module else None


def check_packages(trusted: list[str]) -> None:
    """Fails when ``--trusted_packages`` holds something that is not a package name."""
    if wrong := [package for package in trusted if not str(package).isidentifier()]:
        raise ValueError(f"--trusted_packages {wrong} are not package names: give names such as [my_models]")


def checkpoint_model_class(class_path: str, trusted: list[str], source: str) -> type[L.LightningModule]:
    """The LightningModule class a checkpoint names, imported only from ``modules`` or a trusted package."""
    check_packages(trusted)
    package = class_path.split(".", 1)[0]
    allowed = (*PROJECT_PACKAGES, *trusted)
    if package not in allowed or "." not in class_path:
        raise ValueError(
            f"{source} names the model class {class_path!r}, which is not imported: a checkpoint may only name "
            f"LightningModule classes of the packages {', '.join(allowed)}. If you trust this checkpoint and the "
            f"package {package!r}, allow it with --trusted_packages [{package}]"
        )
    try:
        cls = import_class(class_path)
    except ImportError as error:
        raise ValueError(
            f"{source} names the model class {class_path!r}, which cannot be imported ({error}): a checkpoint "
            "names a module and its class, such as modules.MLP"
        ) from None
    if not (isinstance(cls, type) and issubclass(cls, L.LightningModule)):
        raise ValueError(f"{source} names {class_path!r}, which is not a LightningModule class")
    if cls.__module__.split(".", 1)[0] not in allowed:  # a name a module imported: modules.x.L.LightningModule
        raise ValueError(
            f"{source} names {class_path!r}, a class of {cls.__module__}, not of the packages {', '.join(allowed)}"
        )
    return cls


def check_shapes(cls: type, hparams: dict[str, Any], state_dict: dict[str, Any], source: str) -> None:
    """Fails, naming ``source`` and the first differing parameter, when ``cls(**hparams)`` (those it takes)
    has other parameter shapes than ``state_dict``. The model is built on the ``meta`` device, which
    allocates nothing: a crafted checkpoint's sizes never reach the memory before they are compared.
    A parameter holding NaN or infinity fails too: such a model predicts nothing, silently."""
    accepted = inspect.signature(cls.__init__).parameters
    with torch.device("meta"):
        model = cls(**{key: value for key, value in hparams.items() if key in accepted})
    for name, parameter in model.named_parameters():
        saved = state_dict.get(name)
        shape = tuple(saved.shape) if isinstance(saved, torch.Tensor) else None
        if shape != tuple(parameter.shape):
            held = f"holds {list(shape)}" if shape is not None else "lacks it"
            raise ValueError(
                f"{source}: its hyperparameters build {name} of shape {list(parameter.shape)}, but its state_dict "
                f"{held}: the checkpoint is inconsistent (crafted or edited); do not use it"
            )
        if saved.is_floating_point() and not bool(torch.isfinite(saved).all()):
            raise ValueError(
                f"{source}: its parameter {name} holds NaN or infinite values; the run that wrote it diverged: "
                "take an earlier checkpoint of that run"
            )
