"""The one entry point: ``python -m lightning_app {fit,validate,test,predict} --config X.yaml``."""

import inspect
import sys
from pathlib import Path
from typing import Any, Literal

import lightning as L
import torch
from lightning.pytorch.callbacks import LearningRateMonitor, ModelCheckpoint, ProgressBar, TQDMProgressBar
from lightning.pytorch.cli import LightningCLI, LRSchedulerTypeUnion, ReduceLROnPlateau
from lightning.pytorch.loggers import WandbLogger
from lightning.pytorch.utilities.model_helpers import is_overridden

from lightning_app.compile import compile_model
from lightning_app.cpu_bf16 import warn_if_bf16_is_slow
from lightning_app.faults import FaultTolerance
from lightning_app.resume import resolve_resume
from lightning_app.schedules import fit_to_run
from lightning_app.summary import RunSummary
from lightning_app.tracking import SaveRunConfig, wandb_offline

WANDB_LOGGER = "lightning.pytorch.loggers.WandbLogger"
# Data module attributes that become model arguments of the same name, so a config never repeats them.
LINKED = ("input_shape", "num_classes", "vocab", "block_size")
TRAINER_DEFAULTS = {
    "default_root_dir": "runs",
    "logger": {"class_path": WANDB_LOGGER, "init_args": {"project": "lightning_app", "save_dir": "runs"}},
}


class AppCLI(LightningCLI):
    """LightningCLI with the project's defaults: W&B logging, checkpoints, linked shapes, test after fit."""

    def __init__(self, args: list[str] | None = None, run: bool = True) -> None:
        super().__init__(
            model_class=L.LightningModule,
            datamodule_class=L.LightningDataModule,
            subclass_mode_model=True,
            subclass_mode_data=True,
            save_config_callback=SaveRunConfig,
            save_config_kwargs={"save_to_log_dir": False},
            trainer_defaults=TRAINER_DEFAULTS,
            args=args,
            run=run,
        )

    def add_arguments_to_parser(self, parser) -> None:
        parser.add_lightning_class_args(ModelCheckpoint, "checkpoint")
        parser.add_lightning_class_args(FaultTolerance, "faults")
        parser.set_defaults(
            {
                "checkpoint.monitor": "val/acc",
                "checkpoint.mode": "max",
                "checkpoint.save_last": True,
                "checkpoint.filename": "epoch{epoch}-step{step}",
                "checkpoint.auto_insert_metric_name": False,
            }
        )
        for attribute in LINKED:  # applied once the data module exists; skipped where the model lacks it
            parser.link_arguments(f"data.{attribute}", f"model.init_args.{attribute}", apply_on="instantiate")
        parser.add_argument(
            "--test_after_fit", type=bool, default=True, help="After `fit`, test the best checkpoint on the test split."
        )
        parser.add_argument(
            "--lr_interval",
            type=Literal["epoch", "step"],
            default="epoch",
            help="Step the lr_scheduler after every epoch or after every optimizer step.",
        )
        parser.add_argument(
            "--compile", type=bool, default=False, help="Compile the model's forward with torch.compile (see docs/gpu.md)."
        )

    def before_instantiate_classes(self) -> None:
        config = self.config.get(str(self.subcommand), self.config)
        logger = config.trainer.logger
        if not (hasattr(logger, "class_path") and logger.class_path == WANDB_LOGGER):
            return
        model = config.model.class_path.rsplit(".", 1)[-1]
        data = config.data.class_path.rsplit(".", 1)[-1]
        experiment = Path(str(config.config[-1])).stem if config.get("config") else f"{data}-{model}"
        init_args = logger.init_args
        init_args.name = init_args.name or f"{experiment}-{self.subcommand}"
        init_args.offline = init_args.offline or wandb_offline()
        group = init_args.get("group") or experiment  # `--trainer.logger.init_args.group` names another group (a sweep)
        logger.dict_kwargs = {"group": group, "tags": [model, data, self.subcommand], **logger.get("dict_kwargs", {})}
        resolve_resume(config, str(self.subcommand))

    def after_instantiate_classes(self) -> None:
        check_compatible(self.model, self.datamodule)
        warn_if_bf16_is_slow(self.trainer)
        if self._get(self.config, "compile"):
            compile_model(self.model)
        self.trainer.callbacks.append(RunSummary())
        if self.subcommand == "fit" and self.trainer.logger and self._get(self.config, "lr_scheduler"):
            self.trainer.callbacks.append(LearningRateMonitor(logging_interval=self._get(self.config, "lr_interval")))

    def _instantiate_trainer(self, config: dict[str, Any], callbacks: list) -> L.Trainer:
        if config.get("enable_checkpointing") is False:  # honour the flag despite the `checkpoint` group
            callbacks = [c for c in callbacks if not isinstance(c, ModelCheckpoint)]
        chosen = [*callbacks, *(config.get("callbacks") or [])]
        if config.get("enable_progress_bar") is not False and not any(isinstance(c, ProgressBar) for c in chosen):
            # Lightning's default bar redraws after every step, which costs more than a small model's step.
            callbacks = [*callbacks, TQDMProgressBar(refresh_rate=10)]
        return super()._instantiate_trainer(config, callbacks)

    def configure_optimizers(
        self, lightning_module: L.LightningModule, optimizer: torch.optim.Optimizer, lr_scheduler: LRSchedulerTypeUnion | None = None
    ) -> Any:
        if lr_scheduler is None:
            return optimizer
        interval = self._get(self.config, "lr_interval")
        fit_to_run(lr_scheduler, lightning_module.trainer, interval)  # the run's length is known only now
        scheduler = {"scheduler": lr_scheduler, "interval": interval}
        if isinstance(lr_scheduler, ReduceLROnPlateau):
            scheduler["monitor"] = lr_scheduler.monitor
        return {"optimizer": optimizer, "lr_scheduler": scheduler}

    def after_fit(self) -> None:
        if not self._get(self.config, "test_after_fit") or self.datamodule is None:
            return
        if not is_overridden("test_dataloader", self.datamodule, L.LightningDataModule):
            return  # no test split (the base class's method only raises)
        checkpoint = self.trainer.checkpoint_callback
        best = "best" if checkpoint is not None and checkpoint.best_model_path else None
        self.trainer.test(self.model, datamodule=self.datamodule, ckpt_path=best)


def check_compatible(model: L.LightningModule, datamodule: L.LightningDataModule | None) -> None:
    """Fails early when a model needs a shape that the data module does not provide."""
    wanted = inspect.signature(type(model).__init__).parameters
    for attribute in LINKED:
        if attribute in wanted and datamodule is not None and not hasattr(datamodule, attribute):
            raise ValueError(
                f"{type(model).__name__} needs `{attribute}`, which {type(datamodule).__name__} does not provide: "
                f"pair it with a data module that has `{attribute}` (see the README's models x data table)"
            )


def main(args: list[str] | None = None) -> AppCLI:
    """Runs the CLI; ``args`` as on the command line (``["fit", "--config", "x.yaml"]``)."""
    try:
        return AppCLI(args=args)
    finally:
        wandb = sys.modules.get("wandb")  # imported only if a run used it
        if wandb is not None:
            if wandb.run is not None:  # close the run, so the next CLI call in this process starts its own
                wandb.finish()
            wandb.teardown()  # and stop W&B's service: the next run starts a fresh one
