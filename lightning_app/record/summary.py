"""Each run's own record, beside its checkpoints: what ``python -m lightning_app.compare`` reads.

Offline W&B runs keep their history only inside the binary ``run-*.wandb`` log, which needs the
``wandb`` executable to decode (``wandb leet inspect --json``) and is absent when W&B is off.
So every run also writes two small text files into its run folder (``runs/lightning_app/<id>/``):

- ``metrics.jsonl``: one JSON line per epoch: ``epoch``, ``step``, ``time`` (seconds of training
  so far) and every epoch-level metric (``train/loss``, ``val/acc``, ...). A resumed run appends; an
  epoch with no metric (one a resumed run only closes) writes no line.
- ``summary.json``: model, data, parameter count, device, precision, number of processes and
  nodes, status (``running``, ``finished``, ``failed: ...``), training time, times resumed, the
  last epoch's metrics and the test metrics, and ``files``: what callbacks wrote in the run
  folder, by key (``{"test/confusion_matrix": ["pictures/test/confusion_matrix.png", ...]}``).
"""

import json
import os
import time
from pathlib import Path
from typing import Any

import torch
from lightning.pytorch.callbacks import Callback

from lightning_app.checkpoints.faults import Stopped
from lightning_app.record.read import read_bounded, replace_file
from lightning_app.record.folder import run_dir

SUMMARY_LIMIT = 1 << 24  # bytes: a summary is a few kB; its file list grows with the pictures, never to this


def _scalars(metrics: dict[str, Any], prefix: tuple[str, ...] = ()) -> dict[str, float]:
    return {
        name: float(value)
        for name, value in sorted(metrics.items())
        if not name.endswith("_step") and name.startswith(prefix) and torch.as_tensor(value).numel() == 1
    }


def _write_json(path: Path, data: dict[str, Any]) -> None:
    replace_file(path, json.dumps(data, indent=1))


def read_summary(path: Path) -> dict[str, Any]:
    """The ``summary.json`` a resumed run continues; {} when there is none, an error naming it when it is not one."""
    try:
        summary = json.loads(read_bounded(path, SUMMARY_LIMIT))
    except FileNotFoundError:
        return {}
    except (ValueError, UnicodeDecodeError) as error:  # json.JSONDecodeError is a ValueError
        raise ValueError(f"{path}: not a run summary ({error}); move it away to start the summary afresh") from None
    if not isinstance(summary, dict):
        raise ValueError(f"{path}: not a run summary (a JSON {type(summary).__name__}, not an object); move it away")
    return summary


class RunSummary(Callback):
    """Writes ``metrics.jsonl`` and ``summary.json`` in the run folder on global rank 0."""

    def __init__(self) -> None:
        self.folder: Path | None = None
        self.summary: dict[str, Any] = {}
        self._started = 0.0
        self._before = 0.0  # training seconds of earlier attempts of a resumed run
        self._finished_epoch: tuple[int, int] | None = None  # (epoch, step) not yet written
        self._validated_epoch = -1  # the last epoch that ran a validation: the others' val/ values are older ones

    def setup(self, trainer, pl_module, stage: str) -> None:
        if not trainer.is_global_zero or self.folder is not None:
            return
        self.folder = run_dir(trainer)
        self.folder.mkdir(parents=True, exist_ok=True)
        path = self.folder / "summary.json"
        self.summary = read_summary(path)
        metrics = self.folder / "metrics.jsonl"
        if metrics.exists() and not metrics.is_file():  # found now, not when the first epoch ends
            raise ValueError(f"{metrics} is not a regular file, and each epoch appends a line to it: move it away")
        device = trainer.strategy.root_device
        self._save(
            model=type(pl_module).__name__,
            data=type(trainer.datamodule).__name__ if trainer.datamodule is not None else None,
            parameters=sum(p.numel() for p in pl_module.parameters()),
            device=torch.cuda.get_device_name(device) if device.type == "cuda" else device.type,
            precision=str(trainer.precision),
            processes=trainer.world_size,
            nodes=trainer.num_nodes,
        )

    def _training_time(self) -> float:
        return self._before + time.monotonic() - self._started

    def _save(self, **fields: Any) -> None:
        if self.folder is not None:
            self.summary.update(fields)
            _write_json(self.folder / "summary.json", self.summary)

    def on_fit_start(self, trainer, pl_module) -> None:
        if self.folder is None:
            return
        self._started, self._before = time.monotonic(), self.summary.get("train_seconds", 0.0)
        self._save(status="running", resumed=self.summary.get("resumed", -1) + 1)

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        # The module logs its own epoch metrics (train/acc) after the callbacks' on_train_epoch_end,
        # so the epoch is written when the next one starts, or when training ends.
        self._finished_epoch = (trainer.current_epoch, trainer.global_step)

    def _write_epoch(self, trainer) -> None:
        if self.folder is None or self._finished_epoch is None:
            return
        (epoch, step), self._finished_epoch = self._finished_epoch, None
        # callback_metrics keeps the last validation's values in epochs without one (a run resumed mid-epoch
        # and stopped before its validation, check_val_every_n_epoch > 1): a line holds this epoch's only.
        metrics = _scalars(trainer.callback_metrics, ("train/", "val/") if self._validated_epoch == epoch else ("train/",))
        if not metrics:  # e.g. the end of an epoch that a resumed run only closes: its line is written
            return
        record = {"epoch": epoch, "step": step, "time": round(self._training_time(), 3)}
        with open(self.folder / "metrics.jsonl", "a") as file:
            file.write(json.dumps({**record, **metrics}) + "\n")
        self._save(train_seconds=self._training_time(), epochs=epoch + 1, last=metrics)

    def on_validation_end(self, trainer, pl_module) -> None:
        if not trainer.sanity_checking:
            self._validated_epoch = trainer.current_epoch

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        self._write_epoch(trainer)

    def on_train_end(self, trainer, pl_module) -> None:
        self._write_epoch(trainer)

    def on_fit_end(self, trainer, pl_module) -> None:
        if self.folder is not None:
            self._save(status="finished", train_seconds=self._training_time())

    def on_test_end(self, trainer, pl_module) -> None:
        if self.folder is not None:
            self._save(test=_scalars(trainer.callback_metrics, ("test/",)), status=self.summary.get("status", "tested"))

    def on_exception(self, trainer, pl_module, exception: BaseException) -> None:
        if self.folder is not None:
            status = f"stopped: {exception}" if isinstance(exception, Stopped) else f"failed: {type(exception).__name__}: {exception}"
            self._save(status=status[:300])

    def add_files(self, key: str, paths: list[Path]) -> None:
        """Lists ``paths`` (files in the run folder) under ``files[key]`` in ``summary.json``."""
        if self.folder is not None:
            listed = self.summary.setdefault("files", {}).setdefault(key, [])
            new = [name for name in (os.path.relpath(path, self.folder) for path in paths) if name not in listed]
            if new:  # TextSamples publishes the same table after every validation
                listed += new
                self._save()


def add_files(trainer, key: str, paths: list[Path]) -> None:
    """For callbacks: lists files they wrote in the run folder in the run's ``summary.json``."""
    for callback in trainer.callbacks:
        if isinstance(callback, RunSummary):
            callback.add_files(key, paths)
