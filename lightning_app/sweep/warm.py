"""What the trials' fork server loads before its first fork (launch.py): every module a trial imports,
and the trials' command line parsed once, so that what the CLI's parser loads and caches lazily is
there too. The garbage collector stays off meanwhile: each full collection would walk every object
loaded so far, 0.7 s of the 4 s that loading takes. Then everything is frozen (``gc.freeze``), out
of the collector's reach in every trial, which freezes again as it starts (``lightning_app.__main__``);
the little garbage that loading leaves (about 12,000 objects, 8 MB) is shared by every trial."""

import atexit
import gc
import json
import os


def load(arguments: list[str]) -> None:
    gc.disable()
    try:
        import torch  # noqa: F401
        import lightning  # noqa: F401
        import wandb  # noqa: F401
        import lightning_app.cli  # noqa: F401
        import lightning_app.sweep.callback  # noqa: F401
        import modules  # noqa: F401
        import datamodules  # noqa: F401
        import optuna.storages._rdb.models  # noqa: F401  the callback opens the study's storage: its models
        import alembic.migration  # noqa: F401  and alembic, 0.3 s a trial otherwise
        from lightning_app.sweep.checks import parse_here

        if arguments:
            parse_here(arguments)  # its result is the check's business, in a fork
    finally:
        gc.freeze()
        gc.enable()


load(json.loads(os.environ.get("LIGHTNING_APP_SWEEP_WARM", "[]")))

# Registered last, so it runs first when the server ends (its sweep has exited): the server's torch,
# Lightning and W&B need no tearing down, and tearing them down took 2 s, during which the server
# still held the sweep's stdout, so a `| tee`, a CI log or a `subprocess.run` waited for it.
# Trials, forks of the server, end through multiprocessing's own os._exit and never run this.
atexit.register(os._exit, 0)
