"""The one entry point: ``python -m lightning_app {fit,validate,test,predict} --config X.yaml``."""

import inspect
import signal
import sys
from typing import Any, Literal

import lightning as L
import torch
import yaml
from lightning.pytorch.callbacks import Callback, LearningRateMonitor, ProgressBar
from lightning.pytorch.cli import LightningCLI, LRSchedulerTypeUnion, ReduceLROnPlateau
from lightning.pytorch.loggers import WandbLogger
from lightning.pytorch.utilities.exceptions import SIGTERMException
from lightning.pytorch.utilities.model_helpers import is_overridden

from lightning_app.checkpoints import FaultTolerance, ModelCheckpointLast, ckpt_path
from lightning_app.defaults import TimedProgressBar, compile_model, fuse, skip_empty_step_hooks, warn_if_bf16_is_slow
from lightning_app.errors import UsefulErrorParser, check_optimizer
from lightning_app.pictures import Pictures, default_pictures
from lightning_app.record.folder import PROJECT, RunLock, experiment_name
from lightning_app.record.logger import (
    WANDB_LOGGER,
    SaveRunConfig,
    name_wandb_run,
    prepare_init,
    skip_unused_launch_inputs,
    start_service,
    start_service_early,
    wait_for_service,
)
from lightning_app.record.read import check_config_files
from lightning_app.record.summary import RunSummary
from lightning_app.schedules import fit_to_run

# Data module attributes that become model arguments of the same name, so a config never repeats them.
LINKED = ("input_shape", "num_classes", "vocab", "block_size")
TRAINER_DEFAULTS = {
    "default_root_dir": "runs",
    "logger": {"class_path": WANDB_LOGGER, "init_args": {"project": PROJECT, "save_dir": "runs"}},
}


def trainer_defaults(args: list[str]) -> dict[str, Any]:
    """``TRAINER_DEFAULTS``, without the W&B logger where the command line's last ``--trainer.logger``
    is false or null: jsonargparse would still resolve the default's class, importing wandb for
    nothing (0.5 s of every run without a logger)."""
    last = None
    for i, arg in enumerate(args):
        if arg == "--trainer.logger" and i + 1 < len(args):
            last = args[i + 1]
        elif arg.startswith("--trainer.logger="):
            last = arg.split("=", 1)[1]
    if last is not None and last.lower() in ("false", "null", "none"):
        return {key: value for key, value in TRAINER_DEFAULTS.items() if key != "logger"}
    return TRAINER_DEFAULTS


