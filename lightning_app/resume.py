"""``fit --ckpt_path last``: find the run to continue, and continue it under the same W&B run id.

With the W&B logger a new run gets a new id and so a new, empty checkpoint folder, where
Lightning's own ``"last"`` would find nothing. Here ``last`` means the newest ``last.ckpt``
under ``<save_dir>/<project>/*/checkpoints/`` whose run has the same experiment (config file
name, or data and model when there is none), model class and data class; with a run id given
(``--trainer.logger.init_args.id``, e.g. from the SLURM job id) it means that run's ``last.ckpt``.
Given a checkpoint inside a run folder (``runs/lightning_app/<id>/checkpoints/x.ckpt``), the W&B run ``<id>``
resumes (``resume="allow"``), so its curves continue instead of starting a new run.
"""

from pathlib import Path

import yaml
from lightning.pytorch.utilities import rank_zero_info, rank_zero_warn


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


def find_last_checkpoint(project_dir: Path, model: str, data: str, group: str | None) -> Path | None:
    """The newest ``<project_dir>/<run id>/checkpoints/last.ckpt`` of the same experiment, or None."""
    candidates = [
        path
        for path in project_dir.glob("*/checkpoints/last.ckpt")
        if _same_experiment(path.parents[1] / "config.yaml", model, data, group)
    ]
    return max(candidates, key=lambda path: path.stat().st_mtime, default=None)


def resolve_resume(config, subcommand: str) -> None:
    """Turns ``ckpt_path: last`` into a path and points the W&B logger at the checkpoint's run.

    ``config`` is the subcommand's config before instantiation, with a WandbLogger as logger.
    """
    ckpt_path = config.get("ckpt_path")
    if not ckpt_path:
        return
    logger = config.trainer.logger.init_args
    if ckpt_path == "last":
        project_dir = Path(logger.save_dir or config.trainer.default_root_dir) / (logger.project or "lightning_app")
        group = config.trainer.logger.get("dict_kwargs", {}).get("group")
        if logger.id or logger.version:  # this run's own, or none yet
            own = project_dir / str(logger.id or logger.version) / "checkpoints" / "last.ckpt"
            found = own if own.exists() else None
            logger.resume = "allow"  # a requeued job may have started its W&B run before its first checkpoint
        else:
            found = find_last_checkpoint(project_dir, config.model.class_path, config.data.class_path, group)
        if found is None:  # not an error, so a requeued job can always pass `--ckpt_path last`
            rank_zero_warn(f"--ckpt_path last: no last.ckpt of experiment {group!r} under {project_dir}; starting a new run")
            config.ckpt_path = None
            return
        rank_zero_info(f"--ckpt_path last: resuming {found}")
        config.ckpt_path = ckpt_path = str(found)
    run = Path(ckpt_path).parent.parent  # "best", "x.ckpt": not in a run folder
    is_run_folder = Path(ckpt_path).parent.name == "checkpoints" and (run / "config.yaml").exists()
    if subcommand == "fit" and is_run_folder and (logger.id or logger.version or run.name) == run.name:
        logger.id = run.name
        logger.resume = "allow"
