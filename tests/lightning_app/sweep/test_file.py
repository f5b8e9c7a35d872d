"""W&B sweep files read as Optuna searches: every supported form, and a clear error for the rest."""

import importlib
import math
import os
import sys
from pathlib import Path

import optuna
import pytest
import yaml
from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution
from wandb.sdk.launch.sweeps.utils import load_sweep_config

from lightning_app.sweep.file import SweepFile, SweepFileError, read_sweep_or_config
from tests.lightning_app.compare.test_main import SWEEP, agent_command, trial_values

BASE = {
    "method": "random",
    "metric": {"name": "val/acc_best", "goal": "maximize"},
    "parameters": {"optimizer.init_args.lr": {"values": [0.1, 0.01]}},
    "command": ["${interpreter}", "-m", "lightning_app", "fit", "${args}"],
}


def read(tmp_path: Path, **changes) -> SweepFile:
    path = tmp_path / "sweep.yaml"
    path.write_text(yaml.safe_dump({**BASE, **changes}))
    return SweepFile.read(path)


def test_the_shipped_sweep_reads_as_written():
    sweep = SweepFile.read(SWEEP)
    assert (sweep.method, sweep.metric, sweep.goal) == ("bayes", "val/acc_best", "maximize")
    assert sweep.pruning == {"min_resource": 5, "reduction_factor": 3}  # early_terminate: hyperband, min_iter 5
    spaces = {p.name: p.distribution for p in sweep.parameters}
    assert spaces["optimizer.init_args.lr"] == FloatDistribution(1.0e-4, 1.0e-2, log=True)
    assert spaces["model.init_args.hidden_sizes"] == CategoricalDistribution(["[64]", "[128, 64]", "[256, 128]"])


@pytest.mark.parametrize("end", [0, -1])
def test_offline_trials_run_the_command_the_agent_runs(end):
    """The same values give the same command line as `wandb agent` (which runs `python`, not this Python)."""
    values = trial_values(load_sweep_config(str(SWEEP)), end)
    offline = SweepFile.read(SWEEP).command_line(values, [])
    assert offline[1] == sys.executable
    assert [offline[0], "python", *offline[2:]] == agent_command(load_sweep_config(str(SWEEP)), values)


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ({"min": 1, "max": 8}, IntDistribution(1, 8)),
        ({"min": 0.0, "max": 0.5}, FloatDistribution(0.0, 0.5)),
        ({"distribution": "q_uniform", "min": 0, "max": 256, "q": 32}, IntDistribution(0, 256, step=32)),
        ({"distribution": "q_uniform", "min": 0.0, "max": 1.0, "q": 0.25}, FloatDistribution(0.0, 1.0, step=0.25)),
        ({"distribution": "log_uniform_values", "min": 1.0e-4, "max": 0.1}, FloatDistribution(1.0e-4, 0.1, log=True)),
        ({"distribution": "inv_log_uniform_values", "min": 1.0e-4, "max": 0.1}, FloatDistribution(1.0e-4, 0.1, log=True)),
        ({"distribution": "log_uniform", "min": -9.0, "max": -2.0}, FloatDistribution(math.exp(-9), math.exp(-2), log=True)),
        ({"distribution": "inv_log_uniform", "min": 2.0, "max": 9.0}, FloatDistribution(math.exp(-9), math.exp(-2), log=True)),
        ({"distribution": "q_log_uniform_values", "min": 16, "max": 512}, IntDistribution(16, 512, log=True)),
        ({"distribution": "categorical", "values": [[8], [16, 8]]}, CategoricalDistribution(["[8]", "[16, 8]"])),
    ],
)
def test_parameters_map_to_optuna_distributions(tmp_path, spec, expected):
    sweep = read(tmp_path, parameters={"p": spec})
    assert sweep.parameters[0].distribution == expected


