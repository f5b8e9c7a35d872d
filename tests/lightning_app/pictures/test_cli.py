"""Pictures through the CLI: the defaults that fit each model, the flags, W&B media read back, DDP, compare."""

import csv
import json
import os
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest

from lightning_app import compare
from lightning_app.cli import main
from lightning_app.pictures import (
    AttentionMaps,
    ClassifierPictures,
    ConvFilters,
    KNNNeighbours,
    Pictures,
    TextSamples,
    default_pictures,
)
from lightning_app.pictures.confusion import read_confusion
from lightning_app.pictures.defaults import KINDS
from modules import CNN, KNN, MLP, RNN, ViT, Transformer
from tests.fakes import write_text
from tests.lightning_app.pictures.png import assert_picture

ROOT = Path(__file__).parents[3]
WANDB = str(Path(sys.executable).parent / "wandb")
QUIET = ["--trainer.enable_progress_bar", "false", "--trainer.enable_model_summary", "false"]
CLASSIFIER_KEYS = {"test/confusion_matrix", "test/per_class_accuracy", "test/misclassified"}


def image_args(config: str, mnist_dir: Path) -> list[str]:
    return ["--config", str(ROOT / "configs" / f"{config}.yaml"), "--data.data_dir", str(mnist_dir),
            "--data.batch_size", "32", "--trainer.max_epochs", "1", *QUIET]  # fmt: skip


def gpt_args(folder: Path) -> list[str]:
    return ["--config", str(ROOT / "configs" / "shakespeare_gpt.yaml"), "--data.path", str(write_text(folder / "verse.txt")),
            "--data.block_size", "16", "--data.batch_size", "4", "--data.batches_per_epoch", "3", "--trainer.max_epochs", "2",
            "--model.num_layers", "1", "--model.d_model", "16", "--model.nhead", "2", *QUIET]  # fmt: skip


MODELS = {
    "mlp": (lambda: MLP(), {ClassifierPictures}),
    "cnn": (lambda: CNN(input_shape=(1, 8, 8), channels=[4]), {ClassifierPictures, ConvFilters}),
    "vit": (lambda: ViT(input_shape=(1, 8, 8), patch_size=4, num_layers=1, nhead=2, d_model=8), {ClassifierPictures, ConvFilters, AttentionMaps}),
    "knn": (lambda: KNN(), {ClassifierPictures, KNNNeighbours}),
    "gpt": (lambda: Transformer("ab", num_layers=1, nhead=1, d_model=8), {AttentionMaps, TextSamples}),
    "rnn": (lambda: RNN("ab", hidden_size=8), {TextSamples}),
}  # fmt: skip


@pytest.mark.parametrize("family", MODELS)
def test_defaults_are_the_pictures_that_fit_the_model(family):
    build, expected = MODELS[family]
    model = build()
    assert {type(c) for c in default_pictures(model, None, "fit", [], True)} == expected
    # `test` has no training: only what is drawn at test end; `validate` and `predict` draw nothing.
    assert {type(c) for c in default_pictures(model, None, "test", [], True)} == expected & {ClassifierPictures, KNNNeighbours}
    assert default_pictures(model, None, "validate", [], True) == []


def test_flags_and_configured_callbacks_choose_the_defaults():
    cnn = CNN(input_shape=(1, 8, 8), channels=[4])
    assert default_pictures(cnn, None, "fit", [], False) == []
    assert [type(c) for c in default_pictures(cnn, None, "fit", [], Pictures(filters=False))] == [ClassifierPictures]
    assert [type(c) for c in default_pictures(cnn, None, "fit", [ClassifierPictures(max_samples=7)], True)] == [ConvFilters]


def run_folder(root: Path) -> Path:
    """The one run folder under ``root`` (a run without a logger has its own, as one with W&B)."""
    (folder,) = {summary.parent for summary in root.rglob("summary.json")}
    return folder


def picture_callbacks(cli) -> list:
    return [c for c in cli.trainer.callbacks if isinstance(c, tuple(KINDS.values()))]


