"""What the validation batch costs a language model: one whole-text validation of the GPT of
``configs/shakespeare_gpt.yaml`` (untrained) on Tiny Shakespeare, at ``val_batch_size`` 256 (the
default) against the training batch of 12, interleaved; prints the seconds and the losses.

    python bench/val_batch.py --path ../shared/data/tinyshakespeare/input.txt --rounds 2
"""

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

from lightning.pytorch.callbacks import Callback

ROOT = Path(__file__).parents[1]
sys.path.insert(0, str(ROOT))
from bench.machine import describe  # noqa: E402
from lightning_app.cli import main as cli  # noqa: E402


class Clock(Callback):
    """The wall seconds from the validation's start to its end."""

    def on_validation_start(self, trainer, pl_module) -> None:
        self.start = time.perf_counter()

    def on_validation_end(self, trainer, pl_module) -> None:
        self.seconds = time.perf_counter() - self.start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--path", required=True, help="Tiny Shakespeare's input.txt")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--batches", type=int, nargs="+", default=[256, 12])
    args = parser.parse_args()
    print(describe())
    times: dict[int, list[float]] = {batch: [] for batch in args.batches}
    for round_ in range(args.rounds):
        for batch in args.batches:
            with tempfile.TemporaryDirectory() as folder:
                start = time.perf_counter()
                run = cli(["validate", "--config", str(ROOT / "configs/shakespeare_gpt.yaml"), "--data.path", args.path,
                           "--data.val_batch_size", str(batch), "--trainer.logger", "false", "--pictures", "false",
                           "--trainer.enable_progress_bar", "false", "--trainer.enable_model_summary", "false",
                           "--trainer.default_root_dir", folder, "--trainer.callbacks+=bench.val_batch.Clock"])  # fmt: skip
                (clock,) = [c for c in run.trainer.callbacks if type(c).__name__ == "Clock"]  # bench.val_batch.Clock, not __main__.Clock
            times[batch].append(clock.seconds)
            loss = run.trainer.callback_metrics["val/loss"].item()
            print(f"round {round_}, val_batch_size {batch}: {clock.seconds:.2f} s, val/loss {loss:.6f}", flush=True)
    for batch, values in times.items():
        print(f"val_batch_size {batch}: median {statistics.median(values):.2f} s over {len(values)} rounds")


if __name__ == "__main__":
    main()
