"""Compare runs: ``python -m lightning_app.compare runs/ [--baseline GROUP] [--runs] [--json] [--plot curves.png]``.

Finds every run under the given folders (any folder holding a ``summary.json``, see
``lightning_app/record/summary.py``) and groups the repeats of one experiment: runs whose configs
are equal but for the seed and the run's own names and paths share a ``config_id``
(``--group-by KEY`` groups by chosen keys instead). It prints one Markdown row per group: the config
keys that differ between the groups, ``n``, and for each final metric (the final and best value of
each validation metric, the test metrics) mean ± sample std and the 95% confidence interval of the
mean. ``--baseline`` adds each other group's difference from one group, with its 95% interval and
Welch's t-test p-value; ``--runs`` lists the runs one by one instead; ``--json`` prints the groups as
JSON; ``--plot`` draws each group's mean learning curve with a ±1 std band, and the runs' test
confusion matrices side by side. It reads only the files each run writes beside its checkpoints, so
offline, synced and W&B-less runs compare alike; what it cannot read is left out with a warning.
"""

import argparse
import json
from pathlib import Path

from lightning_app.compare.groups import (
    Group, config_id, difference, differing_keys, estimate, final_values, find_group, group_runs,
)  # fmt: skip
from lightning_app.compare.read import MAX_BYTES, Run, find_runs, flatten, load_run, read_dict, read_text
from lightning_app.compare.show import as_json, baseline_table, groups_table, plot, runs_table

__all__ = [
    "MAX_BYTES", "Group", "Run", "config_id", "differing_keys", "find_runs", "flatten", "load_run", "main", "parser",
    "read_dict", "read_text",
]  # fmt: skip


def parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m lightning_app.compare", description=__doc__.splitlines()[0])
    parser.add_argument("paths", nargs="+", type=Path, help="run folders, or folders to search for runs (runs/)")
    parser.add_argument("--metrics", nargs="+", help="epoch metrics to show (default: every val/ metric)")
    parser.add_argument("--group-by", action="append", metavar="KEY",
                        help="group by this config key (model.dropout) instead of config_id; repeatable")
    parser.add_argument("--baseline", metavar="GROUP",
                        help="compare each group with this one: its label, config_id or one of its run folders' names")
    parser.add_argument("--runs", action="store_true", help="one row per run instead of one per group")
    parser.add_argument("--json", action="store_true", help="print the groups as JSON instead of tables")
    parser.add_argument("--plot", type=Path, help="write the learning curves (mean ± std per group) to this PNG file")
    return parser


def main(args: list[str] | None = None) -> str:
    """Runs ``python -m lightning_app.compare`` with ``args``; returns what it printed."""
    options = parser().parse_args(args)
    runs = find_runs(options.paths)
    if not runs:
        raise SystemExit(f"no runs under {', '.join(map(str, options.paths))}: a run is a folder with summary.json")
    seen = sorted({name for run in runs for record in run.history for name in record})
    metrics = options.metrics or [name for name in seen if name.startswith("val/") and not name.endswith("_best")]
    groups = group_runs(runs, options.group_by)
    finals = [[final_values(run, metrics) for run in group.runs] for group in groups]
    columns = [f"{m} {which}" for m in metrics for which in ("final", "best")]
    columns += sorted({name for values in finals for run in values for name in run} - set(columns))
    estimates = [{c: estimate(v) for c in columns if (v := [run[c] for run in values if c in run])} for values in finals]
    baseline = find_group(groups, options.baseline) if options.baseline else None
    differences: list[dict | None] = [None] * len(groups)
    if baseline is not None:
        base = estimates[groups.index(baseline)]
        for index, (group, found) in enumerate(zip(groups, estimates)):
            if group is not baseline:
                differences[index] = {c: difference(e.values, base[c].values) for c, e in found.items() if c in base}
    if options.json:
        text = json.dumps(as_json(groups, estimates, differences), indent=1)
    else:
        ids = {run.folder: config_id(run.config) for run in runs}
        text = runs_table(runs, metrics, ids) if options.runs else groups_table(groups, columns, estimates)
        if baseline is not None:
            others = [(g, d) for g, d in zip(groups, differences) if g is not baseline]
            text += "\n\n" + baseline_table(baseline, [g for g, _ in others], columns, [d for _, d in others])
    print(text)
    if options.plot:
        curves = options.metrics or [name for name in ("train/loss", "val/loss", "val/acc") if name in seen]
        shown = [Group(run.folder.name, config_id(run.config), [run]) for run in runs] if options.runs else groups
        plot(shown, curves, options.plot)
        print(f"learning curves: {options.plot}")
        from lightning_app.pictures.confusion import confusion_side_by_side  # numpy and matplotlib: only to draw

        if confusion := confusion_side_by_side(runs, options.plot.with_name(f"{options.plot.stem}_confusion.png")):
            print(f"confusion matrices: {confusion}")
    return text
