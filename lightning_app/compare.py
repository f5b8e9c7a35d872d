"""Compare runs: ``python -m lightning_app.compare runs/ [--plot curves.png]``.

Lists every run under the given folders (any folder holding a ``summary.json``, see
``lightning_app/record/summary.py``) as a Markdown table: model, data, the hyperparameters that differ
between the runs, the final and best value of each validation metric, the test metrics,
training time, device and precision. ``--plot`` draws their learning curves, and their test
confusion matrices side by side where the runs have them. It reads only the
files each run writes beside its checkpoints, so offline, synced and W&B-less runs compare alike.
A run whose ``summary.json`` or ``config.yaml`` cannot be read is left out, and an unreadable line
of ``metrics.jsonl`` skipped, each with a warning naming the file.
"""

import argparse
import json
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

# Config keys that differ between any two runs without saying anything about the experiment.
IGNORED = ("trainer.logger", "ckpt_path", "config", "model.class_path", "data.class_path")


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


def read_dict(path: Path, parse) -> dict[str, Any]:
    """The mapping that ``parse`` (``json.loads``, ``yaml.safe_load``) reads from ``path``.

    Raises ValueError, naming the file, when the text does not parse or is not a mapping.
    """
    try:
        data = parse(path.read_text())
    except (ValueError, yaml.YAMLError) as error:  # JSONDecodeError is a ValueError
        raise ValueError(f"{path}: {error}") from None
    if not isinstance(data, dict):
        raise ValueError(f"{path} holds a {type(data).__name__}, not a mapping")
    return data


def load_run(folder: Path) -> Run:
    summary = read_dict(folder / "summary.json", json.loads)
    config_path = folder / "config.yaml"
    config = flatten(read_dict(config_path, lambda text: yaml.safe_load(text) or {})) if config_path.exists() else {}
    by_epoch: dict[int, dict[str, Any]] = {}
    metrics_path = folder / "metrics.jsonl"
    lines = metrics_path.read_text().splitlines() if metrics_path.exists() else []
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
            epoch = int(record["epoch"])
        except (ValueError, TypeError, KeyError) as error:
            warnings.warn(f"{metrics_path}, line {number}: skipped, not an epoch record ({error!r})", stacklevel=2)
            continue
        # A resumed run may repeat an epoch: the later line's values win, the others stay.
        by_epoch[epoch] = {**by_epoch.get(epoch, {}), **record}
    return Run(folder, summary, config, [by_epoch[e] for e in sorted(by_epoch)])


def find_runs(paths: list[Path]) -> list[Run]:
    folders = []
    for path in paths:
        if not path.exists():
            raise SystemExit(f"{path}: no such folder")
        folders += [path] if (path / "summary.json").exists() else sorted(p.parent for p in path.rglob("summary.json"))
    runs = []
    for folder in dict.fromkeys(folders):
        try:
            runs.append(load_run(folder))
        except (OSError, ValueError) as error:
            warnings.warn(f"run {folder} left out: {error}", stacklevel=2)
    return runs


def differing_keys(runs: list[Run]) -> list[str]:
    keys = sorted({key for run in runs for key in run.config if not key.startswith(IGNORED)})
    return [key for key in keys if len({repr(run.config.get(key)) for run in runs}) > 1]


def best(values: list[float], metric: str) -> float:
    return max(values) if "acc" in metric else min(values)  # accuracies rise, losses fall


def _number(value: Any) -> str:
    return f"{value:.4f}" if isinstance(value, float) else "-" if value is None else str(value)


