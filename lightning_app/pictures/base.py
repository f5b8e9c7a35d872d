"""What every picture callback shares: when it draws, what it needs, and where its pictures go.

``PictureCallback`` is the protocol: the stage it draws in, what the model lacks for it (a
one-line warning, and nothing drawn), every-n-epochs. ``publish`` writes a picture (PNG) and its
table (CSV) into ``<run folder>/pictures/<key>``, each written beside its place and renamed into
it (a reader never sees half a file), logs them to W&B under the same ``key`` when the run has a
``WandbLogger``, and lists them in the run's ``summary.json``.
"""

import contextlib
import csv
import functools
import io
import unicodedata
from pathlib import Path

import numpy as np
import torch
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.loggers import WandbLogger
from lightning.pytorch.utilities import rank_zero_warn
from torch import Tensor

from lightning_app.pictures.figures import Table, plain_text
from lightning_app.record.folder import run_dir
from lightning_app.record.read import replace_file
from lightning_app.record.summary import add_files


def like_model(x: Tensor, model: torch.nn.Module) -> Tensor:
    """``x`` on the model's device, and in its parameters' dtype when ``x`` is floating (a bf16-true model)."""
    parameter = next(model.parameters())
    return x.to(parameter.device, dtype=parameter.dtype if x.is_floating_point() else x.dtype)


def uncompiled() -> contextlib.AbstractContextManager:
    """A context in which a model that ``--compile`` compiled runs eagerly: a picture's one sample, or
    text generated token by token, has shapes the training never had, each a recompilation (seconds)."""
    set_stance = getattr(torch.compiler, "set_stance", None)  # torch >= 2.6
    return set_stance("force_eager") if set_stance is not None else contextlib.nullcontext()


@torch.no_grad()
def probe(model: torch.nn.Module, inputs: Tensor, hooks: list) -> None:
    """``model(inputs)`` once, in eval mode and eagerly, for what its ``hooks`` record; then the hooks
    are removed and the model's mode restored."""
    was_training = model.training
    try:
        model.eval()
        with uncompiled():
            model(inputs)
    finally:
        model.train(was_training)
        for hook in hooks:
            hook.remove()


def displayable(images: Tensor, mean: tuple[float, ...] | None = None, std: tuple[float, ...] | None = None) -> np.ndarray:
    """Normalised ``(N, C, H, W)`` images -> ``(N, H, W, C)`` in [0, 1]: undone with the data's
    ``mean`` and ``std`` where given, else each image stretched to its own range."""
    images = images.detach().float().cpu()
    if mean is not None and std is not None and len(mean) == images.shape[1]:
        shape = (1, -1, 1, 1)
        images = images * torch.tensor(std).view(shape) + torch.tensor(mean).view(shape)
    else:
        low = images.amin(dim=(1, 2, 3), keepdim=True)
        images = (images - low) / (images.amax(dim=(1, 2, 3), keepdim=True) - low).clamp(min=1e-8)
    return images.clamp(0, 1).permute(0, 2, 3, 1).numpy()


def data_statistics(trainer) -> tuple[tuple[float, ...] | None, tuple[float, ...] | None]:
    """The data module's per-channel ``mean`` and ``std``, when it states them."""
    datamodule = trainer.datamodule
    return getattr(datamodule, "mean", None), getattr(datamodule, "std", None)


LONGEST_LABEL = 24  # characters of a class name drawn before it is cut with "…"


def label(name: object) -> str:
    """``name`` as one short line of plain text: control characters become "?", and past
    ``LONGEST_LABEL`` characters it is cut with "…" (a names file may hold anything)."""
    text = "".join("?" if unicodedata.category(c).startswith("C") else c for c in str(name))
    return text if len(text) <= LONGEST_LABEL else text[: LONGEST_LABEL - 1] + "…"


def class_names(datamodule, num_classes: int) -> list[str]:
    """The data module's ``class_names`` (as ``label`` writes them) when it has ``num_classes`` of them, else "0", "1", ..."""
    names = getattr(datamodule, "class_names", None)
    if names is not None and len(names) == num_classes:
        return [label(name) for name in names]
    return [str(i) for i in range(num_classes)]


def model_classes(pl_module, datamodule) -> int | None:
    """The number of classes of a classifier (its ``num_classes``, else its data's), None for other models."""
    return getattr(pl_module, "hparams", {}).get("num_classes") or getattr(datamodule, "num_classes", None)


