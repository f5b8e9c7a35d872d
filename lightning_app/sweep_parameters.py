"""A sweep file's ``parameters``, by W&B's rules, as Optuna distributions.

Each parameter is one of: ``values`` (categorical), ``value`` (a constant), or ``min``/``max`` with a
``distribution``: ``int_uniform`` and ``uniform`` (the defaults for integer and float bounds),
``q_uniform`` (steps of ``q`` from ``min``), ``log_uniform_values``, ``log_uniform`` (bounds are
natural logs), their ``inv_`` forms (the same distributions of values), and
``q_log_uniform_values`` with integer bounds and ``q: 1``. W&B's normal and beta distributions
are unbounded or skewed, which Optuna's samplers do not draw from: an error names them.
"""

import math
import re
from dataclasses import dataclass, field
from typing import Any

from optuna.distributions import BaseDistribution, CategoricalDistribution, FloatDistribution, IntDistribution

PARAMETER_KEYS = {"values", "value", "distribution", "min", "max", "q"}


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
