"""The private hooks of Lightning, W&B and Optuna that the project relies on, each pinned to the behaviour
it needs, so an upgrade that renames or changes one fails here, named, rather than somewhere in a run.
Also: modules that moved keep loading under their old names (saved configs name them)."""

import importlib
import inspect
import sys
import warnings

import pytest
from lightning.fabric.utilities.cloud_io import _is_local_file_protocol
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.cli import LightningCLI

import lightning_app
from lightning_app.checkpoints import ModelCheckpointLast
from lightning_app.cli import AppCLI


def test_lightning_cli_parses_the_checkpoints_hyperparameters_in_the_hook_that_appcli_turns_off():
    # AppCLI's no-op `_parse_ckpt_path` is what keeps a checkpoint's hyperparameters from being
    # parsed unchecked (lightning_app/checkpoints/ckpt_path.py does it after its checks).
    assert "self._parse_ckpt_path()" in inspect.getsource(LightningCLI)
    assert AppCLI._parse_ckpt_path is not LightningCLI._parse_ckpt_path


def test_model_checkpoint_internals_that_model_checkpoint_last_calls():
    for name in ("_should_save_on_train_epoch_end", "_should_skip_saving_checkpoint", "_monitor_candidates"):
        assert list(inspect.signature(getattr(ModelCheckpoint, name)).parameters) == ["self", "trainer"], name
    assert list(inspect.signature(ModelCheckpoint._save_last_checkpoint).parameters) == ["self", "trainer", "monitor_candidates"]
    assert issubclass(ModelCheckpointLast, ModelCheckpoint)


@pytest.mark.parametrize(("path", "local"), [("/a/b.ckpt", True), ("b.ckpt", True), ("file:///a/b.ckpt", True),
                                             ("s3://bucket/b.ckpt", False), ("https://host/b.ckpt", False)])  # fmt: skip
def test_is_local_file_protocol_tells_remote_paths_apart(path, local):
    assert _is_local_file_protocol(path) is local


def test_wandb_applies_staged_launch_inputs_through_the_hook_the_logger_wraps():
    from wandb.sdk.wandb_run import Run

    assert list(inspect.signature(Run._detect_and_apply_job_inputs).parameters) == ["self"]


def test_wandb_logger_keeps_the_init_arguments_prepare_init_edits():
    from lightning.pytorch.loggers import WandbLogger

    assert WandbLogger(offline=True)._wandb_init["anonymous"] is None  # record/logger.py: prepare_init
    logger = WandbLogger(offline=True, save_dir="runs")
    assert logger._wandb_init["dir"] == "runs"  # what wandb.init gets; prepare_init makes it absolute
    logger._wandb_init["dir"] = "/elsewhere/runs"
    assert logger.save_dir == "runs"  # the logger's own, and the saved config's, unchanged


def test_optuna_trials_carry_the_storage_id_the_sweep_hands_to_each_trial():
    import optuna

    study = optuna.create_study()
    trial = study.ask()
    assert isinstance(trial._trial_id, int)


def test_optuna_internals_that_the_shared_grid_reads():
    """lightning_app/sweep/grid.py: GridSampler's shuffled points and search space, the study's storage and
    id, the trial's cached frozen copy handed to ``before_trial``, and the name of the studies table it locks."""
    import optuna
    from optuna.storages._rdb.models import StudyModel

    sampler = optuna.samplers.GridSampler({"x": [1, 2]}, seed=0)
    assert sorted(sampler._all_grids) == [(1,), (2,)] and sampler._search_space == {"x": [1, 2]}
    study = optuna.create_study(sampler=sampler)
    assert isinstance(study._study_id, int) and hasattr(study._storage, "get_all_trials")
    assert "self.study.sampler.before_trial(study, self._cached_frozen_trial)" in inspect.getsource(optuna.trial.Trial)
    assert StudyModel.__tablename__ == "studies"


@pytest.mark.parametrize("old", sorted(lightning_app.MOVED))
def test_a_moved_module_loads_under_its_old_name_and_names_its_new_one(old, monkeypatch):
    monkeypatch.delitem(sys.modules, old, raising=False)  # as in a new process
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        module = importlib.import_module(old)
    assert module is importlib.import_module(lightning_app.MOVED[old])
    assert [str(w.message) for w in caught if issubclass(w.category, FutureWarning)] == [
        f"{old} is now {lightning_app.MOVED[old]}: use that name in configs"
    ]


def test_an_old_sweep_trials_callback_path_still_parses(tmp_path):
    cli = AppCLI(args=["--config", "configs/digits_mlp.yaml", "--trainer.logger", "false",
                       "--trainer.default_root_dir", str(tmp_path),
                       "--trainer.callbacks+=lightning_app.progress.TimedProgressBar"], run=False)  # fmt: skip
    assert any(type(c).__name__ == "TimedProgressBar" for c in cli.trainer.callbacks)


def test_lightning_cli_takes_the_hyperparameters_from_the_dump_appcli_makes_without_validating_again(tmp_path):
    # AppCLI._dump_config is Lightning's without the second validation (0.15-0.35 s a run); Lightning's
    # instantiators read the model's and the data's hyperparameters from `config_dump`.
    from lightning.pytorch.cli import _InstantiatorFn

    assert "self.cli._dump_config()" in inspect.getsource(_InstantiatorFn.__call__)
    assert "config_dump" in inspect.getsource(_InstantiatorFn.__call__)
    cli = AppCLI(args=["--config", "configs/digits_mlp.yaml", "--trainer.logger", "false",
                       "--trainer.default_root_dir", str(tmp_path)], run=False)  # fmt: skip
    ours = cli.config_dump
    del cli.config_dump
    LightningCLI._dump_config(cli)
    assert ours == cli.config_dump
    del cli.config_dump

    def refuse(*args, **kwargs):
        raise AssertionError("the config was validated a second time")

    cli.parser.validate = refuse  # the dump of AppCLI validates nothing; Lightning's would call this
    cli._dump_config()
    assert cli.config_dump == ours
    assert cli.model.hparams["input_shape"] == (1, 8, 8) and cli.model.hparams["hidden_sizes"] == [128, 64]
