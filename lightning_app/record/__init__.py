"""The run record: the run folder and its lock, ``summary.json`` and ``metrics.jsonl``, the saved
config, and the W&B run of the same name.

- ``folder.py``: where a run writes (``run_dir``), what it is called (``experiment_name``,
  ``new_run_id``), and ``RunLock``, which keeps a folder one run's.
- ``summary.py``: ``RunSummary``, the text record ``python -m lightning_app.compare`` reads.
- ``logger.py``: W&B (offline without a key or a network), its run's name and group, and
  ``SaveRunConfig``, the resolved config in the run folder and in W&B.
"""

from lightning_app.record.folder import PROJECT, RunLock, experiment_name, new_run_id, run_dir
from lightning_app.record.logger import WANDB_LOGGER, SaveRunConfig, name_wandb_run, wandb_group
from lightning_app.record.summary import RunSummary, add_files

__all__ = ["PROJECT", "WANDB_LOGGER", "RunLock", "RunSummary", "SaveRunConfig", "add_files", "experiment_name"]
__all__ += ["name_wandb_run", "new_run_id", "run_dir", "wandb_group"]
