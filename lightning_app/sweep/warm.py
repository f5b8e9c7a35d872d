"""What the trials' fork server loads before its first fork (launch.py): every module a trial imports,
and the trials' command line parsed once (the check's first, found from the sweep command's own
arguments: the server starts before the sweep has read its file), so that what the CLI's parser
loads and caches lazily is there too; then the CLI's parser is built once more, for the trials to
take (``lightning_app.cli.prebuild_parser``). The garbage collector stays off meanwhile: each full
collection would walk every object loaded so far, 0.7 s of the 4 s that loading takes. Then
everything is frozen (``gc.freeze``), out of the collector's reach in every trial, which freezes
again as it starts (``lightning_app.__main__``); the little garbage that loading leaves (about
12,000 objects, 8 MB) is shared by every trial."""

import atexit
import gc
import json
import os
import signal


def load(sweep_arguments: list[str] | None) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the sweep's: it ends this server (launch.stop_server)
    gc.disable()
    try:
        from lightning_app.deferred import defer_unused_imports

        defer_unused_imports()  # what a trial never uses is not loaded for it either
        import torch  # noqa: F401
        import lightning  # noqa: F401
        import wandb  # noqa: F401
        import lightning_app.cli  # noqa: F401
        import lightning_app.sweep.callback  # noqa: F401
        import modules  # noqa: F401
        import datamodules  # noqa: F401
        import optuna.storages._rdb.models  # noqa: F401  the callback opens the study's storage: its models
        import alembic.migration  # noqa: F401  and alembic, 0.3 s a trial otherwise
        from lightning_app.cli import prebuild_parser
        from lightning_app.sweep.checks import parse_here
        from lightning_app.sweep.driver import first_check_arguments

        arguments = first_check_arguments(sweep_arguments) if sweep_arguments is not None else []
        if arguments:
            try:
                parse_here(arguments)  # its result is the check's business, in a fork
                prebuild_parser(arguments)  # each trial, a fork, takes a copy of it
            except Exception:  # noqa: BLE001 - a warm-up only: the check and the trials meet it and say so
                pass
        read_installed_packages_once()
    finally:
        gc.freeze()
        gc.enable()


def read_installed_packages_once() -> None:
    """W&B records the installed packages with every run (its ``requirements.txt``), read from every
    package's metadata as the run starts: 50 ms of each trial's start. The sweep's trials share one
    environment, so the server reads them once, and each trial's run records that list."""
    import wandb.util

    if callable(getattr(wandb.util, "working_set", None)):  # where W&B's run reads them (wandb_run.py)
        packages = list(wandb.util.working_set())
        wandb.util.working_set = lambda: iter(packages)


load(json.loads(os.environ.get("LIGHTNING_APP_SWEEP_WARM", "null")))

# Registered last, so it runs first when the server ends (its sweep has exited): the server's torch,
# Lightning and W&B need no tearing down, and tearing them down took 2 s, during which the server
# still held the sweep's stdout, so a `| tee`, a CI log or a `subprocess.run` waited for it.
# Trials, forks of the server, end through multiprocessing's own os._exit and never run this.
atexit.register(os._exit, 0)
