"""compare's groups of repeats and their statistics, checked against the formulas written out here."""

import json
from pathlib import Path

import numpy as np
import pytest
import yaml
from scipy import stats

from lightning_app import compare
from lightning_app.cli import main

ROOT = Path(__file__).parents[3]
TEST_ACC = {"base": [0.90, 0.92, 0.91, 0.95], "wide": [0.85, 0.88, 0.80], "alone": [0.70]}
DROPOUT = {"base": 0.0, "wide": 0.2, "alone": 0.5}


def config(dropout: float, seed: int, folder: Path) -> dict:
    """A resolved config whose seed and identity (logger, folders, checkpoint) differ per run."""
    return {
        "seed_everything": seed,
        "trainer": {"max_epochs": 2, "default_root_dir": str(folder),
                    "logger": {"class_path": "lightning.pytorch.loggers.WandbLogger",
                               "init_args": {"id": folder.name, "save_dir": str(folder)}}},
        "model": {"class_path": "modules.MLP", "init_args": {"hidden_sizes": [8], "dropout": dropout}},
        "checkpoint": {"dirpath": str(folder / "checkpoints"), "monitor": "val/acc"},
        "ckpt_path": str(folder / "last.ckpt") if seed else None,
    }  # fmt: skip


def write_runs(root: Path) -> dict[str, list[Path]]:
    """Run folders as a run writes them: config.yaml, summary.json with test metrics, two epochs in metrics.jsonl."""
    folders: dict[str, list[Path]] = {}
    for name, values in TEST_ACC.items():
        for seed, value in enumerate(values):
            folder = root / f"{name}{seed}"
            folder.mkdir(parents=True)
            (folder / "config.yaml").write_text(yaml.safe_dump(config(DROPOUT[name], seed, folder)))
            summary = {"model": "MLP", "data": "Digits", "status": "finished", "train_seconds": 2.0, "test": {"test/acc": value}}
            (folder / "summary.json").write_text(json.dumps(summary))
            epochs = [{"epoch": 0, "val/acc": value - 0.1, "val/loss": 1.0}, {"epoch": 1, "val/acc": value - 0.05, "val/loss": 0.5 + seed}]
            (folder / "metrics.jsonl").write_text("".join(json.dumps(e) + "\n" for e in epochs))
            folders.setdefault(name, []).append(folder)
    return folders


def mean_std_ci(values: list[float]) -> tuple[float, float, list[float]]:
    x = np.array(values)
    n, mean, std = len(x), x.mean(), np.sqrt(((x - x.mean()) ** 2).sum() / (len(x) - 1))
    half = stats.t.ppf(0.975, n - 1) * std / np.sqrt(n)
    return mean, std, [mean - half, mean + half]


def welch(a: list[float], b: list[float]) -> tuple[float, list[float], float]:
    """Difference of the means of ``a`` and ``b``, its 95% CI and the two-sided p, Welch-Satterthwaite written out."""
    va, vb = np.var(a, ddof=1) / len(a), np.var(b, ddof=1) / len(b)
    dof = (va + vb) ** 2 / (va**2 / (len(a) - 1) + vb**2 / (len(b) - 1))
    diff, se = np.mean(a) - np.mean(b), np.sqrt(va + vb)
    half = stats.t.ppf(0.975, dof) * se
    return diff, [diff - half, diff + half], 2 * stats.t.sf(abs(diff / se), dof)


def test_config_id_ignores_the_seed_and_the_runs_identity(tmp_path):
    first, second = config(0.1, 0, tmp_path / "a"), config(0.1, 3, tmp_path / "b")
    assert compare.config_id(first) == compare.config_id(second) == compare.config_id(compare.flatten(first))
    assert compare.config_id(config(0.2, 0, tmp_path / "a")) != compare.config_id(first)
    # Stable across versions and machines: W&B groups runs of different days by it.
    assert compare.config_id({"model": {"init_args": {"dropout": 0.1}}}) == "ba7f93fb"  # sha256 of {"model.dropout":0.1}


