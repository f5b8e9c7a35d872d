"""``--ckpt_path``: which checkpoint it means, and which run folder the run writes to.

``last`` means the newest ``last.ckpt`` under ``<save_dir>/<project>/*/checkpoints/`` whose run has the
same experiment (config file name, or data and model when there is none), model class and data class;
with a W&B run id given (``--trainer.logger.init_args.id``, e.g. from the SLURM job id) it means that
run's ``last.ckpt``. Nothing found: ``fit`` warns and starts a new run (a requeued job can always pass
``--ckpt_path last``); ``validate``, ``test`` and ``predict`` fail, naming what they looked for and where.

Run folders: a W&B run writes ``<save_dir>/<project>/<run id>/``; a run without a logger gets its own
``<default_root_dir>/lightning_app/<experiment>-<time>_<random>/`` (as its trainer's root). A ``fit``
given a checkpoint inside a run folder continues that run: the same W&B run id (``resume="allow"``), so
its curves continue, or without a logger the same folder.

What the checkpoint then restores: ``lightning_app/restore.py``.
"""

import os
import secrets
import time
from pathlib import Path

import yaml
from lightning.fabric.plugins.environments import SLURMEnvironment
from lightning.pytorch.utilities import rank_zero_info, rank_zero_warn

from lightning_app.tracking import WANDB_LOGGER

PROJECT = "lightning_app"


def wandb_group(logger, experiment: str) -> str:
    """The W&B group of a run: its ``dict_kwargs.group``, else ``init_args.group`` (a sweep's), else the experiment."""
    return (logger.get("dict_kwargs") or {}).get("group") or logger.init_args.get("group") or experiment


def experiment_name(config) -> str:
    """The config file's name, or ``<data>-<model>`` without one: the W&B group, and how ``last`` matches runs."""
    if config.get("config"):
        return Path(str(config.config[-1])).stem
    return f"{config.data.class_path.rsplit('.', 1)[-1]}-{config.model.class_path.rsplit('.', 1)[-1]}"


def _same_experiment(run_config: Path, model: str, data: str, group: str | None) -> bool:
    try:
        config = yaml.safe_load(run_config.read_text()) or {}
    except (OSError, yaml.YAMLError):
        return False
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


def new_run_id(experiment: str) -> str:
    """A folder name for a run without a logger; under SLURM the job's, so a requeued job finds its folder."""
    if SLURMEnvironment.detect():  # Lightning's SLURM auto-resume looks for its checkpoint in default_root_dir
        array = os.environ.get("SLURM_ARRAY_JOB_ID")
        job = f"{array}_{os.environ['SLURM_ARRAY_TASK_ID']}" if array else os.environ["SLURM_JOB_ID"]
        return f"{experiment}-slurm_{job}"
    return f"{experiment}-{time.strftime('%Y%m%d_%H%M%S')}_{secrets.token_hex(2)}"


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
