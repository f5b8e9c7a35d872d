"""The run record: the run folder and its lock, ``summary.json`` and ``metrics.jsonl``, the saved
config, and the W&B run of the same name.

- ``folder.py``: where a run writes (``run_dir``), what it is called (``experiment_name``,
  ``new_run_id``), and ``RunLock``, which keeps a folder one run's.
- ``summary.py``: ``RunSummary``, the text record ``python -m lightning_app.compare`` reads.
- ``logger.py``: W&B (offline without a key or a network), its run's name and group, and
  ``SaveRunConfig``, the resolved config in the run folder and in W&B.
- ``read.py``: reading what anyone may have put in a run folder, safely (no torch or Lightning).
"""

import importlib

# Where each public name lives; loaded on first use, so that ``read.py`` stays light for ``compare``.
HOMES = {
    "PROJECT": "folder",
    "RunLock": "folder",
    "experiment_name": "folder",
    "new_run_id": "folder",
    "run_dir": "folder",
    "WANDB_LOGGER": "logger",
    "SaveRunConfig": "logger",
    "name_wandb_run": "logger",
    "wandb_group": "logger",
    "RunSummary": "summary",
    "add_files": "summary",
}


def __getattr__(name: str):
    if name in HOMES:
        return getattr(importlib.import_module(f"{__name__}.{HOMES[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = sorted(HOMES)