def test_groups_get_mean_std_and_confidence_interval_of_the_mean(tmp_path, capsys):
    folders = write_runs(tmp_path)
    groups = {group["runs"][0][:-1]: group for group in json.loads(compare.main([str(tmp_path), "--json"]))}
    assert sorted(groups) == ["alone", "base", "wide"]
    for name, values in TEST_ACC.items():
        group = groups[name]
        assert group["runs"] == [folder.name for folder in folders[name]] and group["n"] == len(values)
        assert group["config"] == {"model.dropout": DROPOUT[name]}  # the seeds and folders do not tell groups apart
        assert group["label"] == group["config_id"] == compare.config_id(compare.flatten(config(DROPOUT[name], 0, tmp_path)))
        found = group["metrics"]["test/acc"]
        if len(values) == 1:
            assert (found["mean"], found["std"], found["ci95"]) == (values[0], None, None)
            continue
        mean, std, ci95 = mean_std_ci(values)
        assert found["mean"] == pytest.approx(mean) and found["std"] == pytest.approx(std) and found["ci95"] == pytest.approx(ci95)
        val_loss = group["metrics"]["val/loss best"]  # 0.5 + seed at the last epoch, 1.0 before: the lower
        assert val_loss["mean"] == pytest.approx(np.mean([min(1.0, 0.5 + seed) for seed in range(len(values))]))
    table = compare.main([str(tmp_path)])
    header, _, *rows = [[cell.strip() for cell in line.strip("|").split("|")] for line in table.splitlines()]
    assert header[:6] == ["group", "model", "data", "model.dropout", "n", "val/acc final"]
    row = dict(zip(header, next(row for row in rows if row[3] == "0.2")))
    mean, std, (low, high) = mean_std_ci(TEST_ACC["wide"])
    assert row["n"] == "3" and row["test/acc"] == f"{mean:.4f} ± {std:.4f} [{low:.4f}, {high:.4f}]"
    assert dict(zip(header, next(row for row in rows if row[3] == "0.5")))["test/acc"] == "0.7000 (n=1)"


def test_baseline_gives_welch_difference_interval_and_p_value(tmp_path):
    folders = write_runs(tmp_path)
    base_id = json.loads(compare.main([str(folders["base"][0]), "--json"]))[0]["config_id"]
    # The baseline by its label (here its config_id) or by the name of any of its runs: the same answer.
    by_run = compare.main([str(tmp_path), "--json", "--baseline", folders["base"][2].name])
    assert compare.main([str(tmp_path), "--json", "--baseline", base_id]) == by_run
    groups = {group["runs"][0][:-1]: group for group in json.loads(by_run)}
    assert "diff" not in groups["base"]["metrics"]["test/acc"]
    diff, ci95, p_value = welch(TEST_ACC["wide"], TEST_ACC["base"])
    found = groups["wide"]["metrics"]["test/acc"]
    assert found["diff"] == pytest.approx(diff) and found["diff_ci95"] == pytest.approx(ci95)
    assert found["p_value"] == pytest.approx(p_value) and 0.01 < p_value < 0.1
    alone = groups["alone"]["metrics"]["test/acc"]  # one run: a difference, but neither interval nor test
    assert alone["diff"] == pytest.approx(0.70 - np.mean(TEST_ACC["base"])) and alone["diff_ci95"] is alone["p_value"] is None
    text = compare.main([str(tmp_path), "--baseline", base_id])
    assert f"Difference from baseline {base_id} (n=4)" in text
    assert f"{diff:+.4f} [{ci95[0]:+.4f}, {ci95[1]:+.4f}] p={p_value:.3g}" in text and "n < 2 on a side" in text
    with pytest.raises(SystemExit, match="--baseline nothing: no group"):
        compare.main([str(tmp_path), "--baseline", "nothing"])


