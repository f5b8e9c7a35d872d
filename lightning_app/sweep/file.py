"""A W&B sweep file (what ``wandb sweep`` reads) as an Optuna search and the trials' command line.

The same file runs online (``wandb sweep`` + ``wandb agent``) and offline (``python -m lightning_app.sweep``).
What the offline command reads, with W&B's meaning (docs.wandb.ai, "sweep configuration options"):

- ``method``: ``grid`` (every combination of ``values``), ``random``, ``bayes`` (Optuna's TPE).
- ``metric``: ``name`` and ``goal`` (``minimize``, the default, or ``maximize``).
- ``parameters``: each one ``values`` (categorical), ``value`` (a constant), or ``min``/``max`` with a
  ``distribution``: ``int_uniform`` and ``uniform`` (the defaults for integer and float bounds),
  ``q_uniform`` (steps of ``q`` from ``min``), ``log_uniform_values``, ``log_uniform`` (bounds are
  natural logs), their ``inv_`` forms (the same distributions of values), and
  ``q_log_uniform_values`` with integer bounds and ``q: 1``. W&B's normal and beta distributions
  are unbounded or skewed, which Optuna's samplers do not draw from: an error names them.
- ``early_terminate``: ``type: hyperband`` with ``min_iter`` (or ``max_iter`` and ``s``) and ``eta``.
- ``command`` with the macros ``${env}``, ``${interpreter}``, ``${program}``, ``${args}``.
- ``program``, ``name``, ``description``, ``project``, ``entity``: read by W&B, ignored offline;
  ``run_cap``: the number of trials when ``--trials`` is not given.

Anything else is an error that names it, rather than a sweep that silently searches something else.
"""

import math
import os
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from optuna.distributions import BaseDistribution, CategoricalDistribution, FloatDistribution, IntDistribution

from lightning_app.record.read import read_text

PARAMETER_KEYS = {"values", "value", "distribution", "min", "max", "q"}
FILE_LIMIT = 1 << 20  # bytes: a sweep file or a config is a page of YAML


class SweepFileError(ValueError):
    """A sweep file the offline command cannot run as written."""


@dataclass
class Parameter:
    """One swept config key: an Optuna distribution, or a constant passed to every trial."""

    name: str
    distribution: BaseDistribution | None = None
    value: Any = None
    # Optuna's categorical choices must be scalars: a list value is stored as its text, "[128, 64]".
    choices: dict[Any, Any] = field(default_factory=dict)

    def suggest(self, trial) -> Any:
        """This trial's value, drawn by the study's sampler."""
        dist = self.distribution
        if dist is None:
            return self.value
        if isinstance(dist, CategoricalDistribution):
            return self.choices[trial.suggest_categorical(self.name, dist.choices)]
        suggest = trial.suggest_int if isinstance(dist, IntDistribution) else trial.suggest_float
        return suggest(self.name, dist.low, dist.high, step=dist.step, log=dist.log)

    def decode(self, stored: Any) -> Any:
        """The config value for a value as Optuna stores it."""
        return self.choices.get(stored, stored)


def _number(where: str, spec: dict, key: str) -> float:
    value = spec.get(key)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise SweepFileError(f"{where}: `{key}` must be a number, got {value!r}")
    return value


def _categorical(name: str, values: Any) -> Parameter:
    if not isinstance(values, list) or not values:
        raise SweepFileError(f"parameters.{name}: `values` must be a non-empty list, got {values!r}")
    # Lists and mappings are stored as the text the agent passes on the command line: "[128, 64]".
    choices = {(str(v) if isinstance(v, (list, dict)) else v): v for v in values}
    if len(choices) < len(values):
        raise SweepFileError(f"parameters.{name}: `values` repeat a value: {values}")
    return Parameter(name, CategoricalDistribution(list(choices)), choices=choices)