def table(runs: list[Run], metrics: list[str]) -> str:
    """The Markdown table of ``runs``: one row per run."""
    keys = differing_keys(runs)
    tests = sorted({name for run in runs for name in run.summary.get("test", {})})
    header = ["run", "model", "data", *keys]
    header += [f"{m} {which}" for m in metrics for which in ("final", "best")]
    header += [*tests, "epochs", "train time", "device", "status"]
    rows = []
    for run in runs:
        s = run.summary
        hyperparameters = [f"{v:g}" if isinstance(v, float) else v for v in (run.config.get(key) for key in keys)]
        row = [run.folder.name, s.get("model"), s.get("data"), *hyperparameters]
        for metric in metrics:
            values = [record[metric] for record in run.history if metric in record]
            row += [values[-1], best(values, metric)] if values else [None, None]
        row += [s.get("test", {}).get(name) for name in tests]
        device = f"{s.get('device')} {s.get('precision')}" + (f" x{s['processes']}" if s.get("processes", 1) > 1 else "")
        seconds = s.get("train_seconds")
        status = s.get("status", "") + (f", resumed {s['resumed']}x" if s.get("resumed") else "")
        row += [s.get("epochs"), f"{seconds:.1f} s" if seconds is not None else None, device, status]
        rows.append([_number(cell) for cell in row])
    lines = ["| " + " | ".join(header) + " |", "|" + " --- |" * len(header)]
    return "\n".join(lines + ["| " + " | ".join(row) + " |" for row in rows])


def plot(runs: list[Run], metrics: list[str], path: Path) -> None:
    """One panel per metric, one line per run, epochs on the x axis."""
    try:
        import matplotlib
    except ModuleNotFoundError:
        raise SystemExit("--plot needs matplotlib: pip install matplotlib") from None

    matplotlib.use("Agg")  # files only: works without a display
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    keys = differing_keys(runs)
    size = (5 * len(metrics), 3.5 + 0.25 * len(runs))
    figure, axes = plt.subplots(1, len(metrics), figsize=size, squeeze=False, layout="constrained")
    for axis, metric in zip(axes[0], metrics):
        for run in runs:
            points = [(record["epoch"] + 1, record[metric]) for record in run.history if metric in record]
            if points:
                detail = ", ".join(f"{key.rsplit('.', 1)[-1]}={run.config.get(key)}" for key in keys)
                label = f"{run.folder.name} {run.summary.get('model')}/{run.summary.get('data')} {detail}".strip()
                axis.plot(*zip(*points), marker="o", label=label)
        axis.set(title=metric, xlabel="epoch")
        axis.xaxis.set_major_locator(MaxNLocator(integer=True))
        axis.grid(alpha=0.3)
    figure.legend(*axes[0][0].get_legend_handles_labels(), loc="outside lower center", fontsize="small")
    figure.savefig(path, dpi=120)
    plt.close(figure)


def parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m lightning_app.compare", description=__doc__.splitlines()[0])
    parser.add_argument("paths", nargs="+", type=Path, help="run folders, or folders to search for runs (runs/)")
    parser.add_argument("--metrics", nargs="+", help="epoch metrics to show (default: every val/ metric)")
    parser.add_argument("--plot", type=Path, help="write the learning curves of these runs to this PNG file")
    return parser


def main(args: list[str] | None = None) -> str:
    options = parser().parse_args(args)
    runs = find_runs(options.paths)
    if not runs:
        raise SystemExit(f"no runs under {', '.join(map(str, options.paths))}: a run is a folder with summary.json")
    seen = sorted({name for run in runs for record in run.history for name in record})
    metrics = options.metrics or [name for name in seen if name.startswith("val/") and not name.endswith("_best")]
    text = table(runs, metrics)
    print(text)
    if options.plot:
        curves = options.metrics or [name for name in ("train/loss", "val/loss", "val/acc") if name in seen]
        plot(runs, curves, options.plot)
        print(f"learning curves: {options.plot}")
        from lightning_app.pictures.confusion import confusion_side_by_side  # numpy and matplotlib: only to draw

        if confusion := confusion_side_by_side(runs, options.plot.with_name(f"{options.plot.stem}_confusion.png")):
            print(f"confusion matrices: {confusion}")
    return text


if __name__ == "__main__":
    main()
