"""What a progress bar costs per training step: `TimedProgressBar` against Lightning's `TQDMProgressBar`.

A model small enough that Lightning's loop is most of its step (one 32 x 32 linear layer, batch 32)
trains `--steps` steps with each bar, and with none, in this process; rounds alternate between the
bars. A bar's cost per step is its fastest epoch less the fastest bar-less one, over the steps (a
shared machine's load only ever adds time, so the fastest round is the least disturbed). The
bars draw into /dev/null, so the terminal's own speed is left out. `TQDMProgressBar(refresh_rate=N)`
redraws every N steps; `TimedProgressBar` every 0.5 s, whatever a step takes.

    python bench/progress_bar.py [--steps 3000] [--rounds 5] [--refresh-rates 1 20 1000]
"""

import argparse
import contextlib
import os
import statistics
import sys
import time
from pathlib import Path

import lightning as L
import torch
from lightning.pytorch.callbacks import TQDMProgressBar
from torch import nn
from torch.utils.data import DataLoader

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.machine import describe  # noqa: E402
from lightning_app.defaults import TimedProgressBar  # noqa: E402


class Tiny(L.LightningModule):
    def __init__(self) -> None:
        super().__init__()
        self.layer = nn.Linear(32, 32)

    def training_step(self, batch: torch.Tensor, batch_idx: int) -> torch.Tensor:
        return self.layer(batch).square().mean()

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.SGD(self.parameters(), lr=0.01)


def epoch_seconds(bar: L.Callback | None, batches: DataLoader) -> float:
    """Seconds of one epoch over ``batches`` with ``bar`` (None: no bar)."""
    trainer = L.Trainer(
        max_epochs=1, logger=False, enable_checkpointing=False, enable_model_summary=False, accelerator="cpu",
        enable_progress_bar=bar is not None, callbacks=[bar] if bar is not None else [],
    )  # fmt: skip
    with open(os.devnull, "w") as sink, contextlib.redirect_stdout(sink), contextlib.redirect_stderr(sink):
        start = time.perf_counter()
        trainer.fit(Tiny(), train_dataloaders=batches)
        return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=3000, help="training steps per epoch")
    parser.add_argument("--rounds", type=int, default=5, help="interleaved rounds")
    parser.add_argument("--refresh-rates", type=int, nargs="+", default=[1, 20, 1000], help="TQDMProgressBar's")
    args = parser.parse_args()
    print(describe())
    batches = DataLoader(torch.randn(args.steps * 32, 32), batch_size=32)
    bars = {"none": lambda: None, "TimedProgressBar()": TimedProgressBar}
    bars |= {f"TQDMProgressBar(refresh_rate={n})": lambda n=n: TQDMProgressBar(refresh_rate=n) for n in args.refresh_rates}
    times: dict[str, list[float]] = {name: [] for name in bars}
    epoch_seconds(None, batches)  # warm-up
    for _ in range(args.rounds):
        for name, make in bars.items():
            times[name].append(epoch_seconds(make(), batches))
    bare = min(times["none"])
    print(f"\n{args.steps} steps, {args.rounds} interleaved rounds; a step without a bar: {bare / args.steps * 1e6:.0f} us")
    print("| bar | fastest epoch | median epoch | cost per step |\n| --- | --- | --- | --- |")
    for name, seconds in times.items():
        cost = (min(seconds) - bare) / args.steps * 1e6
        print(f"| {name} | {min(seconds):.3f} s | {statistics.median(seconds):.3f} s | {cost:+.1f} us |")


if __name__ == "__main__":
    main()
