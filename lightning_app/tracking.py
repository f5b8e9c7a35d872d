"""Weights & Biases for every run: offline when there is no key, the full config in the run."""

import netrc
import os
from pathlib import Path

import yaml
from lightning.pytorch.cli import SaveConfigCallback
from lightning.pytorch.loggers import WandbLogger

CONFIG_NAME = "lightning_config.yaml"  # W&B writes its own config.yaml into the run's files


def wandb_offline() -> bool:
    """True unless W&B can log in without asking: ``WANDB_MODE`` wins, else an API key must exist."""
    mode = os.environ.get("WANDB_MODE")
    if mode:
        return mode in ("offline", "dryrun", "disabled")
    if os.environ.get("WANDB_API_KEY"):
        return False
    try:
        return netrc.netrc().authenticators("api.wandb.ai") is None
    except (FileNotFoundError, netrc.NetrcParseError):
        return True


def run_dir(trainer) -> Path:
    """The folder that holds a run's ``checkpoints/``, as ModelCheckpoint chooses it."""
    logger = trainer.logger
    if logger is None:
        return Path(trainer.default_root_dir)
    version = logger.version if isinstance(logger.version, str) else f"version_{logger.version}"
    return Path(logger.save_dir or trainer.default_root_dir) / str(logger.name) / version


class SaveRunConfig(SaveConfigCallback):
    """Saves the resolved config in the run's own folder and makes it the W&B run's config.

    ``<run folder>/config.yaml`` sits beside ``checkpoints/`` and reproduces the run with
    ``--config``. With W&B it is also ``lightning_config.yaml`` in the W&B run's files, and the
    config's values become the run's config, so runs can be filtered and compared on them.
    """

    def save_config(self, trainer, pl_module, stage: str) -> None:
        text = self.parser.dump(self.config, skip_none=False)
        folder = run_dir(trainer)
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "config.yaml").write_text(text)
        if isinstance(trainer.logger, WandbLogger):
            run = trainer.logger.experiment
            (Path(run.dir) / CONFIG_NAME).write_text(text)
            run.config.update(yaml.safe_load(text), allow_val_change=True)
