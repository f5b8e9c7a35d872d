"""Pictures of what each model learned and where it fails: in W&B, and as files in the run folder.

One callback per family of pictures, each on ``base.PictureCallback`` and usable as a
``trainer.callbacks`` entry with ``init_args``:

- ``ClassifierPictures`` (``classifier``): confusion matrix, per-class accuracy, most confident mistakes, at test end.
- ``ConvFilters`` (``filters``): the first conv layer's filters, and each layer's output size.
- ``AttentionMaps`` (``attention``): every layer's and head's attention for one fixed validation sample.
- ``TextSamples`` (``samples``): a language model's text from a fixed prompt after every validation.
- ``KNNNeighbours`` (``knn``): test queries with the memorised neighbours that voted.

The CLI adds every kind that fits the model (``default_pictures``); ``--pictures false`` adds
none, ``--pictures.<kind> false`` leaves one out. Files: ``<run folder>/pictures/<key>.png``
(and ``.csv`` for tables), listed under ``files`` in ``summary.json``; see ``docs/pictures.md``.
"""

import importlib

# Where each public name lives. The submodules load on first use, so that reading a confusion
# matrix (``compare --plot``) does not import torch and Lightning.
HOMES = {
    "AttentionMaps": "attention",
    "ClassifierPictures": "classifier",
    "ConvFilters": "filters",
    "KNNNeighbours": "knn",
    "TextSamples": "samples",
    "Pictures": "defaults",
    "default_pictures": "defaults",
}


def __getattr__(name: str):
    if name in HOMES:
        return getattr(importlib.import_module(f"{__name__}.{HOMES[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = sorted(HOMES)
