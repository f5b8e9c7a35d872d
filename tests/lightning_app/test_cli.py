"""The CLI end to end, as a user runs it: fit, test from a checkpoint, W&B offline, DDP, bf16."""

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

from lightning_app.checkpoints import AtomicCheckpointIO
from lightning_app.cli import main, trainer_defaults
from lightning_app.record.logger import wandb_offline

ROOT = Path(__file__).parents[2]
MLP_CONFIG = str(ROOT / "configs" / "mnist_mlp.yaml")
WANDB = str(Path(sys.executable).parent / "wandb")


def quick(mnist_dir, *extra):
    """The MNIST MLP config on the tiny fake files, two short epochs."""
    return ["--config", MLP_CONFIG, "--data.data_dir", str(mnist_dir), "--data.batch_size", "32",
            "--trainer.max_epochs", "2", "--trainer.enable_progress_bar", "false", *extra]


def wandb_run(run_dir: Path) -> dict:
    """An offline W&B run read back through wandb's own reader of the .wandb file."""
    out = subprocess.run([WANDB, "leet", "inspect", "--summary", "--json", str(run_dir)],
                         capture_output=True, text=True, check=True)
    return json.loads(out.stdout)


def test_fit_then_test_from_checkpoint(mnist_dir, in_tmp):
    cli = main(["fit", *quick(mnist_dir, "--trainer.logger", "false")])
    fit_acc = cli.trainer.callback_metrics["test/acc"].item()
    assert fit_acc > 0.8  # the fake digits are learnable; chance is 0.1
    best = Path(cli.trainer.checkpoint_callback.best_model_path)
    assert best.is_file() and (best.parent / "last.ckpt").is_file()
    tested = main(["test", *quick(mnist_dir, "--trainer.logger", "false"), "--ckpt_path", str(best)])
    assert tested.trainer.callback_metrics["test/acc"].item() == pytest.approx(fit_acc)
    predicted = main(["predict", *quick(mnist_dir, "--trainer.logger", "false"), "--ckpt_path", str(best)])
    predictions = torch.cat(predicted.trainer.predict_loop.predictions)
    labels = predicted.datamodule.splits["test"][1]
    assert predictions.shape == labels.shape
    assert (predictions == labels).float().mean().item() == pytest.approx(fit_acc)


@pytest.mark.slow
def test_wandb_offline_run_holds_config_and_final_metrics(mnist_dir, in_tmp):
    cli = main(["fit", *quick(mnist_dir)])
    main(["fit", *quick(mnist_dir)])  # a second run under the same root must not clash
    runs = sorted((in_tmp / "runs" / "wandb").glob("offline-run-*"))
    assert len(runs) == 2
    assert all((r / f"run-{r.name.rsplit('-', 1)[1]}.wandb").is_file() for r in runs)
    run = wandb_run(runs[0])
    assert run["config"]["model"]["class_path"] == "modules.MLP"
    assert run["config"]["data"]["init_args"]["data_dir"] == str(mnist_dir)
    assert run["config"]["optimizer"]["class_path"] == "torch.optim.Adam"
    assert run["summary"]["test/acc"] == pytest.approx(cli.trainer.callback_metrics["test/acc"].item())
    assert run["name"] == "mnist_mlp-fit" and set(run["tags"]) >= {"MLP", "MNIST"}
    saved = yaml.safe_load((runs[0] / "files" / "lightning_config.yaml").read_text())
    assert saved["model"]["init_args"]["hidden_sizes"] == [128, 64]
    assert (in_tmp / "runs" / "lightning_app" / run["run_id"] / "config.yaml").is_file()


def test_print_config_reproduces_the_run(mnist_dir, in_tmp, capsys):
    with pytest.raises(SystemExit):
        main(["fit", *quick(mnist_dir, "--model.hidden_sizes", "[256,128]"), "--print_config"])
    printed = capsys.readouterr().out
    (in_tmp / "printed.yaml").write_text(printed)
    again = main(["fit", "--config", str(in_tmp / "printed.yaml"), "--trainer.logger", "false"])
    assert [m.out_features for m in again.model.net if hasattr(m, "out_features")] == [256, 128, 10]
    assert again.datamodule.data_dir == mnist_dir
    assert again.trainer.current_epoch == 2 and again.trainer.callback_metrics["test/acc"] > 0.8


