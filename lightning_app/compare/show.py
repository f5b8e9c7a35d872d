"""What compare prints and draws: the group table, the per-run table, the baseline table, JSON, curves."""

import statistics
from pathlib import Path
from typing import Any

from lightning_app.compare.groups import Difference, Estimate, Group, differing_keys, is_identity
from lightning_app.compare.read import Run


def _number(value: Any) -> str:
    return f"{value:.4f}" if isinstance(value, float) else "-" if value is None else str(value)


def _markdown(header: list[str], rows: list[list[Any]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + " --- |" * len(header)]
    return "\n".join(lines + ["| " + " | ".join(_number(cell) for cell in row) + " |" for row in rows])


def _value(value: Any) -> Any:
    return f"{value:g}" if isinstance(value, float) else value


def runs_table(runs: list[Run], metrics: list[str], ids: dict[Path, str]) -> str:
    """One row per run: model, data, the hyperparameters that differ, each metric's final and best value,
    the test metrics, epochs, training time, device, status and the run's config_id."""
    keys = differing_keys([run.config for run in runs], ("model.class_path", "data.class_path"))
    keys = [key for key in keys if not is_identity(key) or key == "seed_everything"]  # the seed tells repeats apart
    tests = sorted({name for run in runs for name in run.summary.get("test", {})})
    header = ["run", "model", "data", *keys]
    header += [f"{m} {which}" for m in metrics for which in ("final", "best")]
    header += [*tests, "epochs", "train time", "device", "status", "config_id"]
    rows = []
    for run in runs:
        s = run.summary
        row = [run.folder.name, s.get("model"), s.get("data"), *(_value(run.config.get(key)) for key in keys)]
        for metric in metrics:
            values = [record[metric] for record in run.history if metric in record]
            row += [values[-1], max(values) if "acc" in metric else min(values)] if values else [None, None]
        row += [s.get("test", {}).get(name) for name in tests]
        device = f"{s.get('device')} {s.get('precision')}" + (f" x{s['processes']}" if (s.get("processes") or 1) > 1 else "")
        seconds = s.get("train_seconds")
        status = (s.get("status") or "") + (f", resumed {s['resumed']}x" if s.get("resumed") else "")
        row += [s.get("epochs"), f"{seconds:.1f} s" if seconds is not None else None, device, status, ids[run.folder]]
        rows.append(row)
    return _markdown(header, rows)


def _estimate_cell(found: Estimate | None, n: int) -> str:
    if found is None:
        return "-"
    count = "" if len(found.values) == n else f" (n={len(found.values)})"
    if found.std is None:
        return f"{found.mean:.4f} (n=1)"
    return f"{found.mean:.4f} ± {found.std:.4f} [{found.ci95[0]:.4f}, {found.ci95[1]:.4f}]{count}"


def groups_table(groups: list[Group], columns: list[str], estimates: list[dict[str, Estimate]]) -> str:
    """One row per group: the keys that tell the groups apart, n, and per metric ``mean ± std [95% CI]``."""
    keys = list(groups[0].config)
    header = ["group", "model", "data", *keys, "n", *columns, "train time"]
    rows = []
    for group, found in zip(groups, estimates):
        first = group.runs[0].summary
        seconds = [run.summary["train_seconds"] for run in group.runs if "train_seconds" in run.summary]
        time = f"{statistics.fmean(seconds):.1f} s" if seconds else None
        cells = [_estimate_cell(found.get(column), len(group.runs)) for column in columns]
        values = [_value(group.config[key]) for key in keys]
        rows.append([group.label, first.get("model"), first.get("data"), *values, len(group.runs), *cells, time])
    return _markdown(header, rows)


def _difference_cell(found: Difference | None) -> str:
    if found is None:
        return "-"
    if found.ci95 is None:
        return f"{found.diff:+.4f} (n < 2 on a side: no interval, no test)"
    p_value = "no spread: no test" if found.p_value is None else f"p={found.p_value:.3g}"
    return f"{found.diff:+.4f} [{found.ci95[0]:+.4f}, {found.ci95[1]:+.4f}] {p_value}"


def baseline_table(baseline: Group, groups: list[Group], columns: list[str], differences: list[dict[str, Difference]]) -> str:
    """Per other group and metric: the difference of the means with its 95% CI (Welch) and Welch's p-value."""
    rows = [[group.label, len(group.runs), *(_difference_cell(found.get(c)) for c in columns)]
            for group, found in zip(groups, differences)]
    title = f"Difference from baseline {baseline.label} (n={len(baseline.runs)}): mean diff [95% CI], Welch's t-test p\n\n"
    return title + _markdown(["group", "n", *columns], rows)


def as_json(
    groups: list[Group], estimates: list[dict[str, Estimate]], differences: list[dict[str, Difference] | None]
) -> list[dict]:
    """The groups as ``compare --json`` prints them."""
    listed = []
    for group, found, compared in zip(groups, estimates, differences):
        metrics = {}
        for name, est in found.items():
            ci95 = list(est.ci95) if est.ci95 else None
            metrics[name] = {"n": len(est.values), "mean": est.mean, "std": est.std, "ci95": ci95}
            if compared is not None and name in compared:
                diff = compared[name]
                metrics[name].update(diff=diff.diff, diff_ci95=list(diff.ci95) if diff.ci95 else None, p_value=diff.p_value)
        runs = [run.folder.name for run in group.runs]
        listed.append({
            "label": group.label, "config": group.config, "config_id": group.config_id, "n": len(runs), "runs": runs,
            "metrics": metrics,
        })  # fmt: skip
    return listed


def plot(groups: list[Group], metrics: list[str], path: Path) -> None:
    """One panel per metric; per group its mean curve over epochs and a band of ±1 std across its runs."""
    try:
        import matplotlib
    except ModuleNotFoundError:
        raise SystemExit("--plot needs matplotlib: pip install matplotlib") from None

    matplotlib.use("Agg")  # files only: works without a display
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    from lightning_app.pictures.figures import plain_text

    with plain_text():  # labels (config values, model names) drawn as they are, `$` and all
        size = (5 * len(metrics), 3.5 + 0.25 * len(groups))
        figure, axes = plt.subplots(1, len(metrics), figsize=size, squeeze=False, layout="constrained")
        for axis, metric in zip(axes[0], metrics):
            for group in groups:
                by_epoch: dict[int, list[float]] = {}
                for run in group.runs:
                    for record in run.history:
                        if metric in record:
                            by_epoch.setdefault(record["epoch"] + 1, []).append(record[metric])
                if not by_epoch:
                    continue
                epochs = sorted(by_epoch)
                means = [statistics.fmean(by_epoch[e]) for e in epochs]
                spread = [statistics.stdev(by_epoch[e]) if len(by_epoch[e]) > 1 else 0.0 for e in epochs]
                detail = ", ".join(f"{key.rsplit('.', 1)[-1]}={value}" for key, value in group.config.items())
                summary = group.runs[0].summary
                label = f"{detail or group.label} {summary.get('model')}/{summary.get('data')} (n={len(group.runs)})"
                (line,) = axis.plot(epochs, means, marker="o", label=label)
                low, high = [m - s for m, s in zip(means, spread)], [m + s for m, s in zip(means, spread)]
                axis.fill_between(epochs, low, high, color=line.get_color(), alpha=0.2)
            axis.set(title=metric, xlabel="epoch")
            axis.xaxis.set_major_locator(MaxNLocator(integer=True))
            axis.grid(alpha=0.3)
        figure.legend(*axes[0][0].get_legend_handles_labels(), loc="outside lower center", fontsize="small")
        figure.savefig(path, dpi=120)
        plt.close(figure)
