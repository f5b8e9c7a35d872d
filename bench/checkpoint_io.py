"""What the integrity record costs: writing and loading a checkpoint with and without it.

Writes a checkpoint of random float32 weights with Lightning's ``TorchCheckpointIO`` (temp file in
the system temp folder, then a move) and with ``AtomicCheckpointIO`` (beside the target, SHA-256
taken while writing, fsync, rename, record), then loads it with a plain ``torch.load(weights_only=True)``
and with ``load_checkpoint`` (hash, then load: mapped on Linux) the first time and again (hashed once
per process). Each load ends as a model's ``load_state_dict`` does, copying the weights into the
model's own tensor, so a mapped load pays for the pages it maps. Rounds alternate between the ways;
each figure is the median over rounds.

    python bench/checkpoint_io.py [--mb 10 170] [--rounds 5]
"""

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch
from lightning.pytorch.plugins.io import TorchCheckpointIO

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from lightning_app.checkpoints import files  # noqa: E402
from lightning_app.checkpoints import AtomicCheckpointIO, load_checkpoint  # noqa: E402


def seconds(run) -> float:
    start = time.perf_counter()
    run()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mb", type=int, nargs="+", default=[10, 170], help="checkpoint sizes in MiB")
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    print(f"torch {torch.__version__}, CPU capability {torch.backends.cpu.get_cpu_capability()}, {args.rounds} rounds")
    print("| size | Lightning save | atomic save + record | torch.load | checked load, first | checked load, again |")
    print("| --- | --- | --- | --- | --- | --- |")
    with tempfile.TemporaryDirectory() as folder:
        for mb in args.mb:
            checkpoint = {"state_dict": {"w": torch.randn(mb * 2**18)}, "global_step": 1}
            plain, atomic = Path(folder) / "plain.ckpt", Path(folder) / "atomic.ckpt"
            model = torch.empty_like(checkpoint["state_dict"]["w"])
            into_model = lambda loaded: model.copy_(loaded["state_dict"]["w"])  # noqa: E731
            times: dict[str, list[float]] = {}
            for _ in range(args.rounds):
                files._checked.clear()  # a fresh process: nothing hashed yet
                for name, run in (
                    ("lightning save", lambda: TorchCheckpointIO().save_checkpoint(checkpoint, plain)),
                    ("atomic save", lambda: AtomicCheckpointIO().save_checkpoint(checkpoint, atomic)),
                    ("torch.load", lambda: into_model(torch.load(plain, weights_only=True))),
                    ("checked first", lambda: (files._checked.clear(), into_model(load_checkpoint(atomic)))),
                    ("checked again", lambda: into_model(load_checkpoint(atomic))),
                ):
                    times.setdefault(name, []).append(seconds(run))
            cells = [f"{statistics.median(t):.3f} s" for t in times.values()]
            print(f"| {mb} MiB | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
