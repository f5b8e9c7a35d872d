"""Every file in configs/ builds what it says, trains as shipped on tiny data, and claims only measured results.

Each config runs with its own model, data module, optimizer, schedule and callbacks; the tests change
only the data (tiny files in the real format, tests/fakes.py), the widths and batch sizes named in
tests/fakes.py's SMALL, and how long the run is. A new config is covered by these tests without editing them.
"""

import importlib
import re
from pathlib import Path

import lightning as L
import pytest
import torch
import yaml
from lightning.pytorch.strategies import DDPStrategy
from lightning.pytorch.utilities.model_helpers import is_overridden

from lightning_app.cli import AppCLI, main
from lightning_app.schedules import WarmupCosine
from tests.fakes import fake_data_args, small_args

ROOT = Path(__file__).parents[1]
CONFIGS = sorted((ROOT / "configs").glob("*.yaml"))
RESULTS = ROOT / "docs" / "results.md"
QUIET = ["--trainer.logger", "false", "--trainer.enable_progress_bar", "false", "--trainer.accelerator", "cpu"]
# A header claim: a metric of the table and a number, either way round ("test accuracy 97.2%", "98% test accuracy").
METRIC, NUMBER = r"(test accuracy|val(?:idation)? loss|val/\w+)", r"(\d+(?:\.\d+)?)(%?)"
CLAIMS = (re.compile(f"{METRIC} (?:of )?{NUMBER}"), re.compile(f"{NUMBER} {METRIC}"))
# A table cell: "97.35 ± 0.20% (n=3)" for the value, "97.92 ± 0.30%" in the "more" column (the row's n).
CELL = re.compile(r"(\d+(?:\.\d+)?) ± (\d+(?:\.\d+)?)%?(?: \(n=(\d+)\))?")
FLOOR = {"%": 0.1, "": 0.01}  # percentage points, nats: a claim rounded to 1 or 2 places is off by up to 0.05 / 0.005
pytestmark = pytest.mark.usefixtures("one_thread")  # tiny models: 8x faster on a busy 2-core CPU


def shipped(config: Path) -> dict:
    return yaml.safe_load(config.read_text())


def data_class(settings: dict) -> type:
    module, name = settings["data"]["class_path"].rsplit(".", 1)
    return getattr(importlib.import_module(module), name)


def native_bf16() -> bool:
    """Whether this CPU computes in bfloat16 (AVX512-BF16, AMX); without, a bf16 step is hundreds of times slower."""
    cpuinfo = Path("/proc/cpuinfo")
    return cpuinfo.exists() and any(flag in cpuinfo.read_text() for flag in (" avx512_bf16", " amx_bf16"))


def fit(config: Path, folder: Path, monkeypatch, *run: str) -> AppCLI:
    settings = shipped(config)
    data = fake_data_args(data_class(settings), folder / "data", monkeypatch)
    bf16 = str(settings["trainer"].get("precision", "")).startswith("bf16")
    precision = ["--trainer.precision", "32-true"] if bf16 and not native_bf16() else []  # as shipped where it is fast
    return main(["fit", "--config", str(config), *data, *small_args(settings), *QUIET, *precision, *run])


@pytest.mark.parametrize("config", CONFIGS, ids=[c.stem for c in CONFIGS])
def test_config_trains_two_steps_validates_and_tests(config, in_tmp, monkeypatch):
    few = ["--trainer.limit_train_batches", "2", "--trainer.limit_val_batches", "1", "--trainer.limit_test_batches", "1"]
    cli = fit(config, in_tmp, monkeypatch, "--trainer.max_steps", "2", *few, "--trainer.num_sanity_val_steps", "0")
    trainer, metrics = cli.trainer, cli.trainer.callback_metrics
    assert trainer.global_step == 2
    score = trainer.checkpoint_callback.best_model_score  # the validation's val/acc or val/loss
    assert score is not None and torch.isfinite(score) and Path(trainer.checkpoint_callback.best_model_path).is_file()
    has_test = is_overridden("test_dataloader", cli.datamodule, L.LightningDataModule)
    assert ("test/acc" in metrics) == has_test  # fit ends with the test wherever the data has a test split


@pytest.mark.parametrize("config", CONFIGS, ids=[c.stem for c in CONFIGS])
def test_config_survives_a_three_step_smoke_run(config, in_tmp, monkeypatch):
    # As a user's first try: more than three batches an epoch, so training stops before any validation.
    # No pictures: the two-step test above draws every config's (they cost this test about half its time).
    cli = fit(config, in_tmp, monkeypatch, "--trainer.max_steps", "3", "--pictures", "false")
    assert cli.trainer.global_step == 3
    schedules = [c.scheduler for c in cli.trainer.lr_scheduler_configs if isinstance(c.scheduler, WarmupCosine)]
    for scheduler in schedules:  # sized by this run, not by the config's epochs
        assert scheduler.total_steps == (3 if cli.trainer.lr_scheduler_configs[0].interval == "step" else cli.trainer.max_epochs)