def test_pictures_flags_on_the_command_line(mnist_dir, in_tmp):
    short = ["--trainer.logger", "false", "--trainer.max_steps", "1", "--test_after_fit", "false"]
    one_off = main(["fit", *image_args("mnist_cnn", mnist_dir), *short, "--pictures.filters", "false"])
    assert [type(c) for c in picture_callbacks(one_off)] == [ClassifierPictures]
    assert picture_callbacks(main(["fit", *image_args("mnist_cnn", mnist_dir), *short, "--pictures", "false"])) == []


def test_a_configured_picture_callback_replaces_the_default(mnist_dir, in_tmp):
    extra = in_tmp / "pictures.yaml"
    extra.write_text("trainer:\n  callbacks:\n    - class_path: lightning_app.pictures.ClassifierPictures\n"
                     "      init_args:\n        max_samples: 7\n")  # fmt: skip
    cli = main(["fit", *image_args("mnist_mlp", mnist_dir), "--config", str(extra), "--trainer.logger", "false"])
    (callback,) = picture_callbacks(cli)
    assert callback.max_samples == 7
    _, counts = read_confusion(run_folder(in_tmp / "runs") / "pictures" / "test" / "confusion_matrix.csv")
    assert counts.sum() == 7


def wandb_summary(run: Path) -> dict:
    out = subprocess.run([WANDB, "leet", "inspect", "--summary", "--json", str(run)], capture_output=True, text=True, check=True)
    return json.loads(out.stdout)["summary"]


def wandb_history_keys(run: Path) -> set[str]:
    out = subprocess.run([WANDB, "leet", "inspect", "--json", str(run)], capture_output=True, text=True, check=True)
    records = [json.loads(line) for line in out.stdout.splitlines() if '"type":"history"' in line]
    return {key.split(".")[0] for record in records for key in record["history"]["item"]}


RUNS = {
    "mnist_cnn": CLASSIFIER_KEYS | {"filters/conv1", "filters/feature_maps"},
    "mnist_knn": CLASSIFIER_KEYS | {"knn/neighbours"},
    "shakespeare_gpt": {"attention/layer0", "samples/text"},
}


@pytest.mark.slow
@pytest.mark.parametrize("config", RUNS)
def test_wandb_offline_run_holds_the_pictures_under_their_keys(config, mnist_dir, in_tmp):
    args = gpt_args(in_tmp) if config == "shakespeare_gpt" else image_args(config, mnist_dir)
    with warnings.catch_warnings(record=True) as warned:
        warnings.simplefilter("always")
        main(["fit", *args])
    assert not [w for w in warned if str(w.message).startswith(tuple(c.__name__ for c in KINDS.values()))]
    (wandb_run,) = (in_tmp / "runs" / "wandb").glob("offline-run-*")
    folder = in_tmp / "runs" / "lightning_app" / wandb_run.name.rsplit("-", 1)[1]
    files = json.loads((folder / "summary.json").read_text())["files"]
    assert set(files) == RUNS[config]
    summary, history = wandb_summary(wandb_run), wandb_history_keys(wandb_run)
    for key, paths in files.items():
        assert key in history and all((folder / path).is_file() for path in paths)
        media = summary[key]
        if media["_type"] == "table-file":  # a table: W&B's copy holds the rows of the CSV
            table = json.loads((wandb_run / "files" / media["path"]).read_text())
            with open(folder / f"pictures/{key}.csv", newline="", encoding="utf-8") as file:
                header, *rows = csv.reader(file)
            assert table["columns"] == header and [[str(v) for v in row] for row in table["data"]] == rows
        else:  # an image: W&B's copy is the PNG in the run folder, byte for byte
            assert media["_type"] == "images/separated"
            logged = (wandb_run / "files" / media["filenames"][0]).read_bytes()
            assert logged == (folder / f"pictures/{key}.png").read_bytes()


