"""What every trial shares, checked before the first trial starts; and a sweep where no trial finished."""

import os
from pathlib import Path

import optuna
import pytest
import yaml

from lightning_app.sweep import driver as sweep_cli
from lightning_app.sweep.checks import CheckFailed, check_command
from lightning_app.sweep.file import SweepFile

from tests.lightning_app.sweep.standin import trials

CONFIG = Path(__file__).parents[3] / "configs/digits_mlp.yaml"
pytestmark = pytest.mark.filterwarnings("ignore::optuna.exceptions.ExperimentalWarning")


def fit_sweep(folder: Path, parameters: dict) -> str:
    """A sweep file whose trials run `python -m lightning_app fit` on the digits config."""
    spec = {
        "method": "grid",
        "metric": {"name": "val/acc_best", "goal": "maximize"},
        "parameters": parameters,
        "command": ["${env}", "${interpreter}", "-m", "lightning_app", "fit", "--config", str(CONFIG), "${args}"],
    }
    (folder / "fit.yaml").write_text(yaml.safe_dump(spec))
    return str(folder / "fit.yaml")


def test_a_study_in_a_folder_that_cannot_be_written_is_refused_naming_the_folder(write_sweep):
    with pytest.raises(SystemExit, match=r"the folder /sys is not writable \(.+\); SQLite writes"):
        sweep_cli.main([write_sweep(), "--storage", "sqlite:////sys/study.db"])
    with pytest.raises(SystemExit, match="the folder /nowhere/at/all does not exist"):
        sweep_cli.main([write_sweep(), "--storage", "sqlite:////nowhere/at/all/study.db"])


def test_overrides_that_set_the_trials_wandb_names_are_refused(write_sweep):
    with pytest.raises(SystemExit, match=r"after -- set \['trainer.logger.init_args.group'\], which the sweep sets"):
        sweep_cli.main([write_sweep(), "--", "--trainer.logger.init_args.group", "mine"])


@pytest.mark.parametrize("launcher", [pytest.param("fork", marks=pytest.mark.slow), "subprocess"])
def test_a_misspelt_parameter_key_is_refused_before_any_trial(in_tmp, launcher):
    # fork: parsed in a fork of the trials' preloaded process; subprocess: in the sweep's own
    path = fit_sweep(in_tmp, {"model.init_args.hiden_sizes": {"values": [[16], [32]]}})
    with pytest.raises(SystemExit, match=r"(?s)does not parse.*Option 'hiden_sizes' is not accepted.*Fix the"):
        sweep_cli.main([path, "--launcher", launcher])
    assert not (in_tmp / "runs/sweeps/fit/logs").exists() and not (in_tmp / "runs/sweeps/fit/study.db").exists()



@pytest.mark.parametrize("kind", ["fifo", "folder"])
def test_a_config_that_is_not_a_regular_file_is_refused_before_the_parser_waits_on_it(in_tmp, kind):
    path = fit_sweep(in_tmp, {"model.init_args.dropout": {"values": [0.0]}})
    spec = yaml.safe_load(Path(path).read_text())
    config = in_tmp / "config.yaml"
    if kind == "fifo":
        os.mkfifo(config)
    else:
        config.mkdir()
    spec["command"][spec["command"].index(str(CONFIG))] = "config.yaml"  # relative: to where the trials run
    Path(path).write_text(yaml.safe_dump(spec))
    what = "a FIFO" if kind == "fifo" else "a folder"
    with pytest.raises(CheckFailed, match=rf"names a config that cannot be read: config.yaml is {what}, not a regular"):
        check_command(SweepFile.read(Path(path)), [], parse=lambda arguments: pytest.fail("the parser was reached"))
    with pytest.raises(SystemExit, match=rf"config.yaml is {what}"):  # the sweep: before its fork server starts
        sweep_cli.main([path, "--launcher", "fork"])
    assert not (in_tmp / "runs/sweeps/fit/study.db").exists()

def test_the_fork_server_warms_up_with_the_first_command_line_the_check_parses(in_tmp, monkeypatch):
    path = fit_sweep(in_tmp, {"optimizer.init_args.lr": {"values": [1.0e-3, 1.0e-2]}})
    parsed = []

    def parse(arguments: list[str], sweep_arguments: list[str]) -> tuple[int, str]:
        parsed.append((arguments, sweep_arguments))
        return 2, "error: stop here"

    monkeypatch.setattr(sweep_cli, "parse_in_fork", parse)
    for argv in ([path, "--", "--trainer.max_epochs=2"], [path, "--seeds", "4,5", "--name", "mine"]):
        parsed.clear()
        with pytest.raises(SystemExit, match="stop here"):
            sweep_cli.main(argv)
        first = min(parsed, key=lambda call: "lr=0.001" not in " ".join(call[0]))  # the two parse at once
        assert first == (sweep_cli.first_check_arguments(argv), argv)  # what the server computes from argv alone
        assert "--optimizer.init_args.lr=0.001" in first[0] and first[0][:3] == ["fit", "--config", str(CONFIG)]
    assert "--seed_everything=4" in first[0] and "--trainer.logger.init_args.group=mine" in first[0]


