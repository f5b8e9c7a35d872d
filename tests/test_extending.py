"""docs/extending.md's example, followed step by step: its model and data module join the packages,
the shared checks pick them up, and its config trains one on the other through the CLI."""

import re
import sys
import types
from pathlib import Path

import lightning as L
import pytest

import datamodules
import modules
from lightning_app.cli import main
from tests import fakes
from tests.fakes import exported_models
from tests.modules.families import check_fast_dev_run_fit, check_learns, check_outputs

DOC = Path(__file__).parents[1] / "docs" / "extending.md"


def doc_files() -> dict[str, str]:
    """Each code block of the page under the `path` line that names its file: path -> code."""
    return dict(re.findall(r"^`([\w/.]+)`\n```\w+\n(.*?)^```", DOC.read_text(), flags=re.MULTILINE | re.DOTALL))


def add_module(monkeypatch, package: types.ModuleType, path: str, name: str) -> type:
    """Writes ``path`` into ``package`` as a module and exports its class ``name``: steps 1 and 2."""
    module = types.ModuleType(f"{package.__name__}.{Path(path).stem}")
    exec(compile(doc_files()[path], path, "exec"), module.__dict__)
    monkeypatch.setitem(sys.modules, module.__name__, module)
    monkeypatch.setattr(package, name, getattr(module, name), raising=False)
    monkeypatch.setattr(package, "__all__", [*package.__all__, name])
    return getattr(module, name)


@pytest.fixture
def example(monkeypatch):
    model = add_module(monkeypatch, modules, "modules/two_layer.py", "TwoLayerNet")
    data = add_module(monkeypatch, datamodules, "datamodules/mnist_npz.py", "MNISTNpz")
    namespace = dict(vars(fakes))  # the writer is written into tests/fakes.py, beside the others
    exec(doc_files()["tests/fakes.py"], namespace)
    monkeypatch.setattr(fakes, "fake_mnistnpz", namespace["fake_mnistnpz"], raising=False)
    return model, data


def test_the_page_shows_every_file_the_steps_name():
    assert set(doc_files()) == {
        "modules/two_layer.py", "datamodules/mnist_npz.py", "tests/fakes.py", "configs/mnist_npz_two_layer.yaml"
    }


def test_a_model_added_as_the_page_says_goes_through_the_shared_checks(example, tmp_path, in_tmp):
    model, _ = example
    assert model in exported_models()
    check_outputs(model, {})
    check_learns(model, {})
    check_fast_dev_run_fit(model, {}, tmp_path)


def test_a_model_of_no_known_family_fails_the_shared_checks_and_says_where_to_add_one():
    class Odd(L.LightningModule):  # neither a Classifier, a LanguageModel nor a KNN
        def forward(self, x):
            return x

    with pytest.raises(pytest.fail.Exception, match="Odd fits no family of tests/modules/families.py"):
        check_outputs(Odd, {})


def test_the_data_module_and_config_train_the_model_through_the_cli(example, tmp_path, in_tmp, monkeypatch):
    _, data = example
    fake = fakes.fake_datamodule(data, tmp_path / "data", monkeypatch)
    config = tmp_path / "mnist_npz_two_layer.yaml"
    config.write_text(doc_files()["configs/mnist_npz_two_layer.yaml"])
    cli = main(["fit", "--config", str(config), "--data.path", str(fake.path), "--trainer.max_epochs", "3",
                "--trainer.logger", "false", "--trainer.enable_progress_bar", "false"])
    assert type(cli.datamodule).__name__ == "MNISTNpz" and cli.model.hidden.in_features == 28 * 28
    assert cli.trainer.callback_metrics["test/acc"] > 0.5  # chance is 0.1: it learned the fake digits


def test_every_room_the_layout_table_names_exists():
    rooms = re.findall(r"^\| `(lightning_app/[\w/.]+)` \|", DOC.read_text(), flags=re.MULTILINE)
    assert len(rooms) >= 8
    root = DOC.parents[1]
    assert [room for room in rooms if not (root / room).exists()] == []
    modules = {f"lightning_app/{path.name}" for path in (root / "lightning_app").iterdir() if not path.name.startswith("__")}
    assert modules - {room.rstrip("/") for room in rooms} == set(), "lightning_app/ modules the table does not name"
