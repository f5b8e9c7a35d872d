"""Repeats: every configuration run once per seed, the study given their mean; a fit config repeated as it is."""

import json
from pathlib import Path

import pytest
import yaml

from lightning_app.sweep import driver as sweep_cli
from lightning_app.sweep.file import is_run_config, read_sweep_or_config

pytestmark = pytest.mark.filterwarnings("ignore::optuna.exceptions.ExperimentalWarning")
CONFIG = Path(__file__).parents[3] / "configs/digits_mlp.yaml"


def seed_runs(trial) -> dict[int, dict]:
    """Each seed's config.yaml, by the seed it ran with."""
    runs = [Path(run) for key, run in trial.user_attrs.items() if key.startswith("run/seed")] or [
        path.parent for path in Path("runs/lightning_app").glob(f"*-{trial.number}-seed*/config.yaml")
    ]
    configs = [yaml.safe_load((run / "config.yaml").read_text()) for run in runs]
    return {config["seed_everything"]: config for config in configs}


@pytest.mark.slow
def test_each_configuration_runs_once_per_seed_and_the_study_gets_the_mean(write_sweep):
    study = sweep_cli.main([write_sweep(x={"values": [1, 2]}), "--repeats", "3", "--workers", "2"])
    assert len(study.trials) == 2
    for trial in study.trials:
        runs = seed_runs(trial)
        assert sorted(runs) == [0, 1, 2] and all(config["x"] == trial.params["x"] for config in runs.values())
        base = -((trial.params["x"] - 2) ** 2)  # the stand-in's score, plus seed / 10
        assert sorted(trial.user_attrs["values"]) == pytest.approx([base, base + 0.1, base + 0.2])
        assert trial.value == pytest.approx(base + 0.1) and trial.user_attrs["std"] == pytest.approx(0.1)
        assert trial.user_attrs["n"] == 3
    table = Path("runs/sweeps/sweep/trials.md").read_text()
    assert "| 0.1000 ± 0.1000 (3) | complete |" in table and "| -0.9000 ± 0.1000 (3) | complete |" in table
    assert "0.1000 ± 0.1000 (3)" in Path("runs/sweeps/sweep/best.yaml").read_text().splitlines()[1]


@pytest.mark.slow
def test_seeds_are_the_given_ones(write_sweep):
    study = sweep_cli.main([write_sweep(x={"values": [2]}), "--seeds", "3,7"])
    assert sorted(seed_runs(study.trials[0])) == [3, 7]
    assert study.best_value == pytest.approx(0.5)  # (0.3 + 0.7) / 2


def test_repeats_and_seeds_together_are_refused(write_sweep):
    with pytest.raises(SystemExit):
        sweep_cli.main([write_sweep(), "--repeats", "2", "--seeds", "1,2"])


def test_a_fit_config_is_one_configuration_and_a_sweep_file_is_not():
    assert is_run_config(yaml.safe_load(CONFIG.read_text()))
    assert not is_run_config({"method": "grid", "parameters": {"x": {"values": [1]}}, "metric": {"name": "m"}})
    sweep = read_sweep_or_config(CONFIG, "val/acc_best", "maximize")
    assert sweep.parameters == [] and sweep.command[-3:] == ["--config", str(CONFIG), "${args}"]


@pytest.mark.slow
def test_a_fit_config_repeated_over_seeds_with_two_workers(in_tmp):
    quick = ["--trainer.max_epochs=1", "--trainer.enable_progress_bar=false", "--test_after_fit=false"]
    study = sweep_cli.main([str(CONFIG), "--repeats", "2", "--workers", "2", "--", *quick])
    (trial,) = study.trials
    runs = seed_runs(trial)
    assert sorted(runs) == [0, 1]
    assert {config["trainer"]["logger"]["init_args"]["group"] for config in runs.values()} == {"digits_mlp"}
    accuracies = []
    for seed in (0, 1):
        run = Path(trial.user_attrs[f"run/seed{seed}"])
        accuracies.append(json.loads((run / "summary.json").read_text())["last"]["val/acc_best"])
        assert list((in_tmp / "runs/wandb").glob(f"offline-run-*-{run.name}"))  # each seed its own W&B run
    assert trial.value == pytest.approx(sum(accuracies) / 2) and trial.user_attrs["n"] == 2
