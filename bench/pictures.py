"""The pictures of docs/pictures.md, made from real data, and what the pictures cost a run.

    python bench/pictures.py                 # every picture into docs/pictures/ (about 3 minutes on 2 CPU cores)
    python bench/pictures.py --only mnist_knn --out /tmp/pictures
    python bench/pictures.py --speed 5       # fit of configs/mnist_mlp.yaml with and without pictures, 5 rounds

Pictures: each config below runs as shipped (its own epochs and steps) through
``python -m lightning_app fit`` in this process, on the real MNIST 8,000 / 2,000 split of the
MNIST test set (``bench/real_data.py``) or on Tiny Shakespeare, both from ``--shared``; the PNG
files it writes into its run folder are copied to ``--out``. Then ``python -m lightning_app.compare
--plot`` draws the MLP's and the CNN's confusion matrices side by side.

Speed: the default ``fit`` of ``configs/mnist_mlp.yaml`` (10 epochs, W&B offline, test after fit)
on MNIST-sized data (60,000 + 10,000 learnable fake digits, 5% of them mislabelled so that there
are mistakes to draw: the real training set is not here), with the default pictures and with
``--pictures false``, alternating which goes first, in this process: the median of the per-round
time ratios, in wall time and in the process's CPU time. On a shared machine these move with the
load, so each run with pictures is also measured against itself: its time less the time spent
inside the picture callbacks' hooks (wall, and the main thread's CPU time).
"""

import argparse
import csv
import functools
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path[:0] = [str(Path(__file__).parent), str(Path(__file__).parents[1])]
from real_data import SHARED, write_mnist_split  # noqa: E402

from lightning_app import compare  # noqa: E402
from lightning_app.cli import main as cli  # noqa: E402
from lightning_app.pictures.defaults import KINDS  # noqa: E402
from tests.fakes import learnable_images, write_idx  # noqa: E402

ROOT = Path(__file__).parents[1]
# config -> the pictures of its run that the docs show
PICTURES = {
    "mnist_mlp": ["test/confusion_matrix", "test/per_class_accuracy", "test/misclassified"],
    "mnist_cnn": ["filters/conv1"],  # its confusion matrix: beside the MLP's, drawn by compare
    "mnist_vit": ["attention/layer0", "attention/layer3"],
    "mnist_knn": ["knn/neighbours"],
    "shakespeare_gpt": ["attention/layer0", "attention/layer3", "samples/text"],
}
TABLES = {"mnist_cnn": ["filters/feature_maps"]}  # config -> the tables of its run that the docs show, printed
CSV_LOGGER = ["--trainer.logger", "lightning.pytorch.loggers.CSVLogger", "--trainer.logger.init_args.save_dir"]


def fit(config: str, root: Path, data: list[str], *extra: str) -> float:
    """Runs ``fit`` of ``configs/<config>.yaml``; its wall time in seconds."""
    start = time.perf_counter()
    cli(["fit", "--config", str(ROOT / "configs" / f"{config}.yaml"), *data, "--trainer.enable_progress_bar", "false",
          "--trainer.default_root_dir", str(root), *extra])  # fmt: skip
    return time.perf_counter() - start


def markdown(path: Path) -> str:
    with open(path, newline="") as file:
        header, *rows = csv.reader(file)
    return "\n".join("| " + " | ".join(row) + " |" for row in [header, ["---"] * len(header), *rows])


def make_pictures(configs: list[str], shared: Path, out: Path, work: Path) -> None:
    mnist = ["--data.data_dir", str(write_mnist_split(work / "mnist", shared))]
    text = ["--data.path", str(shared / "tinyshakespeare" / "input.txt")]
    out.mkdir(parents=True, exist_ok=True)
    folders = {}
    for config in configs:
        data = text if config.startswith("shakespeare") else mnist
        seconds = fit(config, work / config, data, *CSV_LOGGER, str(work / config))
        folders[config] = next((work / config).rglob("summary.json")).parent  # the run folder
        for key in PICTURES[config]:
            target = out / f"{config}_{key.replace('/', '_')}.png"
            shutil.copyfile(folders[config] / "pictures" / f"{key}.png", target)
            print(f"{target} ({target.stat().st_size // 1024} KiB)")
        for key in TABLES.get(config, []):
            print(markdown(folders[config] / "pictures" / f"{key}.csv"))
        print(f"{config}: fit in {seconds:.0f} s: python -m lightning_app fit --config configs/{config}.yaml", flush=True)
    if {"mnist_mlp", "mnist_cnn"} <= set(folders):
        compare.main([str(folders["mnist_mlp"]), str(folders["mnist_cnn"]), "--plot", str(work / "curves.png")])
        shutil.copyfile(work / "curves_confusion.png", out / "compare_confusion.png")


