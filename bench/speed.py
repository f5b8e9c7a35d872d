"""What lightning_app's defaults cost over a plain PyTorch loop, and how fast `fit` starts.

1. One epoch of `configs/mnist_mlp.yaml` as shipped (W&B logger offline, checkpoints, progress bar,
   validation on its 10%), and the same `fit` with nothing of ours (`NOTHING`), through `python -m lightning_app fit` in its own process, against a plain
   loop in this process doing the same work on the same tensors: train on 54,000 x 28 x 28 uint8
   images (MNIST's size; random pixels, since only the time matters) by batches (index_select,
   normalise, forward, loss, backward, step with `torch.optim.Adam(params, lr=1e-3)` as a user writes
   it), then loss and accuracy over the 6,000 validation images. Our epoch is timed from its first
   batch to the end of training (validation, checkpoint writes and W&B logging included; start-up and
   the test after fit are not). Rounds alternate between the three; ratios are medians over rounds, and
   Lightning's own cost per step is the bare `fit`'s epoch less the plain loop's, over the steps.
2. Seconds from `python -m lightning_app fit --config configs/digits_mlp.yaml` to its first training
   step, against `python -c "import lightning"`, interleaved, median over rounds.
3. The whole process of that `fit` with every default (W&B offline, checkpoints, the test after fit,
   pictures), start to exit, against `python -c "import lightning"` plus the run's own
   `train_seconds` (from its summary.json): what the run costs beyond its training and Lightning's
   import. Beside it, `bench/plain_digits.py`, the same work as a plain PyTorch script, start to exit.

    python bench/speed.py [--rounds 5] [--batch-sizes 64 256 1024] [--starts 5] [--processes 5] [--args="--trainer.logger false"]

`--args` adds arguments to every `fit` (to measure what a default costs by turning it off);
`--roots A B` runs the epoch and whole-process `fit`s from each checkout in turn (a change against its base; every
checkout is timed by this one's `bench/epoch_timer.py`).
"""

import argparse
import json
import os
import re
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import lightning as L
import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.machine import describe  # noqa: E402
from tests.fakes import write_idx  # noqa: E402

# `fit` with nothing of ours: no logger, checkpoints, progress bar or pictures.
NOTHING = ["--trainer.logger", "false", "--trainer.enable_checkpointing", "false", "--trainer.enable_progress_bar", "false",
           "--pictures", "false"]  # fmt: skip
N_TRAIN, N_VAL = 54000, 6000  # configs/mnist_mlp.yaml's val_split 0.1 of 60,000


class FirstStep(L.Callback):
    """Prints the wall-clock time of the first training step and ends the process at once."""

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        print(f"FIRST_STEP {time.time()}", flush=True)
        os._exit(0)


def run(command: list[str], cwd: str, root: Path = ROOT) -> tuple[float, str]:
    """Runs ``command`` in ``cwd`` with ``root`` on the path, and this checkout's ``bench/`` after it for
    ``epoch_timer`` (W&B offline, this process's torch threads); returns the time it started and its stdout."""
    path = os.pathsep.join([str(root), str(ROOT / "bench")])
    env = {**os.environ, "PYTHONPATH": path, "WANDB_MODE": "offline", "OMP_NUM_THREADS": str(torch.get_num_threads())}
    start = time.time()
    out = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True)
    if out.returncode:
        raise RuntimeError(f"{shlex.join(command)} failed:\n{out.stderr[-3000:]}")
    return start, out.stdout


def lightning_epoch(data_dir: str, batch_size: int, extra: list[str], root: Path = ROOT) -> tuple[float, float, int]:
    """(wall, CPU) seconds and minor page faults of one epoch of ``configs/mnist_mlp.yaml`` in its own process,
    from the checkout ``root``."""
    command = [
        sys.executable, "-m", "lightning_app", "fit", "--config", str(root / "configs/mnist_mlp.yaml"),
        "--data.data_dir", data_dir, "--data.batch_size", str(batch_size), "--trainer.max_epochs", "1",
        "--trainer.callbacks+=epoch_timer.EpochTimer", *extra,
    ]  # fmt: skip
    with tempfile.TemporaryDirectory() as cwd:
        _, stdout = run(command, cwd, root)
    wall, cpu, faults = re.search(r"EPOCH_SECONDS (\S+) (\S+) (\d+)", stdout).groups()
    return float(wall), float(cpu), int(faults)


