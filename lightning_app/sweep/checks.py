"""What every trial shares, checked before the first one starts: a mistake there fails the sweep in
seconds, not each trial after its imports (or the whole study, one trial at a time).

- the storage: a SQLite file's folder must be writable (SQLite's own error names no folder);
- the arguments after ``--``: they must not set what the sweep sets for each trial (its W&B run
  id, name and group); ``--trainer.logger=false`` is allowed, and the trials then run without W&B;
- the trial's command line, when it runs ``python -m lightning_app``: the files it names must not be
  FIFOs or devices, and its ``--config`` files must be regular (``check_config_files``: the parser
  would wait on a FIFO for ever); then parsed by the CLI's own
  parser (``--print_config``: nothing is built or trained) with the first value of every
  parameter, then the last, so a misspelt key or a value of the wrong type is refused. With the
  fork launcher the parse runs in a fork of the trials' preloaded process, so the sweep itself
  never imports Lightning; otherwise in the sweep's process.
"""

import contextlib
import io
import tempfile
import warnings
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Callable

from sqlalchemy.exc import ArgumentError

from lightning_app.record.read import check_config_files
from lightning_app.sweep.file import SweepFile
from lightning_app.sweep.grid import sqlite_file

SWEEP_SETS = ("trainer.logger.init_args.id", "trainer.logger.init_args.name", "trainer.logger.init_args.group")
NO_LOGGER = {"false", "null", "none"}  # `--trainer.logger=false`: a sweep without W&B


class CheckFailed(ValueError):
    """Something every trial shares is wrong: no trial could succeed."""


def check_storage(url: str) -> None:
    """A SQLite study's folder exists and takes a new file."""
    try:
        database = sqlite_file(url)
    except ArgumentError as error:
        raise CheckFailed(f"--storage {url!r} is not a database URL ({error}): e.g. sqlite:///runs/study.db") from None
    if database is None:
        return
    folder = database.absolute().parent
    if not folder.is_dir():
        raise CheckFailed(f"--storage {url}: the folder {folder} does not exist: create it, or give a path in another")
    try:
        with tempfile.NamedTemporaryFile(dir=folder):  # os.access says yes to root even where it cannot write
            pass
    except OSError as error:
        raise CheckFailed(
            f"--storage {url}: the folder {folder} is not writable ({error.strerror}); SQLite writes the study "
            "and its journal there: give a path in a folder you can write, e.g. sqlite:///runs/study.db"
        ) from None


def _set_keys(arguments: list[str]) -> dict[str, str]:
    """``--key=value`` and ``--key value`` arguments as {key: value}."""
    keys = {}
    for index, argument in enumerate(arguments):
        if argument.startswith("--"):
            key, equals, value = argument[2:].partition("=")
            if not equals:
                value = arguments[index + 1] if index + 1 < len(arguments) else ""
            keys[key.rstrip("+")] = value
    return keys


def wandb_off(sweep: SweepFile, overrides: list[str]) -> bool:
    """Whether the trials run without a logger; refuses overrides that set what the sweep sets per trial."""
    keys = _set_keys(overrides)
    clash = sorted(key for key in keys if key in SWEEP_SETS)
    if clash:
        raise CheckFailed(
            f"the arguments after -- set {clash}, which the sweep sets for each trial (its W&B run id, name "
            "and group, so that trials are told apart): leave them out (--name names the sweep and its group)"
        )
    constants = {p.name: str(p.value) for p in sweep.parameters if p.distribution is None}
    logger = keys.get("trainer.logger", constants.get("trainer.logger", ""))
    return logger.strip().lower() in NO_LOGGER


def cli_arguments(command: list[str]) -> list[str] | None:
    """The arguments of ``python -m lightning_app ...`` in a trial's command, or None for another program."""
    for index in range(len(command) - 1):
        if command[index] == "-m" and command[index + 1] == "lightning_app":
            return command[index + 2 :]
    return None


def _extreme(sweep: SweepFile, last: bool) -> dict[str, Any]:
    values = {}
    for parameter in sweep.parameters:
        dist = parameter.distribution
        if dist is None:
            values[parameter.name] = parameter.value
        elif parameter.choices:
            values[parameter.name] = list(parameter.choices.values())[-1 if last else 0]
        else:
            values[parameter.name] = dist.high if last else dist.low
    return values


def parse_here(arguments: list[str]) -> tuple[int, str]:
    """Parses ``python -m lightning_app ARGUMENTS --print_config`` in this process: (exit code, its stderr)."""
    from lightning_app.cli import AppCLI  # imports Lightning: seconds, spent once

    errors = io.StringIO()
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(errors), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # e.g. LightningCLI's note that this process has its own sys.argv
        try:
            AppCLI(args=[*arguments, "--print_config"])
            code = 0
        except SystemExit as stop:
            code = stop.code
    return code or 0, errors.getvalue()


def check_arguments(sweep: SweepFile, extra: list[str]) -> list[list[str]] | None:
    """The CLI arguments of the trials' command line with the first, then the last value of every
    parameter; None where the trials run another program (its own parser decides, in the first trial)
    or another subcommand than ``fit`` (the user's own)."""
    if cli_arguments(sweep.command_line({}, [])) is None:
        return None
    both = [cli_arguments(sweep.command_line(_extreme(sweep, last), extra)) for last in (False, True)]
    return None if any(arguments and arguments[0] != "fit" for arguments in both) else both


def check_command(
    sweep: SweepFile, extra: list[str], parse: Callable[[list[str]], tuple[int, str]] = parse_here, at_once: bool = False
) -> None:
    """Parses the trials' command line with the CLI's parser, for the first and the last value of every parameter.

    ``parse`` runs ``--print_config`` (``parse_here``, or in a process forked from the trials' preloaded one);
    ``at_once``: both parses at the same time (forks: each its own process), else one after the other.
    """
    both = check_arguments(sweep, extra)
    if both is None:
        return
    for arguments in both:  # before the parser, which would wait on a FIFO for ever (here, or in the fork server)
        try:
            check_config_files(arguments)
        except (OSError, ValueError) as error:
            raise CheckFailed(f"{sweep.path}: the trials' command line names a config that cannot be read: "
                              f"{error}") from None  # fmt: skip
    pool = ThreadPoolExecutor(2) if at_once else None
    try:
        results = pool.map(parse, both) if pool else map(parse, both)  # map: the last parses only if the first did
        for last, arguments, (code, text) in zip((False, True), both, results):
            if code != 0:
                reason = text[text.find("error:") :] if "error:" in text else text[-2000:]
                raise CheckFailed(
                    f"{sweep.path}: the trials' command line does not parse (with the {'last' if last else 'first'} "
                    f"value of every parameter; nothing was run):\n  {' '.join(arguments)}\n{reason.strip()}\n"
                    "Fix the parameter's config key or value in the sweep file, or the arguments after --"
                )
    finally:  # a Ctrl-C does not wait here for forks of a server still loading: the sweep ends that server
        if pool is not None:
            pool.shutdown(wait=False)
