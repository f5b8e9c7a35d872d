"""lightning_app: classic deep learning models as comparable Lightning experiments.

The rooms, each one concern:

- ``cli.py`` (``python -m lightning_app``): the LightningCLI, its errors (``errors.py``) and the defaults it applies
  (``defaults.py``: fused optimizer steps, ``--compile``, the bfloat16 warning, the progress bar, malloc thresholds).
- ``record/``: the run folder and its lock, ``summary.json`` and ``metrics.jsonl``, the saved config, W&B.
- ``checkpoints/``: checkpoint files, ``last.ckpt``, faults, and what ``--ckpt_path`` resolves and restores.
- ``__main__.py``, ``deferred.py`` and ``quick_exit.py``: how the commands start (the garbage collector off while
  torch and Lightning load, then frozen; scipy.signal, which Lightning loads and no run uses, loaded only if used)
  and end (at once, once their work is written).
- ``schedules.py``: learning-rate schedules sized from the run; ``feature_knn.py``: kNN on a model's features.
- ``pictures/``: what each model learned, drawn after its run.
- ``sweep/`` (``python -m lightning_app.sweep``): W&B sweep files run with Optuna.
- ``compare/`` and ``generate.py``: the tools that read finished runs.
"""

import importlib
import importlib.abc
import importlib.util
import sys
import warnings

# Modules that moved, by their old name: a saved config.yaml (a sweep trial's callback, say) naming
# an old class path still loads, with a warning that names the new one.
MOVED = {
    "lightning_app.compile": "lightning_app.defaults",
    "lightning_app.cpu_bf16": "lightning_app.defaults",
    "lightning_app.faults": "lightning_app.checkpoints.faults",
    "lightning_app.fused": "lightning_app.defaults",
    "lightning_app.progress": "lightning_app.defaults",
    "lightning_app.restore": "lightning_app.checkpoints.ckpt_path",
    "lightning_app.resume": "lightning_app.checkpoints.ckpt_path",
    "lightning_app.runlock": "lightning_app.record.folder",
    "lightning_app.summary": "lightning_app.record.summary",
    "lightning_app.sweep_callback": "lightning_app.sweep.callback",
    "lightning_app.tracking": "lightning_app.record.logger",
}


class _MovedModules(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    def find_spec(self, name, path=None, target=None):
        return importlib.util.spec_from_loader(name, self) if name in MOVED else None

    def create_module(self, spec):
        warnings.warn(f"{spec.name} is now {MOVED[spec.name]}: use that name in configs", FutureWarning, stacklevel=2)
        return importlib.import_module(MOVED[spec.name])

    def exec_module(self, module) -> None:
        """The module is the new one, already executed."""


if not any(isinstance(finder, _MovedModules) for finder in sys.meta_path):
    sys.meta_path.insert(0, _MovedModules())  # before an editable install's finder, which may see old files
