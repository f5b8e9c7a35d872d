"""Checkpoints and ``--ckpt_path``: files you can trust, a ``last.ckpt`` that is never stale, and a
path the CLI resolves, checks and restores in one place.

- ``files.py``: atomic writes with a SHA-256 record; loads that are checked, local and ``weights_only``.
- ``faults.py``: ``ModelCheckpointLast``, and ``FaultTolerance`` (clean stops on signals, exact
  mid-epoch resume, a stop on a NaN loss).
- ``model_class.py``: which model class a checkpoint may name; its shapes checked on the meta device.
- ``ckpt_path.py``: what ``--ckpt_path`` means and restores, and the run folder a resumed run writes to.
"""

from lightning_app.checkpoints.faults import FaultTolerance, ModelCheckpointLast, Stopped
from lightning_app.checkpoints.files import AtomicCheckpointIO, load_checkpoint, record_path

__all__ = ["AtomicCheckpointIO", "FaultTolerance", "ModelCheckpointLast", "Stopped", "load_checkpoint", "record_path"]
