"""Regenerates docs/results.md: every config in configs/, trained as shipped on the real data here,
once per seed, reported as mean ± standard deviation (n runs).

    python bench/results.py                      # every config the data and the machine allow, 3 seeds
    python bench/results.py --only mnist_mlp     # some configs: their rows printed, no file written
    python bench/results.py --seeds 5 --jobs 2   # 5 seeds, two runs at a time (one thread each)
    python bench/results.py --accelerator gpu    # on a GPU: the configs written for one too

Each config runs ``python -m lightning_app fit --config configs/X.yaml --seed_everything S`` for
S = 0..N-1 at its own budget (epochs, steps, schedule); the seed moves initialisation, dropout,
augmentation and the training order, never the train/validation/test split (docs/data.md), so the
spread is the training's alone. Only the data is pointed at ../shared/data (bench/real_data.py) and
the logger is a CSV logger. A run's figure comes from its ``summary.json``: the test accuracy of the
best validation checkpoint, or the last validation loss where the data has no test split. A config is
listed under the table, with the reason, when its data is not available offline, when it is written
for a GPU (mixed precision) and this run is on a CPU, or when a run failed. The README's short table
between ``<!-- results:start -->`` and ``<!-- results:end -->`` is rewritten too, where the markers exist.
"""

import argparse
import importlib
import multiprocessing
import os
import platform
import shutil
import statistics
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import torch
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "bench"), str(ROOT)]
from real_data import NOTES, SHARED, real_data_args  # noqa: E402

from lightning_app.cli import main  # noqa: E402
from lightning_app.compare import load_run  # noqa: E402

START, END = "<!-- results:start -->", "<!-- results:end -->"
COLUMNS = ["config", "model x data", "metric", "value", "more", "parameters", "epochs", "steps", "time"]
STANDARD = {"val/loss", "val/acc", "val/acc_best", "val/loss_best"}  # the "more" column shows the others


def data_class(settings: dict) -> type:
    module, name = settings["data"]["class_path"].rsplit(".", 1)
    return getattr(importlib.import_module(module), name)


def plan(config: Path, accelerator: str, workdir: Path, shared: Path) -> list[str] | str:
    """The arguments that point ``config`` at the real data, or why it cannot run here."""
    settings = yaml.safe_load(config.read_text())
    try:
        arguments = real_data_args(data_class(settings), workdir, shared)
    except LookupError as error:  # no such data offline
        return str(error)
    except (OSError, ValueError) as error:  # missing, or not the expected files
        return f"its data is missing or wrong here: {error}"
    precision = str(settings.get("trainer", {}).get("precision", "32-true"))
    if accelerator == "cpu" and not precision.startswith(("32", "64")):
        return f"written for a GPU (precision: {precision}): `python bench/results.py --accelerator gpu`"
    return arguments


def cell(name: str, values: list[float]) -> str:
    """``mean ± std`` of one metric over the runs (sample std; 0 for one run): accuracy in %, loss in 4 places."""
    mean = statistics.fmean(values)
    std = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{100 * mean:.2f} ± {100 * std:.2f}%" if name.endswith("acc") else f"{mean:.4f} ± {std:.4f}"


def run(config: Path, arguments: list[str], workdir: Path, accelerator: str, seed: int = 0) -> dict:
    """Trains ``config`` as shipped with ``--seed_everything seed``; returns the run's figures,
    or ``{"config", "note"}`` saying why it failed."""
    logs = workdir / "runs" / config.stem / f"seed_{seed}"
    shutil.rmtree(logs, ignore_errors=True)  # a rerun replaces the previous one
    args = ["fit", "--config", str(config), *arguments, "--trainer.accelerator", accelerator, "--seed_everything", str(seed)]
    args += ["--trainer.logger", "lightning.pytorch.loggers.CSVLogger", "--trainer.logger.save_dir", str(logs)]
    args += ["--trainer.default_root_dir", str(logs), "--trainer.enable_progress_bar", "false"]
    started = time.perf_counter()
    try:
        main(args)
    except (Exception, SystemExit) as error:  # one broken config must not cost the rest of the table
        return {"config": config.stem, "note": f"failed (seed {seed}): {type(error).__name__}: {error}"[:300]}
    seconds = time.perf_counter() - started
    print(f"{config.stem} seed {seed}: done in {seconds:.0f} s", flush=True)
    return figures(config, next(logs.rglob("summary.json")).parent, seconds)


def finished(config: Path, workdir: Path, seed: int) -> Path | None:
    """The folder of a finished run of ``config`` with ``seed`` in ``workdir``, if there is one."""
    found = sorted((workdir / "runs" / config.stem / f"seed_{seed}").rglob("summary.json"))
    folder = found[-1].parent if found else None
    return folder if folder and load_run(folder).summary.get("status") == "finished" else None


