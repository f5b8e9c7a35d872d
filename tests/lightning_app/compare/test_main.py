"""Sweep trials run as the W&B agent would start them, each its own run; compare lists, groups and plots them."""

import json
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
import wandb
import yaml
from wandb.sdk.launch.sweeps.utils import create_sweep_command, create_sweep_command_args, load_sweep_config
from wandb.sdk.lib.config_util import save_config_file_from_dict

from lightning_app import compare
from lightning_app.cli import main
from lightning_app.record.summary import RunSummary

ROOT = Path(__file__).parents[3]
WANDB = str(Path(sys.executable).parent / "wandb")
SWEEP = ROOT / "configs/sweeps/digits_mlp_sweep.yaml"
FAST = ["--trainer.max_epochs=2", "--trainer.enable_progress_bar=false", "--trainer.enable_model_summary=false"]


def agent_command(sweep: dict, values: dict) -> list[str]:
    """The command line `wandb agent` runs for one trial (wandb_agent.Agent._command_run, not on Windows)."""
    variables = create_sweep_command_args({"args": {name: {"value": value} for name, value in values.items()}})
    variables.update(env=["/usr/bin/env"], interpreter=["python"], program=[sweep["program"]])
    command = []
    for chunk in map(str, create_sweep_command(list(sweep["command"]))):
        command += variables.get(chunk[2:-1]) or [] if chunk.startswith("${") and chunk.endswith("}") else [chunk]
    return command


def trial_values(sweep: dict, end: int) -> dict:
    """The first (end=0) or last (end=-1) choice of every parameter: the corners of the search space."""
    corner = {}
    for name, space in sweep["parameters"].items():
        corner[name] = space["values"][end] if "values" in space else space["max" if end else "min"]
    return corner


@pytest.fixture(scope="module")
def trials(tmp_path_factory):
    """Two sweep trials, started like the agent starts them: their own run ids and sweep parameter files."""
    sweep = load_sweep_config(str(SWEEP))
    folder = tmp_path_factory.mktemp("sweep")
    made = {}
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(folder)
        for run_id, end in (("trial0", 0), ("trial1", -1)):
            values = trial_values(sweep, end)
            command = agent_command(sweep, values)
            assert command[:5] == ["/usr/bin/env", "python", "-m", "lightning_app", "fit"]
            args = [str(ROOT / arg) if arg.startswith("configs/") else arg for arg in command[5:]]  # the agent runs in the repo
            parameters = folder / f"sweep-{run_id}.yaml"
            save_config_file_from_dict(str(parameters), {name: {"value": value} for name, value in values.items()})
            patch.setenv("WANDB_RUN_ID", run_id)
            patch.setenv("WANDB_SWEEP_PARAM_PATH", str(parameters))
            wandb.teardown()  # W&B reads the environment once per process: the agent does this between trials
            main(["fit", *args, *FAST])
            made[run_id] = values
    return folder / "runs/lightning_app", made


def test_each_trial_is_its_own_run_with_its_own_config(trials):
    project, made = trials
    assert sorted(p.name for p in project.iterdir()) == sorted(made)
    for run_id, values in made.items():
        config = yaml.safe_load((project / run_id / "config.yaml").read_text())
        for name, value in values.items():
            group, _, key = name.split(".")
            assert config[group]["init_args"][key] == pytest.approx(value), name


def test_compare_lists_runs_with_their_differing_hyperparameters(trials, capsys):
    project, made = trials
    text = compare.main([str(project.parent), "--runs"])
    assert capsys.readouterr().out.strip() == text
    header, _, *rows = text.splitlines()
    columns = [cell.strip() for cell in header.strip("|").split("|")]
    swept = ["data.batch_size", "model.dropout", "model.hidden_sizes", "optimizer.lr"]
    assert columns[:7] == ["run", "model", "data", *swept]  # and nothing else differs
    assert {"val/acc final", "val/acc best", "val/loss final", "test/acc", "train time", "device"} <= set(columns)
    for row in rows:
        cells = dict(zip(columns, (cell.strip() for cell in row.strip("|").split("|"))))
        history = [json.loads(line) for line in (project / cells["run"] / "metrics.jsonl").read_text().splitlines()]
        summary = json.loads((project / cells["run"] / "summary.json").read_text())
        assert cells["model"] == "MLP" and cells["data"] == "Digits" and cells["device"] == "cpu 32-true"
        assert cells["model.hidden_sizes"] == str(made[cells["run"]]["model.init_args.hidden_sizes"])
        assert cells["val/acc final"] == f"{history[-1]['val/acc']:.4f}"
        assert cells["val/acc best"] == f"{max(r['val/acc'] for r in history):.4f}"
        assert cells["val/loss best"] == f"{min(r['val/loss'] for r in history):.4f}"
        assert cells["test/acc"] == f"{summary['test']['test/acc']:.4f}"
        assert cells["epochs"] == "2" and cells["status"] == "finished"
        assert cells["config_id"] == compare.config_id(yaml.safe_load((project / cells["run"] / "config.yaml").read_text()))


def test_each_trial_is_its_own_group(trials):
    project, made = trials
    groups = json.loads(compare.main([str(project.parent), "--json"]))
    assert sorted(group["runs"][0] for group in groups) == sorted(made) and [group["n"] for group in groups] == [1, 1]
    for group in groups:
        config = yaml.safe_load((project / group["runs"][0] / "config.yaml").read_text())
        assert group["label"] == group["config_id"] == compare.config_id(config)
        assert group["config"]["model.hidden_sizes"] == str(made[group["runs"][0]]["model.init_args.hidden_sizes"])