def timed_hooks() -> dict[str, float]:
    """Makes every hook of the picture callbacks (and the classifier's forward hook) add its wall and
    CPU time to ``spent``."""
    spent = {"wall": 0.0, "cpu": 0.0}

    def timed(method):
        @functools.wraps(method)
        def wrapper(*args, **kwargs):
            wall, cpu = time.perf_counter(), time.thread_time()
            try:
                return method(*args, **kwargs)
            finally:
                spent["wall"] += time.perf_counter() - wall
                spent["cpu"] += time.thread_time() - cpu

        return wrapper

    for kind in KINDS.values():
        for name, method in list(vars(kind).items()):
            if callable(method) and (name.startswith("on_") or name == "_capture"):
                setattr(kind, name, timed(method))
    return spent


def speed(rounds: int, work: Path) -> None:
    for prefix, n, seed in (("train", 60000, 0), ("t10k", 10000, 1)):
        images, labels = learnable_images(n, seed=seed)
        wrong = np.random.default_rng(seed).random(n) < 0.05  # 5% of the labels changed: mistakes to draw
        labels[wrong] = (labels[wrong] + 1) % 10
        write_idx(work / "mnist" / f"{prefix}-images-idx3-ubyte.gz", images)
        write_idx(work / "mnist" / f"{prefix}-labels-idx1-ubyte.gz", labels)
    data = ["--data.data_dir", str(work / "mnist")]
    spent = timed_hooks()
    ratios: dict[str, list[float]] = {"wall": [], "cpu": [], "wall in run": [], "cpu in run": []}
    for i in range(rounds):
        wall, cpu, inside = {}, {}, {}
        for on in [True, False] if i % 2 == 0 else [False, True]:
            spent.update(wall=0.0, cpu=0.0)
            start = time.process_time()
            root = work / f"runs{i}{on}"  # W&B's files too, not ./runs
            logs = ["--trainer.logger.init_args.save_dir", str(root)]
            wall[on] = fit("mnist_mlp", root, data, "--pictures", str(on).lower(), *logs)
            cpu[on], inside[on] = time.process_time() - start, dict(spent)
        ratios["wall"].append(wall[True] / wall[False])
        ratios["cpu"].append(cpu[True] / cpu[False])
        ratios["wall in run"].append(wall[True] / (wall[True] - inside[True]["wall"]))
        ratios["cpu in run"].append(cpu[True] / (cpu[True] - inside[True]["cpu"]))
        print(f"round {i}: with pictures {wall[True]:.1f} s wall, {cpu[True]:.1f} s CPU (in the picture callbacks "
              f"{inside[True]['wall']:.2f} s wall, {inside[True]['cpu']:.2f} s CPU); without {wall[False]:.1f} s wall, "
              f"{cpu[False]:.1f} s CPU (load average {os.getloadavg()[0]:.1f})", flush=True)  # fmt: skip
    print(f"\nfit of configs/mnist_mlp.yaml, 60,000 + 10,000 images, {rounds} rounds, time with pictures / without:")
    for name, values in ratios.items():
        print(f"  {name}: median {statistics.median(values):.4f} ({min(values):.4f}-{max(values):.4f})")
    print("budget: 1.05; 'in run': the run with pictures against itself less the time inside the picture callbacks")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", nargs="+", choices=list(PICTURES), default=list(PICTURES), help="configs to run")
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "pictures", help="folder for the PNG files")
    parser.add_argument("--shared", type=Path, default=SHARED, help="the real-data folder (mnist/, tinyshakespeare/)")
    parser.add_argument("--speed", type=int, metavar="ROUNDS", help="measure the cost of the pictures instead")
    args = parser.parse_args()
    os.environ.setdefault("WANDB_MODE", "offline")
    with tempfile.TemporaryDirectory() as work:
        if args.speed:
            speed(args.speed, Path(work))
        else:
            make_pictures(args.only, args.shared, args.out, Path(work))
    print(f"machine: {os.cpu_count()} CPU cores, {torch.backends.cpu.get_cpu_capability()}, torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads")  # fmt: skip


if __name__ == "__main__":
    main()