class AppCLI(LightningCLI):
    """LightningCLI with the project's defaults: W&B logging, checkpoints, linked shapes, test after fit."""

    def __init__(self, args: list[str] | None = None, run: bool = True) -> None:
        self.run_folder = None  # a run without a logger: its own folder (lightning_app/record/folder.py)
        self.checkpoint_links: dict[str, Any] = {}  # the --ckpt_path checkpoint's values of LINKED
        given = sys.argv[1:] if args is None else args
        self.only = given[0] if given and given[0] in LightningCLI.subcommands() else None
        start_service_early(given)
        super().__init__(
            model_class=L.LightningModule,
            datamodule_class=L.LightningDataModule,
            subclass_mode_model=True,
            subclass_mode_data=True,
            save_config_callback=SaveRunConfig,
            save_config_kwargs={"save_to_log_dir": False},
            trainer_defaults=trainer_defaults(given),
            parser_class=UsefulErrorParser,
            args=args,
            run=run,
        )

    def subcommands(self) -> dict[str, set[str]]:
        """Lightning's subcommands; only the one the command line starts with, where it starts with one.

        Each subcommand's parser holds every argument of the trainer, the model, the data and the
        callbacks: building the three that a run does not use cost 0.1 s of every run (docs/speed.md).
        """
        every = LightningCLI.subcommands()
        return {self.only: every[self.only]} if getattr(self, "only", None) else every

    def add_arguments_to_parser(self, parser) -> None:
        # Not `add_lightning_class_args`, which adds the checkpoint to every trainer: `instantiate_trainer` adds it
        # unless `--trainer.enable_checkpointing false` (the Trainer refuses a ModelCheckpoint with that flag).
        parser.add_class_arguments(ModelCheckpointLast, "checkpoint", fail_untyped=False, sub_configs=True)
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
            "--pictures",
            type=Pictures | bool,
            default=True,
            help="Picture callbacks added where they fit the model; `false` for none, `--pictures.<kind> false` "
            "to leave one kind out (docs/pictures.md).",
        )
        parser.add_argument(
            "--trusted_packages",
            type=list[str],
            default=[],
            help="Packages besides `modules` whose LightningModule classes a checkpoint may name (and so import).",
        )
        parser.add_argument(
            "--lr_interval",
            type=Literal["epoch", "step"],
            default="epoch",
            help="Step the lr_scheduler after every epoch or after every optimizer step.",
        )
        parser.add_argument(
            "--wandb_capture",
            type=bool,
            default=False,
            help="Let W&B capture the console output and sample system metrics, as W&B does by default "
            "(off here: both compete with training for the CPU; docs/speed.md).",
        )
        parser.add_argument(
            "--compile", type=bool, default=False, help="Compile the model's forward with torch.compile (see docs/gpu.md)."
        )

    def setup_parser(self, add_subcommands: bool, main_kwargs: dict[str, Any], subparser_kwargs: dict[str, Any]) -> None:
        """Lightning's, unless ``prebuild_parser`` built this parser in this process already (a sweep's
        fork server, of which each trial is a fork): then its trial takes it rather than building its own."""
        key = repr((self.only, self.trainer_defaults, add_subcommands, main_kwargs, subparser_kwargs))
        if key in _PREBUILT:  # taken once: the parse changes what it takes
            self.parser, self._subcommand_parsers, self._subcommand_method_arguments = _PREBUILT.pop(key)
            return
        super().setup_parser(add_subcommands, main_kwargs, subparser_kwargs)
        if isinstance(self, _Prebuild):
            _PREBUILT[key] = self.parser, self._subcommand_parsers, self._subcommand_method_arguments
            raise _Prebuild.Built

    def _parse_ckpt_path(self) -> None:
        """Lightning re-parses the checkpoint's hyperparameters here, unchecked; ``ckpt_path.resolve`` does it
        in ``before_instantiate_classes``, once the file and its model class are checked."""

    def _dump_config(self) -> None:
        """Lightning's dump of the config, whose model and data sections become their hyperparameters, without
        validating the whole config a second time: it was checked when parsed, and checking it again cost
        0.15-0.35 s of every run and sweep trial (docs/speed.md)."""
        if hasattr(self, "config_dump"):
            return
        text = self.parser.dump(self.config, skip_link_targets=False, skip_none=False, skip_validation=True)
        self.config_dump = yaml.safe_load(text)
        if "subcommand" in self.config:
            self.config_dump = self.config_dump[self.config.subcommand]

    def before_instantiate_classes(self) -> None:
        subcommand = str(self.subcommand)
        config = self.config.get(subcommand, self.config)
        check_compatible(ckpt_path.import_class(config.model.class_path), ckpt_path.import_class(config.data.class_path))
        check_optimizer(config)
        self.config, self.checkpoint_links, self.run_folder = ckpt_path.resolve(self.parser, self.config, subcommand, LINKED)
        config = self.config.get(subcommand, self.config)
        name_wandb_run(config, experiment_name(config), subcommand)
        start_service(config)

    def after_instantiate_classes(self) -> None:
        if self.checkpoint_links:
            ckpt_path.check_linked(self.model, self.checkpoint_links, self._get(self.config, "ckpt_path"))
        warn_if_bf16_is_slow(self.trainer)
        if self._get(self.config, "compile"):
            compile_model(self.model)
        lock = RunLock()
        self.trainer.callbacks.insert(0, lock)  # first: before anything writes into the run folder
        logger = self.trainer.logger
        if isinstance(logger, WandbLogger):
            skip_unused_launch_inputs()
            prepare_init(logger)
        if self.run_folder is not None or (isinstance(logger, WandbLogger) and logger.version is not None):
            lock.acquire(self.trainer)  # the folder is known: locked before the logger opens a run there
        self.trainer.callbacks.append(RunSummary())
        self.trainer.callbacks += default_pictures(
            self.model, self.datamodule, str(self.subcommand), self.trainer.callbacks, self._get(self.config, "pictures")
        )
        if self.subcommand == "fit" and self.trainer.logger and self._get(self.config, "lr_scheduler"):
            self.trainer.callbacks.append(LearningRateMonitor(logging_interval=self._get(self.config, "lr_interval")))
        skip_empty_step_hooks(self.trainer.callbacks)

    def instantiate_trainer(self, **kwargs: Any) -> L.Trainer:
        if self.run_folder is not None:  # no logger: the run's own folder, not the shared root
            kwargs.setdefault("default_root_dir", str(self.run_folder))
        config = self.config_init.get(str(self.subcommand), self.config_init)
        trainer = config.trainer
        chosen = trainer.callbacks or []
        chosen = chosen if isinstance(chosen, list) else [chosen]
        added: list[Callback] = [config.checkpoint] if trainer.enable_checkpointing is not False else []
        if trainer.enable_progress_bar is not False and not any(isinstance(c, ProgressBar) for c in chosen):
            added.append(TimedProgressBar())  # Lightning's default bar redraws after every step
        kwargs.setdefault("callbacks", [*chosen, *added])
        return super().instantiate_trainer(**kwargs)

    def configure_optimizers(
        self, lightning_module: L.LightningModule, optimizer: torch.optim.Optimizer, lr_scheduler: LRSchedulerTypeUnion | None = None
    ) -> Any:
        fuse(optimizer, lightning_module.trainer.strategy.root_device)
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