def test_values_reach_the_command_as_the_agent_writes_them(tmp_path):
    params = {"model.init_args.hidden_sizes": {"values": [[16, 8]]}, "trainer.max_epochs": {"value": 1}}
    sweep = read(tmp_path, parameters=params)
    study = optuna.create_study()
    values = sweep.values(study.ask())
    assert values == {"model.init_args.hidden_sizes": [16, 8], "trainer.max_epochs": 1}
    line = sweep.command_line(values, ["--x=1"])
    assert line[-3:] == ["--model.init_args.hidden_sizes=[16, 8]", "--trainer.max_epochs=1", "--x=1"]


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"scheduler": {"engine": "optuna"}}, r"unsupported keys \['scheduler'\]"),
        ({"metric": None}, "needs `metric`"),
        ({"metric": {"name": "val/acc", "target": 0.9}}, "metric: supported are `name` and `goal`"),
        ({"metric": {"name": "val/acc", "goal": "max"}}, "metric: supported are"),
        ({"method": "custom"}, "`method` must be grid, random or bayes, got 'custom'"),
        ({"parameters": {}}, "needs `parameters`"),
        ({"parameters": {"lr": {"distribution": "normal", "mu": 0, "sigma": 1}}}, r"parameters.lr: unsupported keys \['mu', 'sigma'\]"),
        ({"parameters": {"lr": {"distribution": "beta", "min": 0, "max": 1}}}, "parameters.lr: distribution 'beta'"),
        ({"parameters": {"lr": {"min": 0.1, "max": 0.01}}}, r"parameters.lr: `min` \(0.1\) is larger than `max`"),
        ({"parameters": {"lr": {"min": "a", "max": 1}}}, "parameters.lr: `min` must be a number"),
        ({"parameters": {"lr": {"distribution": "log_uniform_values", "min": 0, "max": 1}}}, "needs `min` > 0"),
        ({"parameters": {"lr": {"values": []}}}, "parameters.lr: `values` must be a non-empty list"),
        ({"parameters": {"lr": {"values": [1, 1]}}}, "parameters.lr: `values` repeat"),
        ({"parameters": {"opt": {"parameters": {"lr": {"value": 1}}}}}, "parameters.opt: nested parameters"),
        ({"parameters": {"lr=1 --x": {"value": 1}}}, "parameters.lr=1 --x: a parameter name is a config key"),
        ({"method": "grid", "parameters": {"lr": {"min": 0.0, "max": 1.0}}}, r"grid needs `values` .*\['lr'\]"),
        ({"command": ["python", "train.py"]}, r"command: needs \$\{args\}"),
        ({"command": ["python", "${args_json}", "${args}"]}, r"unsupported macros \['\$\{args_json\}'\]"),
        ({"command": ["${program}", "${args}"]}, "uses \\$\\{program\\} but the file has no `program`"),
        ({"early_terminate": {"type": "hyperband", "min_iter": 3, "strict": True}}, r"early_terminate: unsupported keys \['strict'\]"),
        ({"early_terminate": {"type": "envelope"}}, "only `type: hyperband`"),
        ({"early_terminate": {"type": "hyperband"}}, "needs a positive integer `min_iter`, or `max_iter` and `s`"),
        ({"early_terminate": {"type": "hyperband", "min_iter": 1, "eta": 1.5}}, "`eta` must be an integer"),
        ({"run_cap": 0}, "`run_cap` must be a positive integer"),
    ],
)
def test_what_the_offline_sweep_cannot_run_is_an_error_naming_it(tmp_path, changes, message):
    with pytest.raises(SweepFileError, match=message) as error:
        read(tmp_path, **changes)
    assert str(error.value).startswith(str(tmp_path / "sweep.yaml"))  # and the file


def test_hyperband_max_iter_form_starts_at_its_first_bracket(tmp_path):
    sweep = read(tmp_path, early_terminate={"type": "hyperband", "max_iter": 27, "s": 2})
    assert sweep.pruning == {"min_resource": 3, "reduction_factor": 3}  # brackets 27/9 = 3 and 27/3 = 9


def test_without_optuna_the_command_says_how_to_install_it(monkeypatch):
    monkeypatch.setitem(sys.modules, "optuna", None)  # what `import optuna` finds when it is not installed
    monkeypatch.delitem(sys.modules, "lightning_app.sweep.driver", raising=False)
    with pytest.raises(SystemExit, match=r"needs Optuna: pip install -e '.\[sweep\]'"):
        importlib.import_module("lightning_app.sweep.driver")


@pytest.mark.parametrize("read", [SweepFile.read, lambda path: read_sweep_or_config(path, "val/acc", "maximize")])
def test_a_sweep_file_that_is_a_fifo_is_refused_at_once_naming_it(tmp_path, read):
    fifo = tmp_path / "sweep.yaml"
    os.mkfifo(fifo)
    with pytest.raises(SweepFileError, match=f"{fifo}: cannot read .*is a FIFO, not a regular file"):
        read(fifo)