def parse_parameter(name: str, spec: Any) -> Parameter:
    """One entry of ``parameters``, by W&B's rules for which distribution a spec means."""
    where = f"parameters.{name}"
    if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_.-]*", name):  # W&B's rule; it becomes `--name=value`
        raise SweepFileError(f"{where}: a parameter name is a config key: letters, digits, '_', '.', '-'")
    if not isinstance(spec, dict):
        raise SweepFileError(f"{where}: expected a mapping with `values`, `value` or `min`/`max`, got {spec!r}")
    if "parameters" in spec:
        raise SweepFileError(f"{where}: nested parameters are not supported: name the full config key instead")
    unknown = sorted(set(spec) - PARAMETER_KEYS)
    if unknown:
        raise SweepFileError(f"{where}: unsupported keys {unknown} (supported: {sorted(PARAMETER_KEYS)})")
    kind = spec.get("distribution")
    if kind in (None, "categorical") and "values" in spec:
        return _categorical(name, spec["values"])
    if kind in (None, "constant") and "value" in spec:
        return Parameter(name, value=spec["value"])
    low, high = _number(where, spec, "min"), _number(where, spec, "max")
    if low > high:
        raise SweepFileError(f"{where}: `min` ({low}) is larger than `max` ({high})")
    integers = isinstance(low, int) and isinstance(high, int)
    kind = kind or ("int_uniform" if integers else "uniform")
    q = spec.get("q", 1)
    if kind in ("log_uniform_values", "inv_log_uniform_values", "q_log_uniform_values") and low <= 0:
        raise SweepFileError(f"{where}: {kind} needs `min` > 0, got {low}")
    if kind == "int_uniform" and integers:
        return Parameter(name, IntDistribution(low, high))
    if kind == "uniform":
        return Parameter(name, FloatDistribution(low, high))
    if kind == "q_uniform":
        step_type = IntDistribution if integers and isinstance(q, int) else FloatDistribution
        return Parameter(name, step_type(low, high, step=q))
    if kind in ("log_uniform_values", "inv_log_uniform_values"):  # 1/X log-uniform <=> X log-uniform
        return Parameter(name, FloatDistribution(low, high, log=True))
    if kind == "log_uniform":  # bounds are natural logs of the values
        return Parameter(name, FloatDistribution(math.exp(low), math.exp(high), log=True))
    if kind == "inv_log_uniform":  # log(1/X) uniform on [min, max]
        return Parameter(name, FloatDistribution(math.exp(-high), math.exp(-low), log=True))
    if kind == "q_log_uniform_values" and integers and q == 1:
        return Parameter(name, IntDistribution(low, high, log=True))
    raise SweepFileError(
        f"{where}: distribution {kind!r} with {spec} has no Optuna counterpart here; use `values`, or "
        "`min`/`max` with int_uniform, uniform, q_uniform, log_uniform_values or log_uniform"
    )


INFORMATIONAL = {"program", "name", "description", "project", "entity", "run_cap"}
SUPPORTED = INFORMATIONAL | {"method", "metric", "parameters", "early_terminate", "command"}
DEFAULT_COMMAND = ["${env}", "${interpreter}", "${program}", "${args}"]  # W&B's default


def _pruning(spec: Any) -> dict[str, int] | None:
    """``early_terminate: {type: hyperband, ...}`` as Optuna's SuccessiveHalvingPruner arguments.

    W&B's hyperband stops a run at each bracket (``min_iter``, ``min_iter * eta``, ...) unless its
    metric is in the top 1/eta of the runs that reached that bracket: successive halving with
    ``min_resource = min_iter`` and ``reduction_factor = eta``, counted in reported validations.
    """
    if spec is None:
        return None
    if not isinstance(spec, dict) or spec.get("type") != "hyperband":
        raise SweepFileError(f"early_terminate: only `type: hyperband` is supported, got {spec!r}")
    unknown = sorted(set(spec) - {"type", "min_iter", "max_iter", "s", "eta"})
    if unknown:
        raise SweepFileError(f"early_terminate: unsupported keys {unknown}")
    eta = spec.get("eta", 3)
    if not isinstance(eta, int) or eta < 2:
        raise SweepFileError(f"early_terminate: `eta` must be an integer of at least 2, got {eta!r}")
    if isinstance(spec.get("min_iter"), int) and spec["min_iter"] >= 1:
        return {"min_resource": spec["min_iter"], "reduction_factor": eta}
    if isinstance(spec.get("max_iter"), int) and isinstance(spec.get("s"), int):  # brackets max_iter/eta^s, ..., /eta
        return {"min_resource": max(1, round(spec["max_iter"] / eta ** spec["s"])), "reduction_factor": eta}
    raise SweepFileError(f"early_terminate: needs a positive integer `min_iter`, or `max_iter` and `s`; got {spec}")


def _command(raw: dict) -> list[str]:
    command = [str(chunk) for chunk in raw.get("command", DEFAULT_COMMAND)]
    macros = {"${env}", "${interpreter}", "${program}", "${args}"}
    unknown = [chunk for chunk in command if "${" in chunk and chunk not in macros]
    if unknown:
        raise SweepFileError(f"command: unsupported macros {unknown}; the offline sweep expands {sorted(macros)}")
    if "${args}" not in command:
        raise SweepFileError("command: needs ${args}, where each trial's `--key=value` overrides go")
    if "${program}" in command and not raw.get("program"):
        raise SweepFileError("command: uses ${program} but the file has no `program`")
    return command


