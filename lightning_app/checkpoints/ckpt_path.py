"""``--ckpt_path``: which checkpoint it means, whether it may be loaded, what it restores, and which
run folder the run then writes to. The CLI calls ``resolve`` once, before anything is built, and
``check_linked`` once the data module has given its shapes.

Which checkpoint: ``last`` means the newest ``last.ckpt`` under ``<save_dir>/<project>/*/checkpoints/``
whose run has the same experiment (config file name, or data and model when there is none), model
class and data class; with a W&B run id given (``--trainer.logger.init_args.id``, e.g. from the SLURM
job id) it means that run's ``last.ckpt``. Nothing found: ``fit`` warns and starts a new run (a
requeued job can always pass ``--ckpt_path last``); ``validate``, ``test`` and ``predict`` fail, naming
what they looked for and where.

What it restores: the file is checked against its integrity record and loaded with ``weights_only``
(``files.py``); the model class it names must be the one given, and is imported, to compare, only
from ``modules`` or a ``--trusted_packages`` package; its hyperparameters become the model's
arguments, except the values the data module decides (``vocab``, ``block_size``, ...), which must
equal the checkpoint's. Lightning's CLI would instead re-parse the checkpoint's hyperparameters
unchecked (``LightningCLI._parse_ckpt_path``, which ``AppCLI`` turns off).

Which folder: a ``fit`` given a checkpoint inside a run folder continues that run: the same W&B run
id (``resume="allow"``), so its curves continue, or without a logger the same folder.
"""

import inspect
from pathlib import Path
from typing import Any

import lightning as L
import yaml
from lightning.pytorch.utilities import rank_zero_info, rank_zero_warn

from lightning_app.checkpoints.files import (
    CorruptCheckpoint,
    load_checkpoint,
    local_path,
    newest_whole_checkpoint,
)
from lightning_app.checkpoints.model_class import check_packages, check_shapes, checkpoint_model_class, import_class
from lightning_app.record.folder import PROJECT, check_logger_names, experiment_name, new_run_id
from lightning_app.record.logger import WANDB_LOGGER, wandb_group
from lightning_app.record.read import read_bounded

KEYWORDS = ("best", "hpc", "last")  # paths Lightning resolves itself
CONFIG_LIMIT = 1 << 24  # bytes: a run's config.yaml is a few kB


def resolve(parser, config, subcommand: str, linked: tuple[str, ...]):
    """Resolves, checks and restores ``--ckpt_path`` in ``config`` (the whole parsed config).

    Returns the new config, the checkpoint's values of ``linked`` (for ``check_linked``) and the
    folder of a run without a logger (None with one).
    """
    own = config.get(subcommand, config)
    check_logger_names(own.trainer.logger)
    check_packages(own.get("trusted_packages") or [])
    if own.get("ckpt_path"):
        own.ckpt_path = local_path(own.ckpt_path)
    experiment = experiment_name(own)
    asked_last = own.get("ckpt_path") == "last"
    resolve_last(own, subcommand, experiment)
    links = {}
    if subcommand in config:  # it parses the config again: first, before anything else is set
        try:
            config, links = restore_hyperparameters(parser, config, subcommand, linked, own.trusted_packages)
        except CorruptCheckpoint as error:
            if not asked_last:
                raise
            own.ckpt_path = fall_back(error, Path(own.ckpt_path), subcommand)
            config, links = restore_hyperparameters(parser, config, subcommand, linked, own.trusted_packages)
    return config, links, continue_run(config.get(subcommand, config), subcommand, experiment, asked_last)


def fall_back(error: CorruptCheckpoint, last: Path, subcommand: str) -> str:
    """For ``--ckpt_path last`` whose ``last.ckpt`` is corrupt: ``fit`` warns and takes the newest checkpoint of
    that run whose record verifies; the others fail, naming that checkpoint as the one to pass."""
    good = newest_whole_checkpoint(last.parent, last)
    if good is None:
        raise ValueError(f"{error}; no other checkpoint of that run verifies: start a new run without --ckpt_path last")
    if subcommand != "fit":
        raise ValueError(f"{error}; the newest checkpoint of that run that verifies is {good}: pass --ckpt_path {good}")
    rank_zero_warn(f"--ckpt_path last: {error}; continuing from {good}, the newest checkpoint of that run that verifies")
    return str(good)


def restore_hyperparameters(parser, config, subcommand: str, linked: tuple[str, ...], trusted: list[str]):
    """Sets the model arguments from the checkpoint in ``ckpt_path`` (checked first); returns the new config
    and the checkpoint's linked values, which ``check_linked`` compares with the data module's."""
    ckpt_path = config[subcommand].get("ckpt_path")
    if not ckpt_path or ckpt_path in KEYWORDS:
        return config, {}
    checkpoint = load_checkpoint(ckpt_path)
    if not isinstance(checkpoint, dict) or not isinstance(checkpoint.get("hyper_parameters") or {}, dict):
        raise ValueError(f"{ckpt_path}: not a Lightning checkpoint (no mapping of hyper_parameters)")
    hparams = dict(checkpoint.get("hyper_parameters") or {})
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
    check_shapes(given_class, {**init_args, **links}, checkpoint.get("state_dict") or {}, ckpt_path)
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


