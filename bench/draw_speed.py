"""Seconds to draw and encode each kind of picture, one checkout against another.

    python bench/draw_speed.py --rounds 5                       # this checkout
    python bench/draw_speed.py --rounds 5 --roots ../before .   # two checkouts, interleaved

Each picture is drawn from fixed random data at the size a shipped config gives it (attention maps
of nanoGPT's CPU GPT: 4 heads x 32 characters; a ViT's 4 heads over a 32 x 32 image; the 10-class
confusion matrix and per-class accuracy of a trained classifier: the diagonal and 15 mistakes)
and written as a PNG into memory, in a fresh process per checkout and round (``python -c``, the
checkout first on ``sys.path``); the table gives the median over rounds of each process's fastest
of 3 draws.
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench.machine import describe  # noqa: E402

DRAW = """
import io, json, time
import numpy as np, torch
from lightning_app.pictures.attention import draw_patches, draw_tokens
from lightning_app.pictures.confusion import draw_confusion, draw_per_class
from modules.vit import ViT

def seconds(make):
    best = float("inf")
    for _ in range(3):
        start = time.perf_counter()
        make().savefig(io.BytesIO(), format="png", dpi=100)
        best = min(best, time.perf_counter() - start)
    return best

torch.manual_seed(0)
rng = np.random.default_rng(0)
weights = torch.rand(4, 32, 32).tril().softmax(-1)
labels = list("First Citizen:\\nBefore we proceed")[:32]
vit = ViT(input_shape=(3, 32, 32), patch_size=4, num_layers=1, nhead=4, d_model=32)
received = torch.rand(4, 65, 65).softmax(-1)
image = torch.rand(1, 3, 32, 32)
matrix = np.diag(rng.integers(30, 40, 10))  # a trained classifier's: the diagonal and 15 mistakes
np.add.at(matrix, (rng.integers(0, 10, 15), rng.integers(0, 10, 15)), 1)
names = [str(i) for i in range(10)]
print(json.dumps({
    "attention maps, 4 heads x 32 characters": seconds(lambda: draw_tokens(weights, labels, "layer 0")),
    "attention over an image, 4 heads": seconds(lambda: draw_patches(received, vit, image, (None, None), "layer 0")),
    "confusion matrix, 10 classes, 15 mistakes": seconds(lambda: draw_confusion(matrix, names, "test")),
    "per-class accuracy, 10 classes": seconds(lambda: draw_per_class(matrix, names, "test")),
}))
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=5, help="fresh processes per checkout, interleaved")
    parser.add_argument("--roots", type=Path, nargs="+", default=[Path(__file__).resolve().parents[1]], help="checkouts")
    args = parser.parse_args()
    times: dict[Path, list[dict[str, float]]] = {root: [] for root in args.roots}
    for _ in range(args.rounds):
        for root in args.roots:
            env = {**os.environ, "PYTHONPATH": str(root.resolve())}
            out = subprocess.run([sys.executable, "-c", DRAW], env=env, cwd=root, capture_output=True, text=True, check=True)
            times[root].append(json.loads(out.stdout.splitlines()[-1]))
    kinds = list(times[args.roots[0]][0])
    print(f"\nSeconds to draw and encode one PNG, median of {args.rounds} processes (each its fastest of 3)")
    print("| picture | " + " | ".join(str(root) for root in args.roots) + " |")
    print("| --- |" + " --- |" * len(args.roots))
    for kind in kinds:
        print(f"| {kind} | " + " | ".join(f"{statistics.median(r[kind] for r in times[root]):.3f} s" for root in args.roots) + " |")
    print(describe("cpu"))


if __name__ == "__main__":
    main()
