"""The picture callbacks the CLI adds to a run: each kind that fits the model, unless turned off."""

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


def default_pictures(
    model, datamodule, subcommand: str, chosen: list[Callback], pictures: Pictures | bool
) -> list[Callback]:
    """The picture callbacks to add to a run: each kind that ``pictures`` leaves on, that draws in
    ``subcommand`` (``fit`` also tests, at its end) and fits the model, and of whose class ``chosen``
    (the configured callbacks) has none."""
    if pictures is False:
        return []
    return [
        kind()
        for name, kind in KINDS.items()
        if getattr(pictures, name, True)
        and subcommand in ("fit", kind.stage)
        and kind.missing(model, datamodule) is None
        and not any(isinstance(callback, kind) for callback in chosen)
    ]