@pytest.mark.slow
def test_ddp_two_processes_draw_once_on_rank_zero_what_one_process_draws(mnist_dir, in_tmp):
    env = {k: v for k, v in os.environ.items() if k != "WANDB_SERVICE"}
    env.update(PYTHONPATH=str(ROOT), WANDB_MODE="offline")
    args = [*image_args("mnist_cnn", mnist_dir), "--trainer.logger", "false"]
    ddp = ["--trainer.strategy", "ddp", "--trainer.devices", "2", "--trainer.accelerator", "cpu"]
    done = subprocess.run([sys.executable, "-m", "lightning_app", "fit", *args, *ddp], cwd=in_tmp, env=env,
                          capture_output=True, text=True, timeout=300)  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    two = run_folder(in_tmp / "runs") / "pictures"
    assert_picture(two / "filters" / "conv1.png", 300, 207)
    best = next((two.parent / "checkpoints").glob("epoch*.ckpt"))
    main(["test", *args, "--ckpt_path", str(best), "--trainer.default_root_dir", "one"])
    one = run_folder(in_tmp / "one") / "pictures"
    # All 100 test images, half on each rank: the summed counts are one process's.
    np.testing.assert_array_equal(read_confusion(two / "test/confusion_matrix.csv")[1], read_confusion(one / "test/confusion_matrix.csv")[1])
    mistakes = {}
    for name, folder in (("two", two), ("one", one)):
        with open(folder / "test" / "misclassified.csv", newline="") as file:
            # Rank r's j-th test image is image j * 2 + r (the loader deals images to the ranks in turn).
            processes = 2 if name == "two" else 1
            mistakes[name] = {int(r["sample"]) * processes + int(r["rank"]): r["predicted"] for r in csv.DictReader(file)}
    assert mistakes["two"] == mistakes["one"] and len(mistakes["one"]) > 0


def write_run(folder: Path, matrix: list[list[int]] | None, names: list[str] | None = None) -> None:
    folder.mkdir(parents=True)
    summary = {"model": "MLP", "data": "Digits", "test": {"test/acc": 0.5}}
    if matrix is not None:
        (folder / "pictures" / "test").mkdir(parents=True)
        names = names or [str(i) for i in range(len(matrix))]
        rows = [[name, *row] for name, row in zip(names, matrix)]
        with open(folder / "pictures" / "test" / "confusion_matrix.csv", "w", newline="") as file:
            csv.writer(file).writerows([["true \\ predicted", *names], *rows])
        summary["files"] = {"test/confusion_matrix": ["pictures/test/confusion_matrix.csv"]}
    (folder / "summary.json").write_text(json.dumps(summary))
    (folder / "metrics.jsonl").write_text(json.dumps({"epoch": 0, "step": 1, "val/acc": 0.5, "val/loss": 1.0}) + "\n")


def test_compare_plot_draws_the_runs_confusion_matrices_side_by_side(tmp_path, monkeypatch):
    from lightning_app.pictures import confusion

    drawn, draw = [], confusion.draw_side_by_side
    monkeypatch.setattr(confusion, "draw_side_by_side", lambda matrices: drawn.extend(matrices) or draw(matrices))
    write_run(tmp_path / "runs" / "a", [[3, 1], [0, 4]])
    write_run(tmp_path / "runs" / "b", [[2, 2], [1, 3]])
    write_run(tmp_path / "runs" / "c", None)  # no pictures: left out
    compare.main([str(tmp_path / "runs"), "--plot", str(tmp_path / "curves.png")])
    assert_picture(tmp_path / "curves_confusion.png", 624, 400)  # two panels of 2.5 inches, numbered: no colour bars
    panels = [(title.split()[0], names, counts.tolist()) for title, names, counts in drawn]
    assert panels == [("a", ["0", "1"], [[3, 1], [0, 4]]), ("b", ["0", "1"], [[2, 2], [1, 3]])]  # each run's own counts
    write_run(tmp_path / "alone", None)
    compare.main([str(tmp_path / "alone"), "--plot", str(tmp_path / "alone.png")])
    assert (tmp_path / "alone.png").is_file() and not (tmp_path / "alone_confusion.png").exists()


def test_compare_plot_draws_class_and_run_names_as_they_are(tmp_path):
    write_run(tmp_path / "runs" / "$\\bar$", [[3, 1], [0, 4]], names=["$\\foo$", "50$"])  # mathtext refuses each
    compare.main([str(tmp_path / "runs"), "--plot", str(tmp_path / "curves.png"), "--runs"])  # runs: labelled by folder
    assert_picture(tmp_path / "curves.png", 1200, 450)  # val/acc and val/loss, 5 x 3.75 inches each at 120 dpi
    assert_picture(tmp_path / "curves_confusion.png", 352, 422)  # one panel, with room for 6-character names