@dataclass
class SweepFile:
    """A parsed sweep file. ``read`` checks it whole, so a bad file fails before any trial starts."""

    path: Path
    method: str
    metric: str
    goal: str
    parameters: list[Parameter]
    command: list[str]
    program: str | None = None
    pruning: dict[str, int] | None = None  # SuccessiveHalvingPruner arguments, from early_terminate
    run_cap: int | None = None
    identity: dict[str, Any] = field(default_factory=dict)  # what a continued study must share

    @classmethod
    def read(cls, path: str | Path, raw: Any = None) -> "SweepFile":
        """The sweep file at ``path``; ``raw``, its YAML when the caller has read it already."""
        path = Path(path)
        raw = _load(path, "sweep file") if raw is None else raw
        try:
            return cls._parse(path, raw)
        except SweepFileError as error:
            raise SweepFileError(f"{path}: {error}") from None

    @classmethod
    def _parse(cls, path: Path, raw: Any) -> "SweepFile":
        if not isinstance(raw, dict):
            raise SweepFileError("a sweep file is a mapping with `method`, `metric` and `parameters`")
        unknown = sorted(set(raw) - SUPPORTED)
        if unknown:
            raise SweepFileError(f"unsupported keys {unknown}; the offline sweep reads {sorted(SUPPORTED)}")
        if raw.get("method") not in ("grid", "random", "bayes"):
            raise SweepFileError(f"`method` must be grid, random or bayes, got {raw.get('method')!r}")
        metric = raw.get("metric")
        if not isinstance(metric, dict) or not isinstance(metric.get("name"), str):
            raise SweepFileError("needs `metric` with a `name` (and `goal: maximize` or `minimize`): what it optimises")
        if sorted(set(metric) - {"name", "goal"}) or metric.get("goal", "minimize") not in ("minimize", "maximize"):
            raise SweepFileError(f"metric: supported are `name` and `goal` (minimize or maximize), got {metric}")
        if not isinstance(raw.get("parameters"), dict) or not raw["parameters"]:
            raise SweepFileError("needs `parameters`: a mapping from config keys to their values or ranges")
        parameters = [parse_parameter(str(name), spec) for name, spec in raw["parameters"].items()]
        ranges = [p.name for p in parameters if p.distribution is not None and not p.choices]
        if raw["method"] == "grid" and ranges:
            raise SweepFileError(f"method grid needs `values` for every parameter; {ranges} have ranges")
        run_cap = raw.get("run_cap")
        if run_cap is not None and (not isinstance(run_cap, int) or run_cap < 1):
            raise SweepFileError(f"`run_cap` must be a positive integer, got {run_cap!r}")
        identity = {key: raw[key] for key in ("method", "metric", "parameters")}
        return cls(
            path, raw["method"], metric["name"], metric.get("goal", "minimize"), parameters, _command(raw),
            raw.get("program"), _pruning(raw.get("early_terminate")), run_cap, identity,
        )  # fmt: skip

    @property
    def grid(self) -> dict[str, list]:
        """The swept parameters' choices, as Optuna stores them."""
        return {p.name: list(p.distribution.choices) for p in self.parameters if p.choices}

    def values(self, trial) -> dict[str, Any]:
        """Every parameter's value for this trial (constants included), in the file's order."""
        return {p.name: p.suggest(trial) for p in self.parameters}

    def command_line(self, values: dict[str, Any], extra: list[str]) -> list[str]:
        """The command with its macros expanded as ``wandb agent`` expands them; ``extra`` follows ``${args}``."""
        line = []
        for chunk in self.command:
            if chunk == "${env}":
                line += ["/usr/bin/env"] if os.name == "posix" else []
            elif chunk == "${interpreter}":
                line.append(sys.executable)  # this environment's Python, where the agent runs `python`
            elif chunk == "${program}":
                line.append(str(self.program))
            elif chunk == "${args}":
                line += [f"--{name}={value}" for name, value in values.items()] + extra  # the agent's format
            else:
                line.append(chunk)
        return line


def _load(path: Path, what: str) -> Any:
    try:
        return yaml.safe_load(read_text(path, FILE_LIMIT))
    except (OSError, ValueError, yaml.YAMLError) as error:
        raise SweepFileError(f"{path}: cannot read the {what}: {error}") from None


def is_run_config(raw: Any) -> bool:
    """A ``fit`` config (``model:``/``trainer:``, no ``parameters:``) rather than a sweep file."""
    return isinstance(raw, dict) and "parameters" not in raw and bool({"model", "trainer", "data"} & set(raw))


def read_sweep_or_config(path: str | Path, metric: str, goal: str) -> SweepFile:
    """A sweep file, or a ``fit`` config as a sweep of its one configuration (repeated over seeds)."""
    path = Path(path)
    raw = _load(path, "file")
    if not is_run_config(raw):
        return SweepFile.read(path, raw)
    command = ["${env}", "${interpreter}", "-m", "lightning_app", "fit", "--config", str(path), "${args}"]
    identity = {"config": str(path), "metric": {"name": metric, "goal": goal}}
    return SweepFile(path, "grid", metric, goal, [], command, identity=identity)  # one point: the config itself