def plain_epoch(images: torch.Tensor, labels: torch.Tensor, batch_size: int) -> float:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(784, 128), nn.ReLU(), nn.Linear(128, 64), nn.ReLU(), nn.Linear(64, 10))
    optimizer = torch.optim.Adam(model.parameters(), lr=1.0e-3)
    train_images, train_labels = images[:N_TRAIN], labels[:N_TRAIN]
    val_images, val_labels = images[N_TRAIN:], labels[N_TRAIN:]
    start = time.perf_counter()
    for batch in torch.randperm(N_TRAIN).split(batch_size):
        x = (train_images.index_select(0, batch).float() / 255.0 - 0.1307) / 0.3081
        loss = F.cross_entropy(model(x), train_labels.index_select(0, batch))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    with torch.no_grad():
        correct = loss_sum = 0.0
        for x, y in zip(val_images.split(batch_size), val_labels.split(batch_size)):
            logits = model((x.float() / 255.0 - 0.1307) / 0.3081)
            loss_sum += F.cross_entropy(logits, y, reduction="sum").item()
            correct += (logits.argmax(1) == y).sum().item()
    return time.perf_counter() - start


def first_step_seconds() -> float:
    command = [sys.executable, "-m", "lightning_app", "fit", "--config", str(ROOT / "configs/digits_mlp.yaml"),
               "--trainer.callbacks+=bench.speed.FirstStep"]  # fmt: skip
    with tempfile.TemporaryDirectory() as cwd:
        start, stdout = run(command, cwd)
    return float(re.search(r"FIRST_STEP (\S+)", stdout).group(1)) - start


def import_seconds() -> float:
    start, stdout = run([sys.executable, "-c", "import time, lightning; print(time.time())"], tempfile.gettempdir())
    return float(stdout.split()[-1]) - start