def test_a_prebuilt_parser_is_taken_once_by_a_run_of_the_same_inputs_and_parses_as_a_fresh_one(mnist_dir, capsys,
                                                                                              monkeypatch):  # fmt: skip
    from lightning_app import cli

    monkeypatch.setattr(cli, "_PREBUILT", {})
    def printed(args: list[str]) -> str:
        with pytest.raises(SystemExit):
            main([*args, "--print_config"])
        return capsys.readouterr().out

    args = ["fit", *quick(mnist_dir, "--model.hidden_sizes", "[7]")]
    fresh = printed(args)
    cli.prebuild_parser(args)  # as a sweep's fork server does, once
    assert len(cli._PREBUILT) == 1
    assert printed(args) == fresh and not cli._PREBUILT  # taken: this run built no parser of its own
    cli.prebuild_parser(args)
    without_logger = [*args, "--trainer.logger", "false"]  # other trainer defaults: another parser
    assert "WandbLogger" not in printed(without_logger) and len(cli._PREBUILT) == 1


def test_config_typo_names_the_key(mnist_dir, in_tmp, capsys):
    with pytest.raises(SystemExit):
        main(["fit", *quick(mnist_dir, "--model.init_args.hiden_sizes", "[3]")])
    assert "hiden_sizes" in capsys.readouterr().err


@pytest.mark.slow
def test_schedule_gets_a_learning_rate_monitor(mnist_dir, in_tmp):
    args = quick(mnist_dir)
    args[1] = str(ROOT / "configs" / "mnist_linear.yaml")
    cli = main(["fit", *args])
    run = wandb_run(next((in_tmp / "runs" / "wandb").glob("offline-run-*")))
    assert run["summary"]["lr-SGD"] == pytest.approx(0.1)  # StepLR has not stepped in 2 epochs
    assert cli.trainer.lr_scheduler_configs[0].interval == "epoch"


def test_bf16_mixed_on_cpu(mnist_dir, in_tmp):
    cli = main(["fit", *quick(mnist_dir, "--trainer.logger", "false", "--trainer.precision", "bf16-mixed")])
    assert cli.trainer.precision == "bf16-mixed"
    assert cli.trainer.callback_metrics["test/acc"].item() > 0.8


@pytest.mark.slow
def test_ddp_two_cpu_processes(mnist_dir, in_tmp):
    # WANDB_SERVICE, left by this process's earlier runs, would make the child log through our service.
    env = {k: v for k, v in os.environ.items() if k != "WANDB_SERVICE"}
    env.update(PYTHONPATH=str(ROOT), WANDB_MODE="offline")
    command = [sys.executable, "-m", "lightning_app", "fit", *quick(mnist_dir),
               "--trainer.strategy", "ddp", "--trainer.devices", "2", "--trainer.accelerator", "cpu"]
    subprocess.run(command, env=env, check=True, capture_output=True, timeout=240)
    runs = list((in_tmp / "runs" / "wandb").glob("offline-run-*"))
    assert len(runs) == 1  # only rank 0 logs
    assert all((r / f"run-{r.name.rsplit('-', 1)[1]}.wandb").is_file() for r in runs)
    run = wandb_run(runs[0])
    best = next((in_tmp / "runs" / "lightning_app" / run["run_id"] / "checkpoints").glob("epoch*.ckpt"))
    # The synchronised test accuracy of two ranks equals one process's accuracy on the whole split.
    single = main(["test", *quick(mnist_dir, "--trainer.logger", "false"), "--ckpt_path", str(best)])
    assert run["summary"]["test/acc"] == pytest.approx(single.trainer.callback_metrics["test/acc"].item())


@pytest.mark.parametrize("model", ["modules.Transformer", "modules.RNN"])
def test_a_language_model_on_images_names_both_classes(model, in_tmp):
    with pytest.raises(ValueError, match=rf"{model.split('.')[1]} needs `vocab`, which Digits does not provide"):
        main(["fit", "--model", model, "--data", "datamodules.Digits", "--trainer.logger", "false"])


