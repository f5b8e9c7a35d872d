"""Imported by the trials' fork server only (launch.py): parses the trials' command line once, so
that what the CLI's parser loads and caches lazily is there before the first fork."""

import json
import os

from lightning_app.sweep.checks import parse_here

_arguments = json.loads(os.environ.get("LIGHTNING_APP_SWEEP_WARM", "[]"))
if _arguments:
    parse_here(_arguments)  # its result is the check's business, in a fork