def test_group_by_a_key_puts_different_configs_together(tmp_path):
    write_runs(tmp_path)
    for folder in (tmp_path / "alone0", tmp_path / "wide0"):  # now the same dropout as base, other dropout values
        written = yaml.safe_load((folder / "config.yaml").read_text())
        written["model"]["init_args"]["dropout"] = 0.0
        written["model"]["init_args"]["hidden_sizes"] = [16]
        (folder / "config.yaml").write_text(yaml.safe_dump(written))
    groups = json.loads(compare.main([str(tmp_path), "--json", "--group-by", "model.dropout"]))
    found = [(g["label"], g["n"], g["config_id"]) for g in groups]
    assert found == [("model.dropout=0.0", 6, None), ("model.dropout=0.2", 2, groups[1]["config_id"])]  # one config: its id
    values = TEST_ACC["alone"] + TEST_ACC["base"] + TEST_ACC["wide"][:1]
    assert groups[0]["metrics"]["test/acc"]["mean"] == pytest.approx(np.mean(values))
    two = json.loads(compare.main([str(tmp_path), "--json", "--group-by", "model.dropout", "--group-by", "model.hidden_sizes"]))
    assert [g["label"] for g in two] == [
        "model.dropout=0.0, model.hidden_sizes=[16]", "model.dropout=0.0, model.hidden_sizes=[8]", "model.dropout=0.2, model.hidden_sizes=[8]"
    ]  # fmt: skip


def test_plot_draws_each_groups_mean_curve_and_std_band(tmp_path, monkeypatch):
    from matplotlib.axes import Axes

    write_runs(tmp_path)
    bands, fill = [], Axes.fill_between
    def recorded(self, x, low, high, **style):
        bands.append((list(x), low, high))
        return fill(self, x, low, high, **style)

    monkeypatch.setattr(Axes, "fill_between", recorded)
    compare.main([str(tmp_path), "--plot", str(tmp_path / "curves.png"), "--metrics", "val/acc"])
    assert (tmp_path / "curves.png").read_bytes().startswith(b"\x89PNG") and len(bands) == 3  # one band per group
    epochs, low, high = bands[1]  # the groups in order of their first run: alone, base, wide
    last = np.array(TEST_ACC["base"]) - 0.05
    assert epochs == [1, 2]
    assert low[1] == pytest.approx(last.mean() - last.std(ddof=1)) and high[1] == pytest.approx(last.mean() + last.std(ddof=1))


@pytest.mark.slow
def test_three_seeds_of_two_configs_compared_with_a_baseline(tmp_path):
    fast = ["--config", str(ROOT / "configs/digits_mlp.yaml"), "--trainer.max_epochs", "1", "--trainer.logger", "false",
            "--trainer.enable_progress_bar", "false", "--trainer.enable_model_summary", "false", "--pictures", "false"]  # fmt: skip
    for seed in range(3):
        main(["fit", *fast, "--seed_everything", str(seed), "--trainer.default_root_dir", str(tmp_path / "base")])
        narrow = ["--trainer.default_root_dir", str(tmp_path / "narrow"), "--model.init_args.hidden_sizes", "[32]"]
        main(["fit", *fast, "--seed_everything", str(seed), *narrow])
    base = next((tmp_path / "base").rglob("summary.json")).parent.name
    groups = json.loads(compare.main([str(tmp_path), "--json", "--baseline", base]))
    assert sorted((g["config"]["model.hidden_sizes"], g["n"]) for g in groups) == [("[128, 64]", 3), ("[32]", 3)]
    values = {}
    for group in groups:
        folders = [next(tmp_path.rglob(name)) for name in group["runs"]]
        values[group["config"]["model.hidden_sizes"]] = [json.loads((f / "summary.json").read_text())["test"]["test/acc"] for f in folders]
    narrow = next(g for g in groups if g["config"]["model.hidden_sizes"] == "[32]")["metrics"]["test/acc"]
    diff, ci95, p_value = welch(values["[32]"], values["[128, 64]"])
    assert narrow["mean"] == pytest.approx(np.mean(values["[32]"])) and narrow["diff"] == pytest.approx(diff)
    assert narrow["diff_ci95"] == pytest.approx(ci95) and narrow["p_value"] == pytest.approx(p_value)