def figures(config: Path, folder: Path, seconds: float | None = None) -> dict:
    """A finished run's figures from its folder; ``seconds`` None: the span from its saved config to its summary."""
    if seconds is None:
        seconds = (folder / "summary.json").stat().st_mtime - (folder / "config.yaml").stat().st_mtime
    record = load_run(folder)
    summary, last = record.summary, (record.history[-1] if record.history else {})
    if "test/acc" in summary.get("test", {}):
        metric, value = "test accuracy", ("acc", summary["test"]["test/acc"])
    else:
        metric, value = "val loss", ("loss", last["val/loss"])
    others = {name: last[name] for name in sorted(last) if name.startswith("val/") and name not in STANDARD}
    return {"config": config.stem, "model x data": f"{summary['model']} x {summary['data']}", "metric": metric,
            "value": value, "more": others, "parameters": f"{summary['parameters']:,}",
            "epochs": str(summary.get("epochs", "-")), "steps": f"{last.get('step', 0):,}", "seconds": seconds,
            "data": summary["data"]}  # fmt: skip


def row(runs: list[dict | None]) -> dict[str, str]:
    """One table row from a config's runs (None: not run): each figure as mean ± std (n); a failed run makes the row a note."""
    failed = [r for r in runs if r is not None and "note" in r]
    if failed:
        return failed[0]
    runs = [r for r in runs if r is not None]
    first, n = runs[0], len(runs)
    name = first["value"][0]
    more = ", ".join(f"{metric} {cell(metric, [r['more'][metric] for r in runs])}" for metric in first["more"])
    return {**{k: v for k, v in first.items() if k in COLUMNS or k == "data"},
            "value": f"{cell(name, [r['value'][1] for r in runs])} (n={n})", "more": more or "-",
            "time": f"{statistics.fmean(r['seconds'] for r in runs):.0f} s"}  # fmt: skip


def run_all(todo: list[tuple[Path, list[str]]], options: argparse.Namespace) -> list[dict]:
    """Every (config, seed) run, config by config: ``options.jobs`` at a time in worker processes of
    ``options.threads`` threads. Seed by seed (every config's seed 0 first), so a run cut short leaves
    every config some runs. With ``--reuse`` (or ``--table_only``) finished runs in the workdir are read
    back; ``--table_only`` trains nothing (a run not found is None)."""
    runs: dict[tuple[str, int], dict | None] = {}
    tasks = []
    for seed in range(options.seeds):
        for config, arguments in todo:
            folder = finished(config, options.workdir, seed) if options.reuse or options.table_only else None
            if folder is not None or options.table_only:
                runs[config.stem, seed] = folder and figures(config, folder)
            else:
                tasks.append((config, arguments, options.workdir, options.accelerator, seed))
    if options.jobs == 1 or len(tasks) < 2:
        done = [run(*task) for task in tasks]
    else:
        context = multiprocessing.get_context("spawn")  # a fresh interpreter per worker: no torch state shared
        threads = (options.threads or 1,)
        with ProcessPoolExecutor(options.jobs, context, initializer=torch.set_num_threads, initargs=threads) as pool:
            done = list(pool.map(run, *zip(*tasks)))
    runs.update({(task[0].stem, task[4]): result for task, result in zip(tasks, done)})
    return [runs[config.stem, seed] for config, _ in todo for seed in range(options.seeds)]


def span(workdir: Path) -> float:
    """Seconds from the earliest run's saved config to the latest run's summary in ``workdir``."""
    summaries = list((workdir / "runs").glob("*/seed_*/*/summary.json"))
    if not summaries:
        return 0.0
    starts = [(p.parent / "config.yaml").stat().st_mtime for p in summaries if (p.parent / "config.yaml").exists()]
    return max(p.stat().st_mtime for p in summaries) - min(starts or [0.0])


def duration(seconds: float) -> str:
    return f"{seconds // 60:.0f} min {seconds % 60:.0f} s"


def machine(accelerator: str) -> str:
    if accelerator == "gpu" and torch.cuda.is_available():
        return torch.cuda.get_device_name(0)
    cpuinfo = Path("/proc/cpuinfo").read_text().splitlines() if Path("/proc/cpuinfo").exists() else []
    cpu = next((line.split(":", 1)[1].strip() for line in cpuinfo if line.startswith("model name")), platform.processor())
    return f"{cpu}, torch threads: {torch.get_num_threads()}, CPU capability {torch.backends.cpu.get_cpu_capability()}"


def table(rows: list[dict[str, str]], columns: list[str]) -> list[str]:
    lines = ["| " + " | ".join(columns) + " |", "|" + " --- |" * len(columns)]
    return lines + ["| " + " | ".join(row.get(c, "-") for c in columns) + " |" for row in rows if "note" not in row]