def test_the_fork_server_parses_nothing_as_it_loads_for_a_sweep_that_will_fail_or_not_parse(in_tmp, write_sweep):
    os.mkfifo(in_tmp / "fifo.yaml")
    fifo = fit_sweep(in_tmp, {"model.init_args.dropout": {"values": [0.0]}})
    Path(fifo).write_text(Path(fifo).read_text().replace(str(CONFIG), "fifo.yaml"))
    for argv in (["missing.yaml"], [fifo], [write_sweep()], [fifo, "--trials", "0"]):  # the last three: a FIFO
        assert sweep_cli.first_check_arguments(argv) == []  # config, another program, a bad flag


@pytest.mark.parametrize("check", ["fails", "passes"])
def test_a_new_sqlite_study_is_drafted_while_the_check_parses_and_named_only_if_it_passes(in_tmp, monkeypatch, check):
    import threading

    path = fit_sweep(in_tmp, {"optimizer.init_args.lr": {"values": [1.0e-3]}})
    folder, drafted, real = in_tmp / "runs/sweeps/fit", threading.Event(), sweep_cli.draft_study

    def draft_study(*args):
        real(*args)
        assert args[2].resolve().parent == folder and args[2].is_file() and not (folder / "study.db").exists()
        drafted.set()

    def parse(arguments: list[str], sweep_arguments: list[str]) -> tuple[int, str]:
        assert drafted.wait(30)  # on another thread, while the parse waits (for the fork server's load)
        return (2, "error: stop here") if check == "fails" else (0, "")

    monkeypatch.setattr(sweep_cli, "draft_study", draft_study)
    monkeypatch.setattr(sweep_cli, "parse_in_fork", parse)
    monkeypatch.setattr(sweep_cli, "run_trials", lambda *args: None)  # the check is what is tested
    if check == "fails":
        with pytest.raises(SystemExit, match="stop here"):
            sweep_cli.main([path])
        assert not list(folder.glob("*study.db*"))  # no study, no draft: nothing was run
    else:
        with pytest.raises(SystemExit, match="no trial finished"):
            sweep_cli.main([path])
        assert [p.name for p in folder.glob("*study.db*")] == ["study.db"]  # named, and no draft left
        (stored,) = optuna.get_all_study_summaries(f"sqlite:///{folder / 'study.db'}")
        assert stored.study_name == "fit" and stored.user_attrs["sweep"]["metric"]["name"] == "val/acc_best"


def test_an_existing_study_file_is_not_drafted_and_stays_when_the_check_fails(in_tmp, monkeypatch):
    path = fit_sweep(in_tmp, {"optimizer.init_args.lr": {"values": [1.0e-3]}})
    database = in_tmp / "runs/sweeps/fit/study.db"
    database.parent.mkdir(parents=True)
    database.write_bytes(b"")  # an empty SQLite database: another sweep's, say
    monkeypatch.setattr(sweep_cli, "draft_study", lambda *args: pytest.fail("drafted over an existing study file"))
    monkeypatch.setattr(sweep_cli, "parse_in_fork", lambda arguments, sweep_arguments: (2, "error: stop here"))
    with pytest.raises(SystemExit, match="stop here"):
        sweep_cli.main([path])
    assert sorted(p.name for p in database.parent.iterdir()) == ["study.db"]


def test_a_bad_value_among_the_choices_is_refused_too(in_tmp):
    path = fit_sweep(in_tmp, {"optimizer.init_args.lr": {"values": [1.0e-3, "fast"]}})
    with pytest.raises(SystemExit, match=r"(?s)with the last value of every parameter.*lr=fast"):
        sweep_cli.main([path, "--launcher", "subprocess"])


def test_the_shipped_sweep_passes_the_check(monkeypatch):
    monkeypatch.chdir(Path(__file__).parents[3])  # its command names configs/digits_mlp.yaml
    sweep = SweepFile.read(Path(__file__).parents[3] / "configs/sweeps/digits_mlp_sweep.yaml")
    check_command(sweep, ["--trainer.logger.init_args.id=x", "--trainer.callbacks+=lightning_app.sweep.callback.SweepTrial"])


@pytest.mark.slow
@pytest.mark.parametrize("workers", ["1", "2"])
def test_a_sweep_where_no_trial_finished_exits_with_the_first_failure(write_sweep, workers):
    path = write_sweep(x={"values": [1]}, fail_at={"value": 1})  # its one trial fails
    with pytest.raises(SystemExit, match=r"no trial finished; the first failure: trial 0 exited with code 1: this trial fails"):
        sweep_cli.main([path, "--workers", workers])
    assert [t.state.name for t in trials()] == ["FAIL"]


@pytest.mark.parametrize("at_once", [True, False])
def test_the_two_parses_run_at_once_for_forks_and_a_failure_of_the_first_value_is_said_first(in_tmp, at_once):
    import threading
    import time

    sweep = SweepFile.read(fit_sweep(in_tmp, {"optimizer.init_args.lr": {"values": [1.0e-3, 1.0e-2]}}))
    running, most = set(), []

    def parse(arguments: list[str]) -> tuple[int, str]:
        running.add(threading.get_ident())
        most.append(len(running))
        time.sleep(0.2)
        running.discard(threading.get_ident())
        return 2, f"error: cannot parse {arguments[-1]}"

    with pytest.raises(ValueError, match=r"(?s)with the first value of every parameter.*error: cannot parse"):
        check_command(sweep, ["--x=1"], parse, at_once=at_once)
    assert max(most) == (2 if at_once else 1) and len(most) == (2 if at_once else 1)  # one after the other stops at the first
