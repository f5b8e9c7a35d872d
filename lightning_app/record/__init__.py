"""The run record: the run folder and its lock, ``summary.json`` and ``metrics.jsonl``, the saved
config, and the W&B run of the same name.

- ``folder.py``: where a run writes (``run_dir``), what it is called (``experiment_name``,
  ``new_run_id``), and ``RunLock``, which keeps a folder one run's.
- ``summary.py``: ``RunSummary``, the text record ``python -m lightning_app.compare`` reads.
- ``logger.py``: W&B (offline without a key or a network), its run's name and group, and
  ``SaveRunConfig``, the resolved config in the run folder and in W&B.
- ``read.py``: reading what anyone may have put in a run folder, safely, and writing a file whole
  (``replace_file``) (no torch or Lightning).

Nothing is re-exported here: importing ``read.py`` (``compare`` does) must not import Lightning.
"""