def page(rows: list[dict[str, str]], command: str, seconds: float, accelerator: str) -> str:
    """docs/results.md: the table, the data, the machine, the command and its time, and what is left out."""
    trained = [row for row in rows if "note" not in row]
    lines = ["# Results", "", "Generated by `bench/results.py`; do not edit: rerun it. Every config in `configs/` trains"
             " as shipped (its own epochs, steps and schedule) on the real data available offline, once per seed"
             " (`--seed_everything 0..n-1`).", ""]  # fmt: skip
    lines += table(trained, COLUMNS) + [""]
    lines += [f"- {NOTES[name]}." for name in sorted({row["data"] for row in trained}) if name in NOTES]
    lines += ["- value: the test accuracy of the best validation checkpoint, or the last validation loss where the data"
              " has no test split, as mean ± sample standard deviation over n runs; the seed moves initialisation,"
              " dropout, augmentation and training order, not the split, so every run is tested on the same samples;"
              " more: the run's other validation metrics, likewise; time: the whole `fit` and test, mean per run.", ""]  # fmt: skip
    lines += [f"Machine: {machine(accelerator)}; torch {torch.__version__}."]
    lines += [f"Command: `{command}`; {duration(seconds)} in all."]
    if "--table_only" in command or "--reuse" in command:
        lines += ["(Runs read back from the workdir: with `--table_only`, the time from the first run's start to the"
                  " last one's end, pauses between the commands that trained them included.)"]  # fmt: skip
    notes = [f"- `{row['config']}`: {row['note']}" for row in rows if "note" in row]
    return "\n".join(lines + (["", "Not in the table:", "", *notes] if notes else [])) + "\n"


def write_between_markers(path: Path, text: str) -> bool:
    """Replaces what lies between the results markers in ``path``; False where there are none."""
    content = path.read_text() if path.exists() else ""
    if START not in content or END not in content:
        return False
    head, rest = content.split(START, 1)
    path.write_text(f"{head}{START}\n{text}\n{END}{rest.split(END, 1)[1]}")
    return True


def cli(argv: list[str] | None = None) -> list[dict[str, str]]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", nargs="+", help="config names to run; their rows are printed, no file is written")
    parser.add_argument("--accelerator", default="cpu", choices=["cpu", "gpu"])
    parser.add_argument("--threads", type=int, help="torch CPU threads (default: torch's; 1 runs faster on a busy CPU)")
    parser.add_argument("--configs", type=Path, default=ROOT / "configs", help="the folder of configs to run")
    parser.add_argument("--shared", type=Path, default=SHARED, help="the real data folder (mnist/, tinyshakespeare/)")
    parser.add_argument("--workdir", type=Path, default=ROOT / "runs" / "results", help="data copies and run folders")
    parser.add_argument("--output", type=Path, default=ROOT / "docs" / "results.md", help="the page to rewrite")
    parser.add_argument("--readme", type=Path, default=ROOT / "README.md", help="holds the short table's markers")
    parser.add_argument("--seeds", type=int, default=3, help="runs per config, with --seed_everything 0..N-1")
    parser.add_argument("--jobs", type=int, default=1, help="runs at a time, each in its own process")
    parser.add_argument("--reuse", action="store_true", help="read finished runs in --workdir back instead of rerunning them")
    parser.add_argument("--table_only", action="store_true", help="train nothing: the tables from finished runs in --workdir")
    options = parser.parse_args(argv)
    for name in ("seeds", "jobs"):
        if getattr(options, name) < 1:
            parser.error(f"--{name} must be 1 or more, got {getattr(options, name)}")
    if options.threads:
        torch.set_num_threads(options.threads)
    configs = sorted(options.configs.glob("*.yaml"))
    unknown = set(options.only or []) - {c.stem for c in configs}
    if unknown:
        parser.error(f"no such config in {options.configs}: {', '.join(sorted(unknown))}")
    started, rows, todo = time.perf_counter(), {}, []
    for config in [c for c in configs if not options.only or c.stem in options.only]:
        arguments = plan(config, options.accelerator, options.workdir, options.shared)
        if isinstance(arguments, str):
            rows[config.stem] = {"config": config.stem, "note": arguments}
        else:
            todo.append((config, arguments))
    runs = run_all(todo, options)
    for index, (config, _) in enumerate(todo):
        found = runs[index * options.seeds : (index + 1) * options.seeds]
        if any(found):
            rows[config.stem] = row(found)
        else:
            rows[config.stem] = {"config": config.stem, "note": f"no finished run in {options.workdir} (--table_only)"}
    rows = [rows[name] for name in sorted(rows)]
    for one in rows:
        print(" | ".join(v for k, v in one.items() if k != "data"), flush=True)
    if options.only:
        print("\n".join(table(rows, COLUMNS)))
        return rows
    seconds, command = time.perf_counter() - started, " ".join(["python bench/results.py", *(argv or [])])
    if options.table_only:  # the time the runs read back took, from the first one's start to the last one's end
        seconds = span(options.workdir)
    options.output.parent.mkdir(parents=True, exist_ok=True)
    options.output.write_text(page(rows, command, seconds, options.accelerator))
    link = f"[{options.output.stem}]({os.path.relpath(options.output, options.readme.parent)})"
    short = table([{**row, "details": link} for row in rows], ["config", "model x data", "metric", "value", "details"])
    trained = sum("note" not in row for row in rows)
    short += ["", f"{trained} of {len(rows)} configs, trained as shipped in {duration(seconds)} on "
              f"{machine(options.accelerator)} by `{command}`. The others, and why: {link}."]  # fmt: skip
    write_between_markers(options.readme, "\n".join(short))
    return rows


if __name__ == "__main__":
    cli(sys.argv[1:])
