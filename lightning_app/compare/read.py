"""Reading run folders: ``summary.json``, ``config.yaml`` and ``metrics.jsonl``, whatever they hold.

A run folder may be half written, hand edited or not a folder of ours at all, so every file is
opened only if it is a regular file once links are resolved (a FIFO would block the reader for
ever, ``/dev/zero`` never ends) and read with a size bound. A file that cannot be read leaves its
run out; a ``metrics.jsonl`` line without an integer epoch is skipped; a field of the wrong type
(a string where a number belongs, ``NaN``, ``Infinity``) is dropped. Each with a warning naming the
file and the field, so the other runs are still compared.
"""

import json
import math
import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import yaml

from lightning_app.record import read as record_read

MAX_BYTES = 64 * 2**20  # far above any run's record; a bound so that a wrong file cannot fill the memory


@dataclass
class Run:
    folder: Path
    summary: dict[str, Any]
    config: dict[str, Any]  # flattened: {"optimizer.lr": 0.001, ...}
    history: list[dict[str, float]]  # one record per epoch, in order


def flatten(tree: Any, prefix: str = "") -> dict[str, Any]:
    """``{"a": {"init_args": {"b": 1}}}`` -> ``{"a.b": 1}``; lists become their string."""
    if not isinstance(tree, dict):
        return {prefix: str(tree) if isinstance(tree, list) else tree}
    flat = {}
    for key, value in tree.items():
        name = prefix if key == "init_args" else f"{prefix}.{key}" if prefix else str(key)
        flat.update(flatten(value, name))
    return flat


def read_text(path: Path, limit: int = MAX_BYTES) -> str:
    """The text of ``path`` if it is a regular file (links followed) of at most ``limit`` bytes (``record/read.py``).

    Raises ValueError naming the file otherwise, FileNotFoundError when it is missing.
    """
    return record_read.read_text(path, limit)


def read_dict(path: Path, parse: Callable[[str], Any]) -> dict[str, Any]:
    """The mapping that ``parse`` (``json.loads``, ``yaml.safe_load``) reads from ``path``.

    Raises ValueError, naming the file, when it is not a regular file within ``MAX_BYTES``, when the
    text does not parse or is not a mapping; OSError when it cannot be opened.
    """
    try:
        data = parse(read_text(path))
    except (ValueError, yaml.YAMLError) as error:  # JSONDecodeError is a ValueError
        raise ValueError(f"{path}: {error}") from None
    if not isinstance(data, dict):
        raise ValueError(f"{path} holds a {type(data).__name__}, not a mapping")
    return data


def is_number(value: Any) -> bool:
    """A finite int or float: JSON's ``true``, ``"12"``, ``NaN`` and ``Infinity`` are not."""
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _is_count(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _is_metrics(value: Any) -> bool:
    return isinstance(value, dict) and all(isinstance(k, str) and is_number(v) for k, v in value.items())


def _is_files(value: Any) -> bool:
    return isinstance(value, dict) and all(isinstance(v, list) and all(isinstance(p, str) for p in v) for v in value.values())


# The summary.json fields compare uses, and what each must be (lightning_app/record/summary.py writes them).
SUMMARY_FIELDS: dict[str, tuple[str, Callable[[Any], bool]]] = {
    "model": ("a string", lambda v: isinstance(v, str)),
    "data": ("a string", lambda v: isinstance(v, str)),
    "device": ("a string", lambda v: isinstance(v, str)),
    "precision": ("a string", lambda v: isinstance(v, str)),
    "status": ("a string", lambda v: isinstance(v, str)),
    "parameters": ("a count", _is_count),
    "processes": ("a count", _is_count),
    "nodes": ("a count", _is_count),
    "epochs": ("a count", _is_count),
    "resumed": ("a count", _is_count),
    "train_seconds": ("a finite number", is_number),
    "last": ("a mapping of names to finite numbers", _is_metrics),
    "test": ("a mapping of names to finite numbers", _is_metrics),
    "files": ("a mapping of keys to lists of paths", _is_files),
}


def checked_summary(path: Path, summary: dict[str, Any]) -> dict[str, Any]:
    """``summary`` without the fields of the wrong type, each dropped with a warning naming it."""
    kept = dict(summary)
    for field, (kind, check) in SUMMARY_FIELDS.items():
        if field in kept and kept[field] is not None and not check(kept[field]):
            warnings.warn(f"{path}: field {field!r} left out: {kept.pop(field)!r} is not {kind}", stacklevel=3)
    return kept


def read_history(path: Path) -> list[dict[str, float]]:
    """The epoch records of ``metrics.jsonl`` in epoch order; none when the file does not exist."""
    if not os.path.lexists(path):
        return []
    by_epoch: dict[int, dict[str, float]] = {}
    for number, line in enumerate(read_text(path).splitlines(), 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
            epoch = record["epoch"]
        except (ValueError, TypeError, KeyError) as error:
            warnings.warn(f"{path}, line {number}: skipped, not an epoch record ({error!r})", stacklevel=3)
            continue
        if not _is_count(epoch):
            warnings.warn(f"{path}, line {number}: skipped, field 'epoch' is {epoch!r}, not a count", stacklevel=3)
            continue
        for name in [name for name, value in record.items() if not is_number(value)]:
            value = record.pop(name)
            warnings.warn(f"{path}, line {number}: field {name!r} left out: {value!r} is not a finite number", stacklevel=3)
        # A resumed run may repeat an epoch: the later line's values win, the others stay.
        by_epoch[epoch] = {**by_epoch.get(epoch, {}), **record}
    return [by_epoch[e] for e in sorted(by_epoch)]


def load_run(folder: Path) -> Run:
    """The run in ``folder``; ValueError or OSError naming the file when one of its files cannot be read."""
    summary = checked_summary(folder / "summary.json", read_dict(folder / "summary.json", json.loads))
    config_path = folder / "config.yaml"
    config = {}
    if os.path.lexists(config_path):
        config = flatten(read_dict(config_path, lambda text: yaml.safe_load(text) or {}))
    return Run(folder, summary, config, read_history(folder / "metrics.jsonl"))


def find_runs(paths: list[Path]) -> list[Run]:
    """Every run in or under ``paths``: a folder holding a ``summary.json``; unreadable ones left out with a warning."""
    folders = []
    for path in paths:
        if not path.exists():
            raise SystemExit(f"{path}: no such folder")
        folders += [path] if os.path.lexists(path / "summary.json") else sorted(p.parent for p in path.rglob("summary.json"))
    runs = []
    for folder in dict.fromkeys(folders):
        try:
            runs.append(load_run(folder))
        except (OSError, ValueError) as error:
            warnings.warn(f"run {folder} left out: {error}", stacklevel=2)
    return runs
