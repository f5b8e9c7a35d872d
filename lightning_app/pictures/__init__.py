"""Pictures of what each model learned and where it fails: in W&B, and as files in the run folder.

One callback per family of pictures, each usable as a ``trainer.callbacks`` entry with ``init_args``:

- ``ClassifierPictures`` (``classifier``): confusion matrix, per-class accuracy, most confident mistakes, at test end.
- ``ConvFilters`` (``filters``): the first conv layer's filters, and each layer's output size.
- ``AttentionMaps`` (``attention``): every layer's and head's attention for one fixed validation sample.
- ``TextSamples`` (``samples``): a language model's text from a fixed prompt after every validation.
- ``KNNNeighbours`` (``knn``): test queries with the memorised neighbours that voted.

The CLI adds every kind that fits the model (``default_pictures``); ``--pictures false`` adds
none, ``--pictures.<kind> false`` leaves one out. Files: ``<run folder>/pictures/<key>.png``
(and ``.csv`` for tables), listed under ``files`` in ``summary.json``; see ``docs/pictures.md``.
"""

from dataclasses import dataclass

from lightning.pytorch.callbacks import Callback

from lightning_app.pictures.attention import AttentionMaps
from lightning_app.pictures.classifier import ClassifierPictures
from lightning_app.pictures.filters import ConvFilters
from lightning_app.pictures.knn import KNNNeighbours
from lightning_app.pictures.samples import TextSamples

KINDS = {
    "classifier": ClassifierPictures,
    "filters": ConvFilters,
    "attention": AttentionMaps,
    "samples": TextSamples,
    "knn": KNNNeighbours,
}


@dataclass
class Pictures:
    """The picture callbacks the CLI adds where they fit the model (``--pictures false``: none).

    Args:
        classifier: Confusion matrix, per-class accuracy and most confident mistakes, at test end.
        filters: The first conv layer's filters and the layers' output sizes, at the end of fit.
        attention: Attention maps of one validation sample per layer and head, at the end of fit.
        samples: Text from a fixed prompt after every validation, for language models.
        knn: Test queries with their nearest memorised neighbours, for kNN.
    """

    classifier: bool = True
    filters: bool = True
    attention: bool = True
    samples: bool = True
    knn: bool = True


def default_pictures(model, datamodule, subcommand: str, chosen: list[Callback], pictures: Pictures | bool) -> list[Callback]:
    """The picture callbacks to add to a run: each kind that ``pictures`` leaves on, that works in
    ``subcommand`` and fits the model, and of whose class ``chosen`` (the configured callbacks) has none."""
    if pictures is False:
        return []
    return [
        kind()
        for name, kind in KINDS.items()
        if getattr(pictures, name, True)
        and subcommand in kind.stages
        and kind.missing(model, datamodule) is None
        and not any(isinstance(callback, kind) for callback in chosen)
    ]


__all__ = ["AttentionMaps", "ClassifierPictures", "ConvFilters", "KNNNeighbours", "Pictures", "TextSamples", "default_pictures"]
