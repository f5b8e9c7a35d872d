"""Regenerates the README's results table: every shipped config, trained on the real data here.

    python bench/results.py                      # every entry, CPU epoch caps, rewrites README.md
    python bench/results.py --only digits_mlp mnist_mlp --readme -     # a few, table printed only
    python bench/results.py --accelerator gpu --full --shared DIR      # the configs' own epochs and steps

Data: Digits (scikit-learn), the real MNIST test set split 8,000 train+val / 2,000 test
(``real_data.write_mnist_split``), Tiny Shakespeare; CIFAR is not available offline. Each entry
runs ``python -m lightning_app fit`` in this process with a CSV logger, and reads the run's
``summary.json``. The table goes between ``<!-- results:start -->`` and ``<!-- results:end -->``.
To add a config, add one ``Experiment`` line; a config missing on this branch is skipped with a note.
"""

import argparse
import platform
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import torch

sys.path[:0] = [str(Path(__file__).parent), str(Path(__file__).parents[1])]
from real_data import SHARED, write_mnist_split  # noqa: E402

from lightning_app.cli import main  # noqa: E402
from lightning_app.compare import load_run  # noqa: E402

ROOT = Path(__file__).parents[1]
TEXT_CPU = ("--data.init_args.batches_per_epoch", "100")
START, END = "<!-- results:start -->", "<!-- results:end -->"


@dataclass
class Experiment:
    config: str  # configs/<config>.yaml
    data: str  # digits | mnist | shakespeare | cifar10 | cifar100
    epochs: int | None = None  # cap for the default CPU run; None keeps the config's max_epochs
    cpu_args: tuple[str, ...] = ()  # further caps for the default CPU run, dropped by --full
    gpu_only: str = ""  # why the default CPU run skips it; --full runs it


EXPERIMENTS = [
    Experiment("digits_mlp", "digits"),
    Experiment("digits_knn", "digits"),
    Experiment("digits_mlp_feature_knn", "digits"),
    Experiment("mnist_linear", "mnist", epochs=5),
    Experiment("mnist_mlp", "mnist", epochs=5),
    Experiment("mnist_knn", "mnist"),
    Experiment("mnist_cnn", "mnist", epochs=3),
    Experiment("mnist_vit", "mnist", epochs=5),
    # 100 steps instead of 2,000 on the CPU: a GPT step takes about a second on 2 shared cores.
    Experiment("shakespeare_rnn", "shakespeare", epochs=1, cpu_args=TEXT_CPU),
    Experiment("shakespeare_lstm", "shakespeare", epochs=1, cpu_args=TEXT_CPU),
    Experiment("shakespeare_gru", "shakespeare", epochs=1, cpu_args=TEXT_CPU),
    Experiment("shakespeare_gpt", "shakespeare", epochs=1, cpu_args=TEXT_CPU),
    Experiment("shakespeare_gpt_gpu", "shakespeare", gpu_only="10.7M parameters, 5,000 steps: bench/shakespeare.py --accelerator gpu"),
    Experiment("cifar10_linear", "cifar10"),
    Experiment("cifar10_mlp", "cifar10"),
    Experiment("cifar10_cnn", "cifar10"),
    Experiment("cifar10_resnet", "cifar10"),
    Experiment("cifar10_knn", "cifar10"),
    Experiment("cifar10_vit", "cifar10"),
    Experiment("cifar100_resnet", "cifar100"),
]
DATA_NOTES = {
    "digits": "Digits: scikit-learn's 1,797 8x8 digits, 20% test",
    "mnist": "MNIST: the real test set's first 8,000 images train and validate, its last 2,000 test",
    "shakespeare": "Tiny Shakespeare: first 90% trains, last 10% validates (loss in nats per character)",
}


def data_args(data: str, workdir: Path, shared: Path = SHARED) -> list[str] | str:
    """The overrides that point a config at the real data here, or why it cannot run."""
    if data == "mnist":
        folder = workdir / "mnist"
        if not (folder / "t10k-labels-idx1-ubyte.gz").exists():
            write_mnist_split(folder, shared)
        return ["--data.init_args.data_dir", str(folder)]
    if data == "shakespeare":
        return ["--data.init_args.path", str(shared / "tinyshakespeare" / "input.txt")]
    if data == "digits":
        return []
    return f"no {data} data offline"


