"""What a sweep leaves in ``runs/sweeps/<name>/``, at its end and on Ctrl-C.

- ``trials.md``: one Markdown row per trial, best first: its parameters, metric (over seeds: mean ±
  standard deviation (n)), state, time and run folder (printed too).
- ``best.yaml``: the best finished trial's whole config, a new run of it with
  ``python -m lightning_app fit --config runs/sweeps/<name>/best.yaml``.
- ``history.png``, ``importances.png``, ``curves.png``: Optuna's optimisation history, parameter
  importances (its default evaluator) and every trial's metric after each validation (pruned
  trials too), drawn with matplotlib.
"""

import warnings
from functools import partial
from pathlib import Path

import optuna
import yaml

from lightning_app.record.read import replace_file
from lightning_app.sweep.file import SweepFile
from lightning_app.sweep.grid import SPARE
from lightning_app.sweep.trials import CALLBACK

STATES = optuna.trial.TrialState


def _where(path: str | None) -> str:
    if not path:
        return ""
    try:
        return str(Path(path).resolve().relative_to(Path.cwd()))
    except ValueError:  # outside this folder: as it is
        return path


def _seconds(trial: optuna.trial.FrozenTrial) -> str:
    if trial.datetime_start is None or trial.datetime_complete is None:
        return ""
    return f"{(trial.datetime_complete - trial.datetime_start).total_seconds():.0f} s"


def _metric(trial: optuna.trial.FrozenTrial) -> str:
    """The trial's metric; over seeds, their mean ± standard deviation (n)."""
    value = trial.user_attrs.get("value")
    if value is None:
        return ""
    if "n" in trial.user_attrs:
        return f"{value:.4f} ± {trial.user_attrs['std']:.4f} ({trial.user_attrs['n']})"
    return f"{value:.4f}"


def _cell(value) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def table(study: optuna.Study, sweep: SweepFile) -> str:
    """The trials as a Markdown table: finished ones by their metric, best first, then pruned, then the rest."""
    swept = [p for p in sweep.parameters if p.distribution is not None]
    sign = -1 if sweep.goal == "maximize" else 1
    rank = {STATES.COMPLETE: 0, STATES.PRUNED: 1}

    def order(trial):
        value = trial.user_attrs.get("value")
        return rank.get(trial.state, 2), sign * value if value is not None else 0, trial.number

    header = ["trial", *(p.name.replace(".init_args", "") for p in swept), sweep.metric, "state", "time", "run"]
    lines = ["| " + " | ".join(header) + " |", "|" + " --- |" * len(header)]
    trials = [t for t in study.get_trials(deepcopy=False) if SPARE not in t.user_attrs]  # grid.py: never ran
    for trial in sorted(trials, key=order):
        value = trial.user_attrs.get("value")
        state = trial.state.name.lower()
        run = trial.user_attrs.get("run") if trial.state != STATES.FAIL else trial.user_attrs.get("log")
        cells = [
            str(trial.number),
            *(_cell(p.decode(trial.params[p.name])) if p.name in trial.params else "" for p in swept),
            _metric(trial),
            state,
            _seconds(trial),
            _where(run),
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def write_best(study: optuna.Study, sweep: SweepFile, folder: Path) -> str:
    """``best.yaml``: the best finished trial's config.yaml, made a new run (no trial id, no sweep callback)."""
    finished = [t for t in study.get_trials(deepcopy=False, states=(STATES.COMPLETE,)) if t.user_attrs.get("run")]
    if not finished:
        return "no finished trial yet, so no best.yaml"
    best = study.best_trial
    config_path = Path(best.user_attrs["run"]) / "config.yaml"
    if not config_path.exists():
        return f"the best trial's {config_path} is missing, so no best.yaml"
    config = yaml.safe_load(config_path.read_text())
    trainer = config.get("trainer") or {}
    kept = [c for c in trainer.get("callbacks") or [] if not (isinstance(c, dict) and c.get("class_path") == CALLBACK)]
    trainer["callbacks"] = kept or None
    logger = trainer.get("logger")
    if isinstance(logger, dict) and isinstance(logger.get("init_args"), dict):
        # A new W&B run, not the trial's again; online when a key is there, as any run decides.
        logger["init_args"].update(id=None, version=None, name=None, offline=False)
    path = folder / "best.yaml"
    header = (
        f"# python -m lightning_app fit --config {path}\n"
        f"# The best trial ({best.number}) of sweep {study.study_name}: {sweep.metric} = {_metric(best)}; "
        f"its run: {_where(best.user_attrs['run'])}\n"
    )
    replace_file(path, header + yaml.safe_dump(config, sort_keys=False))  # several workers may finish at once
    return f"best: trial {best.number}, {sweep.metric} = {_metric(best)}; its config: {path}"


def preload() -> None:
    """Imports what the plots use (matplotlib; scikit-learn's forests, for the importances: 1 s in all).

    The driver calls it on a thread while the trials' fork server imports Lightning, when it waits
    on a second core, so that the report at the sweep's end does not pay for it.
    """
    try:
        import matplotlib

        matplotlib.use("Agg")  # files only: no display needed
        import matplotlib.pyplot  # noqa: F401
        import sklearn.ensemble  # noqa: F401
        from optuna.visualization import matplotlib as drawing  # noqa: F401
    except ImportError:  # plot() says what is missing
        pass


def plot(study: optuna.Study, sweep: SweepFile, folder: Path) -> list[str]:
    """history.png, importances.png and curves.png, where there are enough trials to draw them."""
    try:
        import matplotlib

        matplotlib.use("Agg")  # files only: no display needed
        import matplotlib.pyplot as plt
        from optuna.visualization import matplotlib as drawing
    except ImportError:
        return ["the plots need matplotlib: pip install -e '.[sweep]'"]
    trials = study.get_trials(deepcopy=False)
    finished = sum(t.state == STATES.COMPLETE for t in trials)
    history = partial(drawing.plot_optimization_history, target_name=sweep.metric)
    importances = partial(drawing.plot_param_importances, target_name=sweep.metric)
    reported = any(t.intermediate_values for t in trials)
    drawings = {  # name: (how to draw it, whether there is enough, what would be)
        "history.png": (history, finished >= 1, "a finished trial"),
        "importances.png": (importances, finished >= 2, "2 finished trials"),
        # Every trial's metric after each validation, pruned ones too: what the pruner compared.
        "curves.png": (drawing.plot_intermediate_values, reported, "a reported validation"),
    }
    notes = []
    for name, (draw, enough, needed) in drawings.items():
        if not enough:
            notes.append(f"{name}: needs {needed}")
            continue
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # experimental-API notices; importances of too few trials
                axes = draw(study)
                axes.figure.tight_layout()  # labels inside: one drawing, where bbox_inches="tight" takes two
        except (ValueError, RuntimeError) as error:  # e.g. importances of parameters that never varied
            notes.append(f"{name}: {error}")
            continue
        axes.figure.savefig(folder / name, dpi=120)
        plt.close(axes.figure)
        notes.append(f"plot: {folder / name}")
    return notes


def report(study: optuna.Study, sweep: SweepFile, folder: Path) -> str:
    """Writes trials.md, best.yaml and the plots; returns the table and where they are."""
    text = table(study, sweep)
    (folder / "trials.md").write_text(text + "\n")
    return "\n".join([text, "", write_best(study, sweep, folder), *plot(study, sweep, folder)])
