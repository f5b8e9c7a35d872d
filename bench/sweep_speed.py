"""What a sweep trial costs besides its training: ``(sweep wall time - sum of train_seconds) / trials``.

    python bench/sweep_speed.py --rounds 3 --trials 4

Runs ``configs/sweeps/digits_mlp_sweep.yaml`` with ``--workers 1 --no-prune`` once per launcher
(``subprocess``: a fresh Python per trial; ``fork``: a fork of a preloaded process), the two
interleaved in every round so that the machine's load hits both alike, each sweep in its own
temporary folder; prints every round and the medians.
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


def one_sweep(launcher: str, trials: int, epochs: int) -> tuple[float, float]:
    """(wall seconds of the whole sweep command, sum of its trials' train_seconds)."""
    with tempfile.TemporaryDirectory() as folder:
        sweep = (ROOT / "configs/sweeps/digits_mlp_sweep.yaml").read_text()
        (Path(folder) / "sweep.yaml").write_text(sweep.replace("configs/digits_mlp.yaml", str(ROOT / "configs/digits_mlp.yaml")))
        command = [sys.executable, "-m", "lightning_app.sweep", "sweep.yaml", "--trials", str(trials), "--workers", "1",
                   "--no-prune", "--launcher", launcher, "--", f"--trainer.max_epochs={epochs}"]  # fmt: skip
        start = time.perf_counter()
        subprocess.run(command, cwd=folder, check=True, capture_output=True, env={**os.environ,
                       "PYTHONPATH": str(ROOT), "WANDB_MODE": "offline"})  # fmt: skip
        wall = time.perf_counter() - start
        summaries = list(Path(folder).glob("runs/lightning_app/*/summary.json"))
        assert len(summaries) == trials, f"{len(summaries)} of {trials} trials wrote a summary"
        return wall, sum(json.loads(path.read_text())["train_seconds"] for path in summaries)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--trials", type=int, default=4)
    parser.add_argument("--epochs", type=int, default=20, help="the config's 20 by default")
    args = parser.parse_args()
    print(describe())
    print(f"# digits_mlp_sweep --trials {args.trials} --workers 1 --no-prune, max_epochs {args.epochs}")
    print("| round | launcher | sweep wall s | sum train_seconds | fixed cost per trial s |")
    print("| --- | --- | --- | --- | --- |")
    costs: dict[str, list[float]] = {"subprocess": [], "fork": []}
    for round_ in range(args.rounds):
        for launcher in costs:
            wall, train = one_sweep(launcher, args.trials, args.epochs)
            costs[launcher].append((wall - train) / args.trials)
            print(f"| {round_} | {launcher} | {wall:.1f} | {train:.1f} | {costs[launcher][-1]:.2f} |", flush=True)
    for launcher, values in costs.items():
        print(f"median fixed cost per trial, {launcher}: {statistics.median(values):.2f} s over {len(values)} rounds")


if __name__ == "__main__":
    main()