def run(
    experiment: Experiment, workdir: Path, full: bool, accelerator: str, shared: Path = SHARED, precision: str | None = None
) -> dict:
    """Trains one experiment; returns its table row as a dict (or a skip note)."""
    config = ROOT / "configs" / f"{experiment.config}.yaml"
    row = {"config": experiment.config}
    try:
        extra = data_args(experiment.data, workdir, shared)
    except (OSError, ValueError) as error:  # the real data is missing or not what real_data.py expects
        return {**row, "note": f"no data: {error}"}
    if not config.exists() or isinstance(extra, str):
        return {**row, "note": "config not on this branch" if not config.exists() else extra}
    if experiment.gpu_only and not full:
        return {**row, "note": f"{experiment.gpu_only}: run it with --full (on a GPU: --accelerator gpu --full)"}
    logs = workdir / "runs" / experiment.config
    args = ["fit", "--config", str(config), *extra, "--trainer.accelerator", accelerator]
    args += ["--trainer.logger", "lightning.pytorch.loggers.CSVLogger", "--trainer.logger.save_dir", str(logs)]
    args += ["--trainer.enable_progress_bar", "false", *(["--trainer.precision", precision] if precision else [])]
    if not full:
        args += [*(["--trainer.max_epochs", str(experiment.epochs)] if experiment.epochs else []), *experiment.cpu_args]
    started = time.perf_counter()
    try:
        main(args)
    except (Exception, SystemExit) as error:  # one broken config must not cost the rest of the table
        return {**row, "note": f"failed: {type(error).__name__}: {error}"[:200]}
    wall = time.perf_counter() - started
    folder = max(logs.rglob("summary.json"), key=lambda p: p.stat().st_mtime).parent
    summary, history = load_run(folder).summary, load_run(folder).history
    if "test/acc" in summary.get("test", {}):
        metric, value = "test accuracy", f"{100 * summary['test']['test/acc']:.2f}%"
    elif history and "val/loss" in history[-1]:
        metric, value = "val loss", f"{history[-1]['val/loss']:.4f}"
    else:
        metric, value = "-", "-"
    model_data = f"{summary['model']} x {summary['data']}"
    return {**row, "model x data": model_data, "metric": metric, "value": value, "parameters": f"{summary['parameters']:,}",
            "epochs": str(summary.get("epochs", "-")), "steps": str(history[-1]["step"] if history else "-"),
            "wall time": f"{wall:.0f} s"}  # fmt: skip


def machine(accelerator: str) -> str:
    if accelerator == "gpu" and torch.cuda.is_available():
        return torch.cuda.get_device_name(0)
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor())  # fmt: skip
    return f"{cpu}, {torch.get_num_threads()} threads"


def markdown(rows: list[dict], command: str, accelerator: str) -> str:
    columns = ["model x data", "config", "metric", "value", "parameters", "epochs", "steps", "wall time"]
    lines = ["| " + " | ".join(columns) + " |", "|" + " --- |" * len(columns)]
    lines += ["| " + " | ".join(row.get(c, "-") for c in columns) + " |" for row in rows if "note" not in row]
    notes = [f"- `{row['config']}`: {row['note']}" for row in rows if "note" in row]
    data = sorted({e.data for e in EXPERIMENTS if e.config in {row["config"] for row in rows if "note" not in row}})
    footer = [f"Machine: {machine(accelerator)}; torch {torch.__version__}; `{command}`.", ""]
    footer += [f"- {DATA_NOTES[d]}." for d in data]
    return "\n".join(lines + [""] + footer + (["", "Not in the table:", ""] + notes if notes else []))


def write_between_markers(path: Path, table: str) -> None:
    text = path.read_text()
    if START not in text or END not in text:
        raise SystemExit(f"{path} has no `{START}` ... `{END}` markers: add them where the table belongs")
    head, rest = text.split(START, 1)
    path.write_text(f"{head}{START}\n{table}\n{END}{rest.split(END, 1)[1]}")


def cli(argv: list[str] | None = None) -> str:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", nargs="+", help="config names to run (default: every entry)")
    parser.add_argument("--full", action="store_true", help="the configs' own epochs instead of the CPU caps")
    parser.add_argument("--accelerator", default="cpu", help="cpu or gpu")
    parser.add_argument("--precision", help="override every config's precision: bf16-mixed, 16-mixed, 32-true")
    parser.add_argument("--shared", type=Path, default=SHARED, help="the real data folder (mnist/, tinyshakespeare/)")
    parser.add_argument("--workdir", type=Path, default=ROOT / "runs" / "results", help="data copies and run folders")
    parser.add_argument("--readme", default=str(ROOT / "README.md"), help="file to rewrite between the markers; - prints")
    options = parser.parse_args(argv)
    chosen = [e for e in EXPERIMENTS if not options.only or e.config in options.only]
    rows = [run(e, options.workdir, options.full, options.accelerator, options.shared, options.precision) for e in chosen]
    command = "python bench/results.py" + (f" {' '.join(argv)}" if argv else "")
    table = markdown(rows, command, options.accelerator)
    print(table)
    if options.readme != "-":
        write_between_markers(Path(options.readme), table)
    return table


if __name__ == "__main__":
    cli(sys.argv[1:])