def _same_experiment(run_config: Path, model: str, data: str, group: str | None) -> bool:
    try:
        config = yaml.safe_load(read_bounded(run_config, CONFIG_LIMIT)) or {}
    except FileNotFoundError:
        return False  # not a run folder
    except (ValueError, yaml.YAMLError) as error:  # a UnicodeDecodeError is a ValueError
        raise ValueError(
            f"--ckpt_path last: {run_config} is not a run's config ({error}); move that run folder away, "
            "or pass the path of a checkpoint"
        ) from None
    if not isinstance(config, dict):
        raise ValueError(f"--ckpt_path last: {run_config} is not a run's config (not a mapping); move that run folder away")
    fit = config.get("fit", config)  # a config saved without the subcommand level
    logger = (fit.get("trainer") or {}).get("logger") or {}
    return (
        (fit.get("model") or {}).get("class_path") == model
        and (fit.get("data") or {}).get("class_path") == data
        and ((logger.get("dict_kwargs") or {}).get("group") if isinstance(logger, dict) else None) == group
    )


def find_last_checkpoint(project_dir: Path, model: str, data: str, group: str | None, experiment: str | None = None):
    """The newest ``<project_dir>/<run>/checkpoints/last.ckpt`` of the same experiment, or None.

    W&B runs record the experiment as their ``group``; runs without a logger in their folder's name.
    """
    candidates = [
        path
        for path in project_dir.glob("*/checkpoints/last.ckpt")
        if _same_experiment(path.parents[1] / "config.yaml", model, data, group)
        and (experiment is None or path.parents[1].name.rsplit("-", 1)[0] == experiment)
    ]
    return max(candidates, key=lambda path: path.stat().st_mtime, default=None)


def _project_dir(config) -> tuple[bool, Path]:
    """Whether the logger is W&B, and the folder that holds the run folders (W&B's, or ours without a logger)."""
    logger = config.trainer.logger
    root = Path(config.trainer.default_root_dir)
    if bool(logger) and logger.class_path == WANDB_LOGGER:
        return True, Path(logger.init_args.save_dir or root) / (logger.init_args.project or PROJECT)
    return False, root / PROJECT


def _find_last(config, subcommand: str, experiment: str) -> str | None:
    wandb, project_dir = _project_dir(config)
    init = config.trainer.logger.init_args if wandb else None
    if init is not None and (init.id or init.version):  # this run's own, or none yet
        own = project_dir / str(init.id or init.version) / "checkpoints" / "last.ckpt"
        found, looked = (own if own.exists() else None), f"no {own}"
    else:
        group = None  # runs without a logger are told apart by their folder's name
        if wandb:  # the W&B group, named as the CLI names it
            group = wandb_group(config.trainer.logger, experiment)
        model, data = config.model.class_path, config.data.class_path
        found = find_last_checkpoint(project_dir, model, data, group, None if wandb else experiment)
        looked = f"no last.ckpt of experiment {experiment!r} ({model} on {data}) in {project_dir}/*/checkpoints/"
    if found is not None:
        rank_zero_info(f"--ckpt_path last: {found}")
        return str(found)
    if subcommand != "fit":
        raise FileNotFoundError(f"--ckpt_path last: {looked}; run `fit` first, or pass the path of a checkpoint")
    rank_zero_warn(f"--ckpt_path last: {looked}; starting a new run")  # not an error: a requeued job passes it
    return None


def resolve_last(config, subcommand: str, experiment: str) -> None:
    """Turns ``ckpt_path: last`` into a path; ``config`` is the subcommand's, before instantiation."""
    logger = config.trainer.logger
    if config.get("ckpt_path") != "last":
        return
    if logger and logger.class_path != WANDB_LOGGER:
        if subcommand != "fit":
            raise ValueError(
                f"--ckpt_path last finds the runs of W&B or of --trainer.logger false; with {logger.class_path} "
                "give the checkpoint's path"
            )
        return  # Lightning's own `last`: this logger's new run folder
    config.ckpt_path = _find_last(config, subcommand, experiment)


def continue_run(config, subcommand: str, experiment: str, asked_last: bool) -> Path | None:
    """Points the W&B logger at the run a ``fit`` continues; returns the folder of a run without a logger
    (its trainer's ``default_root_dir``; the config keeps the user's root)."""
    logger = config.trainer.logger
    wandb, project_dir = _project_dir(config)
    init = logger.init_args if wandb else None
    if init is not None and asked_last and (init.id or init.version):
        init.resume = "allow"  # a requeued job may have started its W&B run before its first checkpoint
    checkpoints = Path(str(config.get("ckpt_path"))).parent
    run = checkpoints.parent if subcommand == "fit" and checkpoints.name == "checkpoints" else None
    run = run if run is not None and (run / "config.yaml").exists() else None
    if init is not None and run is not None and (init.id or init.version or run.name) == run.name:
        init.id = run.name
        init.resume = "allow"
    # Absolute, so that a resume names the checkpoint folder as the first run did (Lightning compares the names).
    return None if logger else (run or project_dir / new_run_id(experiment)).resolve()