@pytest.mark.slow
def test_the_w_and_b_run_config_holds_the_config_id_compare_computes(trials):
    project, made = trials
    for run_id in made:
        (offline,) = (project.parent / "wandb").glob(f"offline-run-*-{run_id}")
        # wandb's own reader of the offline run's .wandb log: the run's config as W&B would upload it
        out = subprocess.run([WANDB, "leet", "inspect", "--summary", "--json", str(offline)], capture_output=True, text=True, check=True)
        expected = compare.config_id(yaml.safe_load((project / run_id / "config.yaml").read_text()))
        assert json.loads(out.stdout)["config"]["config_id"] == expected


def test_summary_records_the_model_and_machine(trials):
    project, made = trials
    summary = json.loads((project / "trial0" / "summary.json").read_text())
    hidden = made["trial0"]["model.init_args.hidden_sizes"]  # 64 inputs -> hidden layers -> 10 classes
    widths = [64, *hidden, 10]
    assert summary["parameters"] == sum(a * b + b for a, b in zip(widths, widths[1:]))
    assert (summary["processes"], summary["nodes"], summary["precision"]) == (1, 1, "32-true")


def test_plot_draws_the_learning_curves(trials, tmp_path):
    project, _ = trials
    compare.main([str(project / "trial0"), str(project / "trial1"), "--plot", str(tmp_path / "curves.png")])
    image = (tmp_path / "curves.png").read_bytes()
    assert image.startswith(b"\x89PNG") and len(image) > 10_000


def test_compare_says_when_there_are_no_runs(tmp_path):
    with pytest.raises(SystemExit, match="no runs under"):
        compare.main([str(tmp_path)])


def test_flatten_names_keys_without_init_args():
    flat = compare.flatten({"model": {"class_path": "m.MLP", "init_args": {"hidden_sizes": [8, 4], "dropout": 0.1}}})
    assert flat == {"model.class_path": "m.MLP", "model.hidden_sizes": "[8, 4]", "model.dropout": 0.1}


def write_run(folder: Path, summary: str, metrics: list[str], config: str = "model:\n  init_args:\n    dropout: 0.1\n") -> Path:
    folder.mkdir(parents=True)
    (folder / "summary.json").write_text(summary)
    (folder / "metrics.jsonl").write_text("".join(line + "\n" for line in metrics))
    (folder / "config.yaml").write_text(config)
    return folder


def epoch(number: int, **metrics) -> str:
    return json.dumps({"epoch": number, "step": 10 * (number + 1), "time": 1.0, **metrics})


def test_compare_leaves_out_what_it_cannot_read_and_names_the_file(tmp_path):
    summary = json.dumps({"model": "MLP", "data": "Digits", "status": "finished"})
    write_run(tmp_path / "good", summary, [epoch(0, **{"val/acc": 0.5}), epoch(1, **{"val/acc": 0.75})])
    write_run(tmp_path / "bad_summary", '{"model": "MLP", "da', [epoch(0)])
    write_run(tmp_path / "bad_config", summary, [epoch(0)], config="model: [unclosed\n")
    write_run(tmp_path / "bad_line", summary, [epoch(0, **{"val/acc": 0.25}), '{"epoch": 1, "val/a', '"no epoch"'])
    with pytest.warns(UserWarning) as caught:
        text = compare.main([str(tmp_path), "--runs"])
    warned = "\n".join(str(w.message) for w in caught)
    assert str(tmp_path / "bad_summary" / "summary.json") in warned and str(tmp_path / "bad_config" / "config.yaml") in warned
    assert f"{tmp_path / 'bad_line' / 'metrics.jsonl'}, line 2: skipped" in warned and "line 3: skipped" in warned
    rows = {row.split("|")[1].strip(): row for row in text.splitlines()[2:]}
    assert sorted(rows) == ["bad_line", "good"]  # the rest is printed
    assert "| 0.2500 | 0.2500 |" in rows["bad_line"] and "| 0.7500 | 0.7500 |" in rows["good"]


def test_a_later_line_without_metrics_does_not_erase_an_epoch(tmp_path):
    lines = [epoch(0, **{"train/loss": 2.0, "val/acc": 0.5}), epoch(1, **{"val/acc": 0.6}), epoch(0)]  # a resume closing epoch 0
    run = compare.load_run(write_run(tmp_path / "resumed", "{}", lines))
    assert [record.get("val/acc") for record in run.history] == [0.5, 0.6]


def test_an_epoch_without_metrics_writes_no_line(tmp_path):
    # What a resumed run sees when it only closes the epoch its checkpoint ended: no metric logged yet.
    summary = RunSummary()
    trainer = SimpleNamespace(
        is_global_zero=True, logger=None, default_root_dir=str(tmp_path), datamodule=None, precision="32-true",
        world_size=1, num_nodes=1, strategy=SimpleNamespace(root_device=torch.device("cpu")),
        callback_metrics={}, current_epoch=0, global_step=3,
    )  # fmt: skip
    module = torch.nn.Linear(2, 2)
    summary.setup(trainer, module, "fit")
    summary.on_fit_start(trainer, module)
    summary.on_train_epoch_end(trainer, module)
    summary.on_train_end(trainer, module)
    assert not (tmp_path / "metrics.jsonl").exists()
    trainer.callback_metrics = {"train/loss": torch.tensor(1.5)}
    summary.on_train_epoch_end(trainer, module)
    summary.on_train_end(trainer, module)
    assert json.loads((tmp_path / "metrics.jsonl").read_text())["train/loss"] == 1.5