def compare_epochs(rounds: int, batch_sizes: list[int], extra: list[str], roots: list[Path]) -> None:
    """Per batch size and round: the plain loop, then per checkout `fit` as shipped (with ``extra``) and `fit`
    with nothing of ours."""
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (N_TRAIN + N_VAL, 28, 28), dtype=np.uint8)
    labels = rng.integers(0, 10, N_TRAIN + N_VAL, dtype=np.uint8)
    x, y = torch.from_numpy(images).unsqueeze(1), torch.from_numpy(labels.astype(np.int64))
    plains = {b: [] for b in batch_sizes}
    times = {(b, root): ([], []) for b in batch_sizes for root in roots}
    with tempfile.TemporaryDirectory() as data_dir:
        for prefix, n in (("train", N_TRAIN + N_VAL), ("t10k", 100)):
            write_idx(Path(data_dir) / f"{prefix}-images-idx3-ubyte.gz", images[:n])
            write_idx(Path(data_dir) / f"{prefix}-labels-idx1-ubyte.gz", labels[:n])
        for round_ in range(rounds):
            for batch_size in batch_sizes:
                plains[batch_size].append(plain_epoch(x, y, batch_size))
                print(f"round {round_}, batch {batch_size}: plain {plains[batch_size][-1]:.2f} s", flush=True)
                for root in roots:
                    ours, bare = times[batch_size, root]
                    ours.append(lightning_epoch(data_dir, batch_size, extra, root.resolve()))
                    bare.append(lightning_epoch(data_dir, batch_size, NOTHING, root.resolve()))
                    print(f"  {root}: lightning_app {ours[-1][0]:.2f} s (CPU {ours[-1][1]:.2f} s, {ours[-1][2]} page "
                          f"faults), nothing of ours {bare[-1][0]:.2f} s (CPU {bare[-1][1]:.2f} s, {bare[-1][2]} page "
                          "faults)", flush=True)
    median = statistics.median
    print(f"\nOne epoch of configs/mnist_mlp.yaml (54,000 + 6,000 validation, 28 x 28), {rounds} rounds; fit {shlex.join(extra)}")
    print("| batch | checkout | plain loop | lightning_app | nothing of ours | defaults / nothing (target <= 1.05) | the same "
          "in CPU time | lightning_app / plain | Lightning's own cost per step | page faults, defaults / nothing |\n"
          "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for (batch_size, root), (ours, bare) in times.items():
        plain = plains[batch_size]
        walls = [o[0] / b[0] for o, b in zip(ours, bare)]
        cpus = [o[1] / b[1] for o, b in zip(ours, bare)]
        ours_wall, bare_wall = median(o[0] for o in ours), median(b[0] for b in bare)
        per_step = (bare_wall - median(plain)) / -(-N_TRAIN // batch_size) * 1e6
        print(f"| {batch_size} | {root} | {median(plain):.2f} s | {ours_wall:.2f} s | {bare_wall:.2f} s | "
              f"**{median(walls):.3f}** ({min(walls):.2f}-{max(walls):.2f}) | **{median(cpus):.3f}** "
              f"({min(cpus):.2f}-{max(cpus):.2f}) | {ours_wall / median(plain):.2f} | {per_step:.0f} us | "
              f"{median(o[2] for o in ours):.0f} / {median(b[2] for b in bare):.0f} |")  # fmt: skip


def compare_starts(rounds: int) -> None:
    starts, imports = [], []
    for _ in range(rounds):
        imports.append(import_seconds())
        starts.append(first_step_seconds())
    extra = [s - i for s, i in zip(starts, imports)]
    print(f"\n`import lightning` {statistics.median(imports):.2f} s, `fit --config configs/digits_mlp.yaml` to its first "
          f"step {statistics.median(starts):.2f} s: {statistics.median(extra):.2f} s more (median of {rounds}, "
          f"{min(extra):.2f}-{max(extra):.2f}; target <= 1.0 s)")  # fmt: skip


def whole_fit(root: Path, extra: list[str]) -> tuple[float, float]:
    """Seconds from start to exit of `fit --config configs/digits_mlp.yaml` run from ``root``, and its train_seconds."""
    command = [sys.executable, "-m", "lightning_app", "fit", "--config", str(ROOT / "configs/digits_mlp.yaml"), *extra]
    with tempfile.TemporaryDirectory() as cwd:
        start, _ = run(command, cwd, root)
        wall = time.time() - start
        (summary,) = Path(cwd).glob("runs/**/summary.json")
        return wall, json.loads(summary.read_text())["train_seconds"]


def compare_processes(rounds: int, roots: list[Path], extra: list[str]) -> None:
    imports, plains, fits = [], [], {root: ([], []) for root in roots}
    for round_ in range(rounds):
        imports.append(import_seconds())
        start, _ = run([sys.executable, str(ROOT / "bench/plain_digits.py")], tempfile.gettempdir())
        plains.append(time.time() - start)
        for root, (walls, trains) in fits.items():
            wall, train = whole_fit(root, extra)
            walls.append(wall)
            trains.append(train)
            print(f"round {round_}: import lightning {imports[-1]:.2f} s, plain script {plains[-1]:.2f} s, fit from {root} "
                  f"{wall:.2f} s (train_seconds {train:.2f})", flush=True)  # fmt: skip
    median = statistics.median
    print(f"\nWhole process, `fit --config configs/digits_mlp.yaml` {shlex.join(extra)}, median of {rounds} interleaved rounds")
    print(f"`python -c 'import lightning'` {median(imports):.2f} s; bench/plain_digits.py {median(plains):.2f} s")
    print("| checkout | fit, start to exit | train_seconds | beyond import + train_seconds (target <= 1.0 s) | "
          "ratio to the plain script |\n| --- | --- | --- | --- | --- |")  # fmt: skip
    for root, (walls, trains) in fits.items():
        beyond = [w - i - t for w, i, t in zip(walls, imports, trains)]
        ratios = [w / p for w, p in zip(walls, plains)]
        print(f"| {root} | {median(walls):.2f} s | {median(trains):.2f} s | **{median(beyond):.2f} s** "
              f"({min(beyond):.2f}-{max(beyond):.2f}) | {median(ratios):.2f} |")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=5, help="interleaved epoch rounds per batch size (0: none)")
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[64, 256, 1024], help="64 is the config's")
    parser.add_argument("--starts", type=int, default=5, help="interleaved start-up rounds (0: none)")
    parser.add_argument("--processes", type=int, default=5, help="interleaved whole-process rounds (0: none)")
    parser.add_argument("--roots", type=Path, nargs="+", default=[ROOT], help="checkouts the epoch and whole-process fits run from")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads(), help="torch threads, in both")
    parser.add_argument("--args", default="", help="more arguments for every `fit`, e.g. '--trainer.logger false'")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(describe())
    print("plain loop: torch.optim.Adam(model.parameters(), lr=1.0e-3), torch's default implementation for the CPU")
    if args.rounds:
        compare_epochs(args.rounds, args.batch_sizes, shlex.split(args.args), args.roots)
    if args.starts:
        compare_starts(args.starts)
    if args.processes:
        compare_processes(args.processes, args.roots, shlex.split(args.args))
    print(describe())


if __name__ == "__main__":
    main()