def _replace(path: Path, content: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    replace_file(path, content)


def write_png(fig, path: Path, dpi: int) -> Path:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=dpi)
    _replace(path, buffer.getvalue())
    return path


def write_csv(table: Table, path: Path) -> Path:
    text = io.StringIO()
    writer = csv.writer(text, lineterminator="\n")
    writer.writerow(table.columns)
    writer.writerows(table.rows)
    _replace(path, text.getvalue().encode("utf-8"))
    return path


def publish(
    trainer, key: str, fig=None, table: Table | None = None, dpi: int = 100, name: str | None = None, wandb: bool = True
) -> list[Path]:
    """Writes ``fig`` and ``table`` as ``pictures/<name or key>.png`` / ``.csv``, logs them to W&B
    under ``key`` (the picture as an image, else the table as a table; not with ``wandb=False``)
    and lists them in ``summary.json``. Global rank 0 only; other ranks write nothing."""
    if not trainer.is_global_zero:
        return []
    stem = run_dir(trainer) / "pictures" / (name or key)
    paths = []
    if fig is not None:
        paths.append(write_png(fig, stem.with_name(stem.name + ".png"), dpi))
    if table is not None:
        paths.append(write_csv(table, stem.with_name(stem.name + ".csv")))
    for logger in trainer.loggers if wandb else []:
        if isinstance(logger, WandbLogger):
            if fig is not None:
                logger.log_image(key=key, images=[str(paths[0])], step=trainer.global_step)
            else:
                logger.log_table(key=key, columns=table.columns, data=table.rows, step=trainer.global_step)
    add_files(trainer, key, paths)
    return paths


# Hooks that may fail: what runs before training (setup, on_fit_start) checks the callback's arguments,
# and a wrong one (a prompt outside the vocabulary) should stop the run before it spends anything.
GUARDED = tuple(name for name in vars(Callback) if name.startswith("on_") and name != "on_fit_start")


def never_fails(hook):
    """``hook`` of a picture callback whose failure is a warning naming the callback and the reason; the
    callback then draws nothing more in this stage, and the run goes on to its metrics and checkpoints."""

    @functools.wraps(hook)
    def guarded(self, *args, **kwargs):
        drawing = self.active and "batch" not in hook.__name__  # per-batch hooks only collect
        try:
            with plain_text() if drawing else contextlib.nullcontext():
                return hook(self, *args, **kwargs)
        except Exception as error:  # noqa: BLE001  a picture is never worth a run; a stop (BaseException) passes
            self.active = False
            reason = str(error).strip().splitlines()[-1:] or [""]
            rank_zero_warn(
                f"{type(self).__name__}: no pictures after {hook.__name__} failed ({type(error).__name__}: "
                f"{reason[0][:300]}); the run goes on without them"
            )

    return guarded


class PictureCallback(Callback):
    """A callback that draws in one trainer stage (``stage``: "fit" or "test") when the model has
    what it needs (``missing`` says what it lacks); otherwise it warns once, in one line, and draws
    nothing. ``active`` holds whether it draws in the stage under way.

    Every hook a subclass defines after ``on_fit_start`` is wrapped by ``never_fails``: drawing or
    publishing a picture never fails a run, and text is drawn plain (``plain_text``).
    """

    def __init_subclass__(cls, **kwargs) -> None:
        super().__init_subclass__(**kwargs)
        for name in GUARDED:
            if name in vars(cls):
                setattr(cls, name, never_fails(vars(cls)[name]))

    stage = "fit"
    nothing = "no pictures"  # the end of the warning: what such a model does not get
    every_n_epochs = 0  # 0: never after a validation
    active = False

    @staticmethod
    def missing(pl_module, datamodule) -> str | None:
        """What the model lacks for these pictures, or None."""
        raise NotImplementedError

    def setup(self, trainer, pl_module, stage: str) -> None:
        lacking = self.missing(pl_module, trainer.datamodule) if stage == self.stage else None
        if lacking is not None:
            rank_zero_warn(f"{type(self).__name__}: {type(pl_module).__name__} has {lacking}; {self.nothing}")
        self.active = stage == self.stage and lacking is None

    def epoch_due(self, trainer) -> bool:
        """Whether to draw after this validation: every ``every_n_epochs``-th epoch's, never the sanity check's."""
        due = self.every_n_epochs and (trainer.current_epoch + 1) % self.every_n_epochs == 0
        return bool(self.active and due and not trainer.sanity_checking)
