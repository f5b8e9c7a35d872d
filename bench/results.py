"""Regenerates docs/results.md: every config in configs/, trained as shipped on the real data here.

    python bench/results.py                      # every config the data and the machine allow
    python bench/results.py --only mnist_mlp     # some configs: their rows printed, no file written
    python bench/results.py --accelerator gpu    # on a GPU: the configs written for one too

Each config runs ``python -m lightning_app fit --config configs/X.yaml`` in this process at its own
budget (epochs, steps, schedule, seed); only the data is pointed at ../shared/data (bench/real_data.py)
and the logger is a CSV logger. Its row comes from the run's ``summary.json``: the test accuracy of
the best validation checkpoint, or the last validation loss where the data has no test split. A config
is listed under the table, with the reason, when its data is not available offline or when it is
written for a GPU (mixed precision) and this run is on a CPU. The README's short table between
``<!-- results:start -->`` and ``<!-- results:end -->`` is rewritten too, where the markers exist.
"""

import argparse
import importlib
import os
import platform
import shutil
import sys
import time
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


def cell(name: str, value: float) -> str:
    return f"{100 * value:.2f}%" if name.endswith("acc") else f"{value:.4f}"


def run(config: Path, arguments: list[str], workdir: Path, accelerator: str) -> dict[str, str]:
    """Trains ``config`` as shipped; returns its table row (or a note saying why it failed)."""
    logs = workdir / "runs" / config.stem
    shutil.rmtree(logs, ignore_errors=True)  # a rerun replaces the previous one
    args = ["fit", "--config", str(config), *arguments, "--trainer.accelerator", accelerator]
    args += ["--trainer.logger", "lightning.pytorch.loggers.CSVLogger", "--trainer.logger.save_dir", str(logs)]
    args += ["--trainer.default_root_dir", str(logs), "--trainer.enable_progress_bar", "false"]
    started = time.perf_counter()
    try:
        main(args)
    except (Exception, SystemExit) as error:  # one broken config must not cost the rest of the table
        return {"config": config.stem, "note": f"failed: {type(error).__name__}: {error}"[:300]}
    seconds = time.perf_counter() - started
    record = load_run(next(logs.rglob("summary.json")).parent)
    summary, last = record.summary, (record.history[-1] if record.history else {})
    if "test/acc" in summary.get("test", {}):
        metric, value = "test accuracy", cell("acc", summary["test"]["test/acc"])
    else:
        metric, value = "val loss", cell("loss", last["val/loss"])
    others = sorted(name for name in last if name.startswith("val/") and name not in STANDARD)
    more = ", ".join(f"{name} {cell(name, last[name])}" for name in others)
    return {"config": config.stem, "model x data": f"{summary['model']} x {summary['data']}", "metric": metric,
            "value": value, "more": more or "-", "parameters": f"{summary['parameters']:,}",
            "epochs": str(summary.get("epochs", "-")), "steps": f"{last.get('step', 0):,}", "time": f"{seconds:.0f} s",
            "data": summary["data"]}  # fmt: skip


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
             " as shipped (its own epochs, steps, schedule and seed) on the real data available offline.", ""]  # fmt: skip
    lines += table(trained, COLUMNS) + [""]
    lines += [f"- {NOTES[name]}." for name in sorted({row["data"] for row in trained}) if name in NOTES]
    lines += ["- value: the test accuracy of the best validation checkpoint, or the last validation loss where the data"
              " has no test split; more: the run's other validation metrics; time: the whole `fit` and test.", ""]  # fmt: skip
    lines += [f"Machine: {machine(accelerator)}; torch {torch.__version__}."]
    lines += [f"Command: `{command}`; {duration(seconds)} in all."]
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
    options = parser.parse_args(argv)
    if options.threads:
        torch.set_num_threads(options.threads)
    configs = sorted(options.configs.glob("*.yaml"))
    unknown = set(options.only or []) - {c.stem for c in configs}
    if unknown:
        parser.error(f"no such config in {options.configs}: {', '.join(sorted(unknown))}")
    started, rows = time.perf_counter(), []
    for config in [c for c in configs if not options.only or c.stem in options.only]:
        arguments = plan(config, options.accelerator, options.workdir, options.shared)
        if isinstance(arguments, str):
            rows.append({"config": config.stem, "note": arguments})
        else:
            rows.append(run(config, arguments, options.workdir, options.accelerator))
        print(" | ".join(rows[-1].values()), flush=True)
    if options.only:
        print("\n".join(table(rows, COLUMNS)))
        return rows
    seconds, command = time.perf_counter() - started, " ".join(["python bench/results.py", *(argv or [])])
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
