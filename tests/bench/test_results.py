"""bench/results.py: rows come from the runs it makes, missing configs are noted, the README keeps its text."""

import importlib.util
import json
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[2]
spec = importlib.util.spec_from_file_location("bench_results", ROOT / "bench" / "results.py")
results = importlib.util.module_from_spec(spec)
spec.loader.exec_module(results)


def test_a_row_reports_its_own_run(tmp_path):
    row = results.run(results.Experiment("digits_mlp", "digits", epochs=1), tmp_path, full=False, accelerator="cpu")
    (summary_path,) = (tmp_path / "runs" / "digits_mlp").rglob("summary.json")
    summary = json.loads(summary_path.read_text())
    assert row["model x data"] == "MLP x Digits" and row["epochs"] == "1" and row["parameters"] == "17,226"
    assert row["metric"] == "test accuracy" and row["value"] == f"{100 * summary['test']['test/acc']:.2f}%"
    table = results.markdown([row, {"config": "cifar10_cnn", "note": "no cifar10 data offline"}], "cmd", "cpu")
    assert "| MLP x Digits | digits_mlp | test accuracy |" in table
    assert "- `cifar10_cnn`: no cifar10 data offline" in table and "Digits: scikit-learn" in table


def test_missing_config_and_data_are_skipped_with_a_note(tmp_path):
    missing = results.run(results.Experiment("no_such_config", "digits"), tmp_path, False, "cpu")
    assert missing == {"config": "no_such_config", "note": "config not on this branch"}
    no_data = results.run(results.Experiment("digits_mlp", "cifar10"), tmp_path, False, "cpu")
    assert no_data["note"] == "no cifar10 data offline"


def test_readme_is_rewritten_only_between_the_markers(tmp_path):
    readme = tmp_path / "README.md"
    readme.write_text(f"# Title\nintro\n{results.START}\nold table\n{results.END}\n## Next\ntext\n")
    for _ in range(2):  # idempotent
        results.write_between_markers(readme, "| new | table |")
        assert readme.read_text() == f"# Title\nintro\n{results.START}\n| new | table |\n{results.END}\n## Next\ntext\n"
    readme.write_text("no markers")
    with pytest.raises(SystemExit, match="no `<!-- results:start -->`"):
        results.write_between_markers(readme, "x")