@pytest.mark.slow
def test_wandb_with_a_key_and_no_network_goes_offline_at_once(mnist_dir, in_tmp, monkeypatch):
    with socket.socket() as closed:  # bound, never listening: connections to it are refused
        closed.bind(("127.0.0.1", 0))
        monkeypatch.setenv("WANDB_BASE_URL", f"http://127.0.0.1:{closed.getsockname()[1]}")
        monkeypatch.setenv("WANDB_API_KEY", "0" * 40)  # a fake key, never sent anywhere
        monkeypatch.delenv("WANDB_MODE")
        with pytest.warns(UserWarning, match=r"127\.0\.0\.1:\d+ is not reachable .*WANDB_MODE=offline"):
            assert wandb_offline()
        with pytest.warns(UserWarning, match="is not reachable"):
            main(["fit", *quick(mnist_dir, "--trainer.max_epochs", "1", "--test_after_fit", "false")])
    (run,) = (in_tmp / "runs" / "wandb").glob("offline-run-*")
    assert wandb_run(run)["config"]["model"]["class_path"] == "modules.MLP"


def digits(*extra: str) -> list[str]:
    return ["--config", str(ROOT / "configs/digits_mlp.yaml"), "--trainer.logger", "false",
            "--trainer.enable_progress_bar", "false", *extra]  # fmt: skip


