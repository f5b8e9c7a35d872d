"""Imported by the trials' fork server only (launch.py): parses the trials' command line once, so
that what the CLI's parser loads and caches lazily is there before the first fork."""

import atexit
import json
import os

from lightning_app.sweep.checks import parse_here

_arguments = json.loads(os.environ.get("LIGHTNING_APP_SWEEP_WARM", "[]"))
if _arguments:
    parse_here(_arguments)  # its result is the check's business, in a fork

# Registered last, so it runs first when the server ends (its sweep has exited): the server's torch,
# Lightning and W&B need no tearing down, and tearing them down took 2 s, during which the server
# still held the sweep's stdout, so a `| tee`, a CI log or a `subprocess.run` waited for it.
# Trials, forks of the server, end through multiprocessing's own os._exit and never run this.
atexit.register(os._exit, 0)
