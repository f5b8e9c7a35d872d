"""Repeats of one experiment as a group, and the statistics that say how far groups differ.

Runs whose resolved configs are equal except for the seed and the run's own identity (its logger,
folders, checkpoint to resume) are repeats of one experiment: they share a ``config_id``, the same
one W&B's run config holds (``lightning_app/record/logger.py``), so "Group by config_id" there
shows these groups. Each group's final metrics get mean, sample std and the 95% confidence interval
of the mean (Student's t); against a baseline group, the difference of the means with its 95%
interval (Welch-Satterthwaite degrees of freedom) and the two-sided p-value of Welch's t-test.
scipy is imported only to compute them, so ``config_id`` stays light to import.
"""

import hashlib
import json
import math
import statistics
from dataclasses import dataclass, field
from typing import Any

from lightning_app.compare.read import Run, flatten

# Config keys that name a run or a path of it, or its seed: not part of what the experiment is.
IDENTITY = ("seed_everything", "trainer.logger", "trainer.default_root_dir", "ckpt_path", "config", "checkpoint.dirpath")
IDENTITY_LEAVES = ("dirpath", "save_dir", "default_root_dir")  # the same, wherever they sit (a callback's dirpath)


def is_identity(key: str) -> bool:
    """True for a flattened config key that ``config_id`` leaves out."""
    return key.rsplit(".", 1)[-1] in IDENTITY_LEAVES or any(key == name or key.startswith(name + ".") for name in IDENTITY)


def config_id(config: dict[str, Any]) -> str:
    """8 hex digits of sha256 over the canonical JSON of the flattened ``config`` without its identity keys.

    ``config`` is a resolved config, nested (as ``config.yaml`` reads) or flattened (``Run.config``).
    """
    flat = {key: value for key, value in flatten(config).items() if not is_identity(key)}
    text = json.dumps(flat, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:8]


@dataclass
class Group:
    label: str
    config_id: str | None  # None when --group-by puts runs of several configs together
    runs: list[Run]
    config: dict[str, Any] = field(default_factory=dict)  # the differing keys and their values


def differing_keys(configs: list[dict[str, Any]], leave_out: tuple[str, ...] = ()) -> list[str]:
    """The keys whose values are not the same in all ``configs``, sorted; ``leave_out`` prefixes skipped."""
    keys = sorted({key for config in configs for key in config if not key.startswith(leave_out)})
    return [key for key in keys if len({repr(config.get(key)) for config in configs}) > 1]


def group_runs(runs: list[Run], group_by: list[str] | None = None) -> list[Group]:
    """The runs by ``config_id``, or by the values of the ``group_by`` keys; groups in order of first run."""
    keyed: dict[Any, list[Run]] = {}
    for run in runs:
        key = tuple(repr(run.config.get(name)) for name in group_by) if group_by else config_id(run.config)
        keyed.setdefault(key, []).append(run)
    ids = [{config_id(run.config) for run in members} for members in keyed.values()]
    if group_by:
        keys = list(group_by)
    else:  # what tells the groups apart; class paths show as the model and data columns
        keys = differing_keys([members[0].config for members in keyed.values()], ("model.class_path", "data.class_path"))
        keys = [key for key in keys if not is_identity(key)]
    groups = []
    for members, found in zip(keyed.values(), ids):
        values = {key: members[0].config.get(key) for key in keys}
        shared = found.pop() if len(found) == 1 else None
        label = ", ".join(f"{key}={value}" for key, value in values.items()) if group_by else shared
        groups.append(Group(label, shared, members, values))
    return groups


@dataclass
class Estimate:
    values: list[float]
    mean: float
    std: float | None  # sample std (ddof=1); None for one value
    ci95: tuple[float, float] | None  # of the mean, Student's t with n-1 degrees of freedom


def estimate(values: list[float]) -> Estimate:
    n = len(values)
    mean = statistics.fmean(values)
    if n < 2:
        return Estimate(values, mean, None, None)
    from scipy import stats

    std = statistics.stdev(values)
    half = stats.t.ppf(0.975, n - 1) * std / math.sqrt(n)
    return Estimate(values, mean, std, (mean - half, mean + half))


@dataclass
class Difference:
    diff: float  # this group's mean minus the baseline's
    ci95: tuple[float, float] | None  # Welch-Satterthwaite degrees of freedom; None with n < 2 on a side
    p_value: float | None  # two-sided Welch t-test; None with n < 2 on a side or no spread at all


def difference(values: list[float], baseline: list[float]) -> Difference:
    diff = statistics.fmean(values) - statistics.fmean(baseline)
    if len(values) < 2 or len(baseline) < 2:
        return Difference(diff, None, None)
    from scipy import stats

    a, b = statistics.variance(values) / len(values), statistics.variance(baseline) / len(baseline)
    if a + b == 0:  # every run of both groups gave the same value: no spread to test against
        return Difference(diff, (diff, diff), None)
    dof = (a + b) ** 2 / (a**2 / (len(values) - 1) + b**2 / (len(baseline) - 1))
    half = stats.t.ppf(0.975, dof) * math.sqrt(a + b)
    p_value = float(stats.ttest_ind(values, baseline, equal_var=False).pvalue)
    return Difference(diff, (diff - half, diff + half), p_value)


def final_values(run: Run, metrics: list[str]) -> dict[str, float]:
    """The run's final numbers: ``<m> final`` and ``<m> best`` of each epoch metric, and its test metrics."""
    found = {}
    for metric in metrics:
        values = [record[metric] for record in run.history if metric in record]
        if values:
            # accuracies rise, losses fall
            found[f"{metric} final"], found[f"{metric} best"] = values[-1], max(values) if "acc" in metric else min(values)
    return {**found, **run.summary.get("test", {})}


def find_group(groups: list[Group], name: str) -> Group:
    """The group whose label or config_id is ``name``, or that holds the run folder named ``name``."""
    for group in groups:
        if name in (group.label, group.config_id) or name in (run.folder.name for run in group.runs):
            return group
    known = ", ".join(str(group.label) for group in groups)
    raise SystemExit(f"--baseline {name}: no group has that label or config_id, or a run of that name (groups: {known})")
