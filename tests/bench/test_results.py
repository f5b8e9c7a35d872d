"""bench/results.py: one entry per file in configs/, rows from the runs it makes, reasons for the rest, pages replaced."""

import importlib.util
import json
import shutil
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[2]
spec = importlib.util.spec_from_file_location("bench_results", ROOT / "bench" / "results.py")
results = importlib.util.module_from_spec(spec)
spec.loader.exec_module(results)
pytestmark = pytest.mark.usefixtures("one_thread")  # tiny runs: a second thread only waits
README = "# Title\nintro\n{start}\n{table}\n{end}\n## Next\ntext\n"


def configs(folder: Path, *names: str) -> Path:
    folder.mkdir()
    for name in names:
        shutil.copy(ROOT / "configs" / f"{name}.yaml", folder)
    return folder


def test_every_config_in_the_folder_gets_a_row_or_a_reason(tmp_path):
    folder = configs(tmp_path / "configs", "digits_knn", "cifar10_knn", "shakespeare_gpt_gpu")
    (folder / "my_new_knn.yaml").write_text((folder / "cifar10_knn.yaml").read_text().replace("k: 5", "k: 1"))
    readme = tmp_path / "README.md"
    readme.write_text(README.format(start=results.START, table="old", end=results.END))
    shared = tmp_path / "shared"  # holds nothing: the Text config is not run for want of data
    args = ["--configs", str(folder), "--shared", str(shared), "--workdir", str(tmp_path / "work"), "--seeds", "2"]
    args += ["--output", str(tmp_path / "docs" / "results.md"), "--readme", str(readme)]
    for _ in range(2):  # a rerun replaces the page, the README's block and the runs
        rows = results.cli(args)
        page = (tmp_path / "docs" / "results.md").read_text()
        assert [row["config"] for row in rows] == ["cifar10_knn", "digits_knn", "my_new_knn", "shakespeare_gpt_gpu"]
        runs = (tmp_path / "work" / "runs" / "digits_knn").rglob("summary.json")
        first, second = [json.loads(p.read_text())["test"]["test/acc"] for p in sorted(runs)]
        mean, std = (first + second) / 2, abs(first - second) / 2**0.5  # the sample std of two
        accuracy = f"{100 * mean:.2f} ± {100 * std:.2f}% (n=2)"
        assert f"| digits_knn | KNN x Digits | test accuracy | {accuracy} | - | 0 | 1 | 6 |" in page  # its own runs'
        assert "- `cifar10_knn`: no CIFAR10 data offline" in page and "- `my_new_knn`: no CIFAR10 data offline" in page
        assert "- `shakespeare_gpt_gpu`: its data is missing or wrong here: [Errno 2] No such file" in page
        assert "CPU capability" in page and f"`python bench/results.py {' '.join(args)}`" in page and " s in all." in page
        head, block = readme.read_text().split(results.START)
        assert head == "# Title\nintro\n" and block.endswith(f"{results.END}\n## Next\ntext\n")
        assert f"| digits_knn | KNN x Digits | test accuracy | {accuracy} | [results](docs/results.md) |" in block


def test_gpu_configs_wait_for_a_gpu_and_wrong_data_or_a_broken_config_is_a_note(tmp_path):
    gpu = tmp_path / "digits_knn_gpu.yaml"
    gpu.write_text((ROOT / "configs" / "digits_knn.yaml").read_text().replace("precision: 32-true", "precision: bf16-mixed"))
    assert results.plan(gpu, "cpu", tmp_path, tmp_path).startswith("written for a GPU (precision: bf16-mixed)")
    assert results.plan(gpu, "gpu", tmp_path, tmp_path) == []  # Digits needs no files
    (tmp_path / "tinyshakespeare").mkdir()
    (tmp_path / "tinyshakespeare" / "input.txt").write_text("not Tiny Shakespeare")
    note = results.plan(ROOT / "configs" / "shakespeare_gpt.yaml", "cpu", tmp_path, tmp_path)
    assert note.startswith("its data is missing or wrong here") and "not Tiny Shakespeare (its MD5 differs" in note
    broken = tmp_path / "broken.yaml"
    broken.write_text((ROOT / "configs" / "digits_knn.yaml").read_text().replace("k: 3", "k: 0"))
    note = results.run(broken, [], tmp_path, "cpu")["note"]
    assert note.startswith("failed (seed 0): ValueError") and "k=0: a vote needs at least one neighbour" in note


def test_readme_without_markers_is_left_alone(tmp_path):
    readme = tmp_path / "README.md"
    readme.write_text("no markers")
    assert not results.write_between_markers(readme, "x") and readme.read_text() == "no markers"
    assert not results.write_between_markers(tmp_path / "missing.md", "x")


def test_a_run_cut_short_is_read_back_and_the_table_shows_the_n_it_has(tmp_path):
    folder = configs(tmp_path / "configs", "digits_knn", "digits_mlp")
    work, page = tmp_path / "work", tmp_path / "results.md"
    common = ["--configs", str(folder), "--workdir", str(work), "--output", str(page), "--readme", str(tmp_path / "R.md")]
    (first,) = results.cli([*common, "--only", "digits_knn", "--seeds", "1"])
    (run,) = list((work / "runs" / "digits_knn" / "seed_0").iterdir())
    rows = results.cli([*common, "--seeds", "3", "--table_only"])
    written = (run / "summary.json").stat().st_mtime_ns
    assert rows[0]["value"] == first["value"] and list((work / "runs" / "digits_knn").iterdir()) == [run.parent]
    assert rows[1] == {"config": "digits_mlp", "note": f"no finished run in {work} (--table_only)"}
    assert "| digits_knn | KNN x Digits | test accuracy | 98.61 ± 0.00% (n=1) |" in page.read_text()
    assert "--table_only" in page.read_text() and "pauses between the commands" in page.read_text()
    rows = results.cli([*common, "--only", "digits_knn", "--seeds", "2", "--reuse"])  # trains seed 1 only
    assert rows[0]["value"].endswith("(n=2)") and sorted(p.name for p in (work / "runs" / "digits_knn").iterdir()) == ["seed_0", "seed_1"]
    assert (run / "summary.json").stat().st_mtime_ns == written  # seed 0 was read back, not trained again