_PREBUILT: dict[str, tuple] = {}  # see prebuild_parser


class _Prebuild(AppCLI):
    """An ``AppCLI`` that stops once its parser is built (``setup_parser``)."""

    class Built(Exception):
        pass


def prebuild_parser(args: list[str]) -> None:
    """Builds the parser that ``AppCLI(args)`` builds, and keeps it for the next ``AppCLI`` of this
    process with the same inputs (the subcommand and the trainer's defaults), which takes it. A
    sweep's fork server calls it once: each trial, a fork, takes its own copy (0.03 s a trial)."""
    try:
        _Prebuild(args=[*args, "--print_config"])  # --print_config: W&B's service is not started early
    except _Prebuild.Built:
        pass


def check_compatible(model: type, data: type) -> None:
    """Fails before anything is built when a model needs a shape that the data module does not provide."""
    wanted = inspect.signature(model.__init__).parameters
    provided = inspect.signature(data.__init__).parameters  # e.g. Text's block_size, an argument
    for attribute in LINKED:
        if attribute in wanted and not (hasattr(data, attribute) or attribute in provided):
            raise ValueError(
                f"{model.__name__} needs `{attribute}`, which {data.__name__} does not provide: "
                f"pair it with a data module that has `{attribute}` (docs/models.md: which model runs on which data)"
            )


def main(args: list[str] | None = None) -> AppCLI:
    """Runs the CLI; ``args`` as on the command line (``["fit", "--config", "x.yaml"]``)."""
    try:
        check_config_files(sys.argv[1:] if args is None else args)
        return AppCLI(args=args)
    except SIGTERMException as stop:  # Lightning's own stop on SIGTERM (e.g. during validation) would exit with 0
        raise SystemExit(128 + signal.SIGTERM) from stop
    finally:
        wait_for_service()
        wandb = sys.modules.get("wandb")  # imported only if a run used it
        if wandb is not None:
            if wandb.run is not None:  # close the run, so the next CLI call in this process starts its own
                wandb.finish()
            wandb.teardown()  # and stop W&B's service: the next run starts a fresh one