def plain(value):
    return [plain(v) for v in value] if isinstance(value, (list, tuple)) else value


@pytest.mark.parametrize("config", CONFIGS, ids=[c.stem for c in CONFIGS])
def test_config_builds_what_it_says_on_two_ddp_processes(config, in_tmp):
    settings = shipped(config)
    ddp = ["--trainer.devices", "2", "--trainer.strategy", "ddp", "--trainer.accelerator", "cpu"]
    cli = AppCLI(args=["--config", str(config), "--trainer.logger", "false", *ddp], run=False)
    assert isinstance(cli.trainer.strategy, DDPStrategy) and cli.trainer.num_devices == 2
    assert cli.trainer.max_epochs == settings["trainer"]["max_epochs"]
    assert settings["model"]["class_path"].endswith(f".{type(cli.model).__name__}")
    for name, value in (settings["model"].get("init_args") or {}).items():
        assert plain(cli.model.hparams[name]) == value, f"{config.name}: model.{name}"
    assert type(cli.datamodule) is data_class(settings)
    for name, value in settings["data"]["init_args"].items():
        if hasattr(cli.datamodule, name):  # an argument kept under its own name
            found = getattr(cli.datamodule, name)
            assert (str(found) if isinstance(found, Path) else plain(found)) == value, f"{config.name}: data.{name}"


def measured() -> dict[str, dict[str, str]]:
    """The rows of docs/results.md by config: column name -> cell."""
    lines = [line for line in RESULTS.read_text().splitlines() if line.startswith("| ")]
    header = [cell.strip() for cell in lines[0].strip("|").split("|")]
    rows = [dict(zip(header, (cell.strip() for cell in line.strip("|").split("|")))) for line in lines[2:]]
    return {row["config"]: row for row in rows}


def tolerance(std: float, n: int, percent: str) -> float:
    """How far a claim may sit from the measured mean: three standard errors of the mean, 3 std / sqrt(n),
    or the rounding floor (FLOOR) where that is smaller; a claim within it is the mean, rounded."""
    return max(3 * std / n**0.5, FLOOR[percent])


@pytest.mark.parametrize("config", CONFIGS, ids=[c.stem for c in CONFIGS])
def test_config_header_states_its_command_and_only_measured_results(config):
    """Every figure a header claims is a measured mean of docs/results.md, within ``tolerance``."""
    lines = config.read_text().splitlines()
    header = " ".join(line.lstrip("# ") for line in lines[: next(i for i, line in enumerate(lines) if line[:1] != "#")])
    command = f"# python -m lightning_app fit --config configs/{config.name}"
    assert lines[0] == command, f"{config.name} must start with its command"
    assert "docs/results.md" in header, f"{config.name}: name the results table (docs/results.md) in the header"
    row = measured().get(config.stem, {})
    more = dict(item.split(" ", 1) for item in row.get("more", "").split(", ") if " " in item)  # "val/knn_acc 97.92 ± 0.30%"
    claims = CLAIMS[0].findall(header) + [(metric, number, percent) for number, percent, metric in CLAIMS[1].findall(header)]
    n = int(CELL.fullmatch(row["value"]).group(3)) if claims and row.get("value") else 0
    for metric, number, percent in claims:
        metric = metric.replace("validation", "val")
        cell = row.get("value") if metric == row.get("metric") else more.get(metric)
        assert cell, f"{config.name} claims {metric} {number}{percent}, which docs/results.md does not measure"
        mean, std = (float(x) for x in CELL.match(cell).group(1, 2))
        allowed = tolerance(std, n, percent)
        assert abs(float(number) - mean) <= allowed, f"{config.name}: {metric} {number}, measured {cell} (± {allowed:.2f})"


def test_the_claim_tolerance_is_three_standard_errors_or_the_rounding_floor():
    assert tolerance(0.6, 4, "%") == pytest.approx(0.9) and tolerance(0.0, 3, "%") == 0.1
    assert tolerance(0.001, 3, "") == 0.01 and CELL.fullmatch("97.35 ± 0.20% (n=3)").group(1, 2, 3) == ("97.35", "0.20", "3")


def test_a_data_module_without_a_fake_writer_is_named(tmp_path, monkeypatch):
    class Unseen(L.LightningDataModule):
        pass

    with pytest.raises(LookupError, match="no fake_unseen.*for datamodules.Unseen"):
        fake_data_args(Unseen, tmp_path, monkeypatch)
