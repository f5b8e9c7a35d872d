"""What a ``--ckpt_path`` checkpoint restores, and what it may import.

Lightning's CLI re-parses a checkpoint's hyperparameters over the command line before anything is
built (its ``_parse_ckpt_path``): unchecked, importing whatever class the checkpoint names, and with
the values the data module decides (linked: ``vocab``, ``block_size``, ...) as if they were model
arguments, so language-model checkpoints failed by path (an RNN takes no ``block_size``; while
``vocab_size`` was linked, a Transformer failed the same way). Here the file is checked and loaded with ``weights_only``
(``lightning_app/checkpoints.py``); its model class must be the one given, and is imported, to
compare, only from ``modules`` or a ``--trusted_packages`` package; the linked values are left to the
data module, and must equal the checkpoint's.
"""

import importlib
import inspect
from typing import Any

import lightning as L
from lightning.pytorch.utilities import rank_zero_warn

from lightning_app.checkpoints import load_checkpoint

PROJECT_PACKAGES = ("modules",)  # model classes a checkpoint may name without --trusted_packages
KEYWORDS = ("best", "hpc", "last")  # paths Lightning resolves itself


def import_class(class_path: str) -> Any:
    module, _, name = class_path.rpartition(".")
    return getattr(importlib.import_module(module), name, None) if module else None


def checkpoint_model_class(class_path: str, trusted: list[str], source: str) -> type[L.LightningModule]:
    """The LightningModule class a checkpoint names, imported only from ``modules`` or a trusted package."""
    package = class_path.split(".", 1)[0]
    allowed = (*PROJECT_PACKAGES, *trusted)
    if package not in allowed or "." not in class_path:
        raise ValueError(
            f"{source} names the model class {class_path!r}, which is not imported: a checkpoint may only name "
            f"LightningModule classes of the packages {', '.join(allowed)}. If you trust this checkpoint and the "
            f"package {package!r}, allow it with --trusted_packages [{package}]"
        )
    cls = import_class(class_path)
    if not (isinstance(cls, type) and issubclass(cls, L.LightningModule)):
        raise ValueError(f"{source} names {class_path!r}, which is not a LightningModule class")
    return cls


def restore_hyperparameters(parser, config, subcommand: str, linked: tuple[str, ...], trusted: list[str]):
    """Sets the model arguments from the checkpoint in ``ckpt_path`` (checked first); returns the new config
    and the checkpoint's linked values, which ``check_linked`` compares with the data module's."""
    ckpt_path = config[subcommand].get("ckpt_path")
    if not ckpt_path or ckpt_path in KEYWORDS:
        return config, {}
    hparams = dict(load_checkpoint(ckpt_path).get("hyper_parameters") or {})
    hparams.pop("_instantiator", None)
    saved, given = hparams.pop("_class_path", None), config[subcommand].model.class_path
    given_class = import_class(given)
    if saved not in (None, given) and checkpoint_model_class(str(saved), trusted, ckpt_path) is not given_class:
        raise ValueError(
            f"the model class given, {given}, is not the class of checkpoint {ckpt_path}, {saved}: "
            f"give --model {saved} (or its config), or a checkpoint of {given}"
        )
    links = {key: hparams.pop(key) for key in linked if key in hparams}  # the data module sets these again
    accepted = inspect.signature(given_class.__init__).parameters
    if ignored := sorted(set(hparams) - set(accepted)):
        rank_zero_warn(f"{ckpt_path}: {ignored} are not arguments of {given}: ignored")
    init_args = {key: value for key, value in hparams.items() if key in accepted}
    if named := [key for key, value in init_args.items() if _names_a_class(value)]:  # the parser would import it
        raise ValueError(f"{ckpt_path}: the hyperparameters {named} name classes; a checkpoint's must be plain values")
    return parser.parse_object({subcommand: {"model": {"class_path": given, "init_args": init_args}}}, config), links


def _names_a_class(value: Any) -> bool:
    if isinstance(value, dict):
        return "class_path" in value or any(map(_names_a_class, value.values()))
    return isinstance(value, list | tuple) and any(map(_names_a_class, value))


def _plain(value: Any) -> Any:
    return list(value) if isinstance(value, tuple | list) else value


def check_linked(model: L.LightningModule, links: dict[str, Any], ckpt_path: str) -> None:
    """Fails when the data module gives another shape or vocabulary than the checkpoint was trained with."""
    for key, saved in links.items():
        given = model.hparams.get(key)
        if given is not None and _plain(given) != _plain(saved):
            raise ValueError(
                f"checkpoint {ckpt_path} was trained with {key}={saved!r}, but the data module gives {given!r}: "
                "evaluate it on the data it was trained on"
            )