@pytest.fixture(scope="module")
def digits_checkpoint(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("digits")
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(folder)
        main(["fit", *digits("--trainer.max_epochs", "1", "--trainer.limit_train_batches", "2", "--test_after_fit", "false")])
    (last,) = folder.glob("runs/lightning_app/*/checkpoints/last.ckpt")
    return last


def relabelled(checkpoint: Path, folder: Path, class_path: str) -> Path:
    """A copy of ``checkpoint`` (with a valid record) that names ``class_path`` as its model class."""
    state = torch.load(checkpoint, weights_only=True)
    state["hyper_parameters"]["_class_path"] = class_path
    AtomicCheckpointIO().save_checkpoint(state, folder / "relabelled.ckpt")
    return folder / "relabelled.ckpt"


def test_a_folder_as_ckpt_path_is_named(in_tmp):
    with pytest.raises(ValueError, match=f"{in_tmp} is a folder, not a regular file"):
        main(["test", *digits("--ckpt_path", str(in_tmp))])


def test_a_file_url_of_a_local_checkpoint_loads_like_its_path(digits_checkpoint, in_tmp):
    by_url = main(["test", *digits("--ckpt_path", digits_checkpoint.as_uri())])
    by_path = main(["test", *digits("--ckpt_path", str(digits_checkpoint))])
    assert by_url.trainer.callback_metrics["test/acc"] == by_path.trainer.callback_metrics["test/acc"]


def test_an_empty_trusted_package_is_refused(digits_checkpoint, in_tmp):
    evil = relabelled(digits_checkpoint, in_tmp, "evil.Model")
    with pytest.raises(ValueError, match=r"--trusted_packages \[''\] are not package names"):
        main(["test", *digits("--ckpt_path", str(evil), "--trusted_packages", "['']")])


@pytest.mark.parametrize("class_path, says", [("modules.classifier.L.LightningModule", "cannot be imported"),
                                              ("modules.classifier.MaxMetric", "is not a LightningModule class")])  # fmt: skip
def test_a_class_path_through_an_imported_name_is_named(class_path, says, digits_checkpoint, in_tmp):
    crafted = relabelled(digits_checkpoint, in_tmp, class_path)
    with pytest.raises(ValueError, match=rf"names (the model class )?'{class_path}', which {says}"):
        main(["test", *digits("--ckpt_path", str(crafted))])


def test_an_optimizer_for_knn_names_both_and_the_fix(in_tmp):
    with pytest.raises(ValueError, match=r"modules.KNN trains no parameters, so it takes no optimizer, but "
                                         r"torch.optim.Adam is given: drop --optimizer .*configs/mnist_knn.yaml"):  # fmt: skip
        main(["fit", *digits("--model", "modules.KNN")])


def test_a_wrong_value_inside_a_class_is_said_last(in_tmp, capsys):
    with pytest.raises(SystemExit):
        main(["fit", *digits("--model.hidden_sizes", "abc")])
    last = capsys.readouterr().err.strip().splitlines()[-1]
    assert last == "In short: model.hidden_sizes: Expected a <class 'collections.abc.Sequence'>. Got value: abc"


@pytest.mark.parametrize("form", [["--config", "{}"], ["--config={}"], ["-c", "{}"]])
def test_a_config_that_is_a_fifo_is_refused_at_once_naming_it(tmp_path, form):
    fifo = tmp_path / "config.yaml"
    os.mkfifo(fifo)
    with pytest.raises(ValueError, match=f"{fifo} is a FIFO, not a regular file"):
        main(["fit", *(part.format(fifo) for part in form)])



@pytest.mark.parametrize("form", [["--model", "{}"], ["--model={}"], ["--data", "{}"]])
def test_a_fifo_or_a_device_given_to_a_class_argument_is_refused_at_once_naming_it(in_tmp, form):
    # jsonargparse reads a file that a class's argument names as that class's config: it would wait on a FIFO for ever
    fifo = in_tmp / "model.yaml"
    os.mkfifo(fifo)
    option = form[0].split("=")[0]
    with pytest.raises(ValueError, match=f"{fifo}, given to {option}, is a FIFO: the parser would read it as a config"):
        main(["fit", *digits(*(part.format(fifo) for part in form))])
    with pytest.raises(ValueError, match="/dev/zero, given to --data, is a device or socket"):
        main(["fit", *digits("--data=/dev/zero")])
    with pytest.raises(SystemExit) as parsed:  # a folder is an ordinary value
        main(["fit", *digits("--trainer.default_root_dir", str(in_tmp), "--print_config")])
    assert parsed.value.code in (0, None)

def test_a_run_builds_the_parser_of_its_own_subcommand_and_a_typo_still_lists_them_all(in_tmp, capsys):
    from lightning_app.cli import AppCLI

    built = []
    original = AppCLI._prepare_subcommand_parser

    def prepare(self, klass, subcommand, **kwargs):
        built.append(subcommand)
        return original(self, klass, subcommand, **kwargs)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(AppCLI, "_prepare_subcommand_parser", prepare)
        with pytest.raises(SystemExit):
            main([str(Path(__file__).parents[2] / "configs/digits_mlp.yaml")])  # no subcommand: all four parsers
        assert built == ["fit", "validate", "test", "predict"]
        built.clear()
        with pytest.raises(SystemExit):
            main(["validate", "--config", str(Path(__file__).parents[2] / "configs/digits_mlp.yaml"), "--print_config"])
        assert built == ["validate"]
    with pytest.raises(SystemExit):
        main(["fitt", "--config", "x.yaml"])
    assert "invalid choice: 'fitt' (choose from 'fit', 'validate', 'test', 'predict')" in capsys.readouterr().err


@pytest.mark.parametrize(
    "args, kept",
    [
        (["fit", "--trainer.logger", "false"], False),
        (["fit", "--trainer.logger=null"], False),
        (["fit", "--trainer.logger", "False", "--config", "x.yaml"], False),
        (["fit", "--trainer.logger", "false", "--trainer.logger", "WandbLogger"], True),  # the last one counts
        (["fit", "--trainer.logger.init_args.project", "x"], True),
        (["fit", "--trainer.logger"], True),
        (["fit"], True),
    ],
)
def test_the_wandb_default_is_left_out_only_where_no_logger_is_asked_for(args, kept):
    assert ("logger" in trainer_defaults(args)) == kept
    assert trainer_defaults(args)["default_root_dir"] == "runs"


@pytest.mark.slow  # a fresh process: this one imported wandb long ago
def test_a_run_without_a_logger_never_imports_wandb(in_tmp):
    code = (
        "import sys; from lightning_app.cli import AppCLI; "
        "cli = AppCLI(args=sys.argv[1:], run=False); print(cli.trainer.logger, 'wandb' in sys.modules)"
    )
    args = ["--config", str(ROOT / "configs" / "digits_mlp.yaml"), "--trainer.logger", "false"]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}  # run from the temporary folder: the run's folder goes there
    out = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, check=True, env=env)
    assert out.stdout.split()[-2:] == ["None", "False"], out.stdout + out.stderr
