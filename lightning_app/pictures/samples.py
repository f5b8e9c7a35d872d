"""What a language model writes as it trains: a sample from a fixed prompt after every validation."""

import csv
import textwrap
from pathlib import Path

from lightning.pytorch.utilities import rank_zero_warn

from lightning_app.pictures.figures import Table, figure
from lightning_app.pictures.base import PictureCallback, publish, uncompiled
from lightning_app.record.folder import run_dir

COLUMNS = ["epoch", "step", "val/loss", "text"]


class TextSamples(PictureCallback):
    """After every validation of ``fit``, the model continues ``prompt``; the table ``samples/text``
    (CSV, and a W&B table) gains one row per validation: epoch, step, ``val/loss``, text. Each
    draws with the same ``seed``, so what changes from row to row is the model. At the end of
    ``fit`` the table is also drawn (``pictures/samples/text.png``). A resumed run continues the
    table. Generated on rank 0.

    Args:
        prompt: Text to continue; every character must be in the model's vocabulary.
        length: Characters generated after the prompt.
        temperature: Divides the logits: below 1 is more conservative, 0 always takes the likeliest character.
        top_k: Sample among the k likeliest characters only; None for all.
        seed: Seed of the sampling, the same at every validation.
        lines_drawn: Lines of each sample in the PNG (the CSV holds the whole text).
        dpi: Pixels per inch of the PNG file.
    """

    nothing = "no text samples"

    def __init__(
        self,
        prompt: str = "\n",
        length: int = 200,
        temperature: float = 0.8,
        top_k: int | None = 200,
        seed: int = 0,
        lines_drawn: int = 4,
        dpi: int = 100,
    ) -> None:
        if not prompt or length < 1 or temperature < 0 or (top_k is not None and top_k < 1) or lines_drawn < 1 or dpi < 1:
            raise ValueError(
                f"TextSamples: prompt={prompt!r} (not empty), length={length} (>= 1), temperature={temperature} (>= 0), "
                f"top_k={top_k} (None or >= 1), lines_drawn={lines_drawn} (>= 1) and dpi={dpi} (>= 1): one is out of range"
            )
        self.prompt, self.length, self.temperature, self.top_k, self.seed = prompt, length, temperature, top_k, seed
        self.lines_drawn, self.dpi = lines_drawn, dpi
        self.rows: list[list] = []

    @staticmethod
    def missing(pl_module, datamodule) -> str | None:
        return None if callable(getattr(pl_module, "generate_text", None)) else "no `generate_text` (not a language model)"

    def on_fit_start(self, trainer, pl_module) -> None:
        if not self.active:
            return
        pl_module.encode(self.prompt)  # a character outside the vocabulary fails here, before training
        self.rows = []
        if trainer.is_global_zero and trainer.ckpt_path is not None:  # resumed: keep the earlier rows
            previous = run_dir(trainer) / "pictures" / "samples" / "text.csv"
            if previous.is_file():
                try:
                    self.rows = read_rows(previous)
                except (ValueError, csv.Error) as error:
                    rank_zero_warn(f"TextSamples: {previous} is not a table of text samples ({error}); a new one replaces it")

    def on_validation_end(self, trainer, pl_module) -> None:
        # Here, not at the epoch's end: by now the epoch's val/loss is in callback_metrics.
        if not self.active or trainer.sanity_checking or not trainer.is_global_zero:
            return
        with uncompiled():
            text = pl_module.generate_text(self.prompt, self.length, self.temperature, self.top_k, self.seed)[0]
        loss = trainer.callback_metrics.get("val/loss")
        loss = round(float(loss), 4) if loss is not None else None
        self.rows.append([trainer.current_epoch, trainer.global_step, loss, text])
        publish(trainer, "samples/text", table=Table(COLUMNS, self.rows))

    def on_fit_end(self, trainer, pl_module) -> None:
        if self.active and self.rows and trainer.is_global_zero:
            publish(trainer, "samples/text", draw_samples(self.rows, self.lines_drawn), dpi=self.dpi, wandb=False)


def read_rows(path: Path) -> list[list]:
    """The rows of an earlier run's table, typed as new rows are: W&B refuses a column of mixed types."""
    with open(path, newline="", encoding="utf-8") as file:
        header, *rows = csv.reader(file)
    if header != COLUMNS:
        raise ValueError(f"its columns are {header}, not {COLUMNS}")
    return [[int(epoch), int(step), float(loss) if loss else None, text] for epoch, step, loss, text in rows]


def draw_samples(rows: list[list], lines_drawn: int):
    """The table as monospace text: a heading per row, then the first ``lines_drawn`` lines of its text."""
    lines = []
    for epoch, step, loss, text in rows:
        lines.append(f"epoch {epoch}, step {step}, val/loss {'-' if loss is None else loss}")
        wrapped = [part for line in str(text).splitlines() for part in textwrap.wrap(line, 90)]  # blank lines dropped
        lines += ["    " + line for line in wrapped[:lines_drawn]] + [""]
    fig = figure(8.0, 0.16 * len(lines) + 0.3, layout=None)
    fig.text(0.01, 1 - 0.1 / fig.get_figheight(), "\n".join(lines), family="monospace", fontsize=8, va="top")
    return fig
