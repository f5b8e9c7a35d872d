"""What a sweep trial costs besides its training: ``(sweep wall time - sum of train_seconds) / trials``.

    python bench/sweep_speed.py --rounds 3 --trials 4
    python bench/sweep_speed.py --trials 20 --launchers fork --roots BASE .   # a change against its base

Runs ``configs/sweeps/digits_mlp_sweep.yaml`` with ``--workers 1 --no-prune`` once per launcher
(``subprocess``: a fresh Python per trial; ``fork``: a fork of a preloaded process) and checkout
(``--roots``: each sweep runs that checkout's code and config), all interleaved in every round so
that the machine's load hits them alike, each sweep in its own temporary folder; prints every
round and the medians.
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).parents[1]
sys.path.insert(0, str(ROOT))
from bench.machine import describe  # noqa: E402


def one_sweep(root: Path, launcher: str, trials: int, epochs: int) -> tuple[float, float]:
    """(wall seconds of the whole sweep command, sum of its trials' train_seconds), with ``root``'s code."""
    with tempfile.TemporaryDirectory() as folder:
        sweep = (root / "configs/sweeps/digits_mlp_sweep.yaml").read_text()
        (Path(folder) / "sweep.yaml").write_text(sweep.replace("configs/digits_mlp.yaml", str(root / "configs/digits_mlp.yaml")))
        command = [sys.executable, "-m", "lightning_app.sweep", "sweep.yaml", "--trials", str(trials), "--workers", "1",
                   "--no-prune", "--launcher", launcher, "--", f"--trainer.max_epochs={epochs}"]  # fmt: skip
        start = time.perf_counter()
        subprocess.run(command, cwd=folder, check=True, capture_output=True, env={**os.environ,
                       "PYTHONPATH": str(root), "WANDB_MODE": "offline"})  # fmt: skip
        wall = time.perf_counter() - start
        summaries = list(Path(folder).glob("runs/lightning_app/*/summary.json"))
        assert len(summaries) == trials, f"{len(summaries)} of {trials} trials wrote a summary"
        return wall, sum(json.loads(path.read_text())["train_seconds"] for path in summaries)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--trials", type=int, default=4)
    parser.add_argument("--epochs", type=int, default=20, help="the config's 20 by default")
    parser.add_argument("--launchers", nargs="+", choices=["subprocess", "fork"], default=["subprocess", "fork"])
    parser.add_argument("--roots", nargs="+", type=Path, default=[ROOT], help="checkouts whose sweep runs")
    args = parser.parse_args()
    print(describe())
    print(f"# digits_mlp_sweep --trials {args.trials} --workers 1 --no-prune, max_epochs {args.epochs}")
    print("| round | checkout | launcher | sweep wall s | sum train_seconds | fixed cost per trial s |")
    print("| --- | --- | --- | --- | --- | --- |")
    costs: dict[tuple[Path, str], list[float]] = {(root, launcher): [] for root in args.roots for launcher in args.launchers}
    walls: dict[tuple[Path, str], list[float]] = {key: [] for key in costs}
    for round_ in range(args.rounds):
        for (root, launcher), values in costs.items():
            wall, train = one_sweep(root.resolve(), launcher, args.trials, args.epochs)
            values.append((wall - train) / args.trials)
            walls[root, launcher].append(wall)
            print(f"| {round_} | {root} | {launcher} | {wall:.1f} | {train:.1f} | {values[-1]:.2f} |", flush=True)
    for (root, launcher), values in costs.items():
        print(f"median fixed cost per trial, {root}, {launcher}: {statistics.median(values):.2f} s over {len(values)} "
              f"rounds (the sweep's wall time: {statistics.median(walls[root, launcher]):.1f} s)")


if __name__ == "__main__":
    main()
