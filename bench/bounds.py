"""The floors that this CPU's arithmetic puts under two speed targets (docs/speed.md, "What bounds").

1. ``configs/shakespeare_gpt.yaml`` against nanoGPT's CPU run (target: at most 1.0x its wall time).
   Both train the same model for the same 2,000 steps; they differ in what they validate. Ours
   scores every window of the validation text 8 times (every 250 steps), nanoGPT 20 random
   batches of 12 windows of each split 9 times (steps 0, 250, ..., 2,000). Each one's matrix
   products, counted by ``torch.utils.flop_counter`` on the model, over this CPU's float32 rate on
   the model's own shapes, give what validating costs it at best: the difference is what our run
   must win back elsewhere. Beside it, a measured whole-text pass (inference mode, batches of 64)
   and the text sample that follows each of our validations.
2. ``configs/mnist_knn.yaml`` as a whole process against the scikit-learn script (target: at most
   0.5x). A brute-force search multiplies 16,000 queries by the 54,000 memorised rows (784 pixels
   and, in ours, 2 columns for the norms): that product at this CPU's rate (bfloat16 where the CPU
   multiplies it fast, as ours does), plus ``import lightning`` in a fresh Python as every run of
   ours imports it (scipy.signal deferred), is what such a run costs at least; beside it,
   ``bench/knn.py``'s scikit-learn script on MNIST-sized files, timed in the same rounds.

    python bench/bounds.py [--rounds 3]   # about a minute a round
"""

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
from torch.utils.flop_counter import FlopCounterMode

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from bench.knn import PLAIN, write_mnist_sized  # noqa: E402
from bench.machine import describe  # noqa: E402
from datamodules.text import TINY_SHAKESPEARE_VOCAB  # noqa: E402
from lightning_app.pictures.samples import TextSamples  # noqa: E402
from modules.device_speed import bfloat16_is_fast  # noqa: E402
from modules.transformer import Transformer  # noqa: E402

TINY_SHAKESPEARE_CHARS = 1_115_394  # fixed by its MD5 (datamodules/text.py)
BLOCK, VAL_BATCH, VALIDATIONS = 64, 64, 8  # configs/shakespeare_gpt.yaml: 8 epochs, a validation after each
NANOGPT_WINDOWS = 9 * 2 * 20 * 12  # evaluations x splits x eval_iters x batch_size
KNN_QUERIES, KNN_MEMORY, KNN_COLUMNS = 16_000, 54_000, 784 + 2
# What every run of ours imports first, with what it defers (lightning_app/deferred.py) left out.
IMPORT = "from lightning_app.deferred import defer_unused_imports; defer_unused_imports(); import lightning"


def seconds(work, rounds: int) -> float:
    """The median wall time of ``work()`` over ``rounds`` calls, after one to warm up."""
    work()
    times = []
    for _ in range(rounds):
        start = time.perf_counter()
        work()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def product_rate(shapes: list[tuple[int, int, int]], dtype: torch.dtype, rounds: int) -> float:
    """Floating-point operations per second of ``(m, k) @ (k, n)`` products of ``shapes``, all together."""
    # Into outputs made once, as a search or a validation reuses its memory: a fresh one costs page faults.
    triples = [
        (torch.randn(m, k).to(dtype), torch.randn(n, k).to(dtype), torch.empty(m, n, dtype=dtype)) for m, k, n in shapes
    ]
    flops = sum(2 * m * k * n for m, k, n in shapes)
    return flops / seconds(lambda: [torch.matmul(a, b.T, out=out) for a, b, out in triples], rounds)


def validation_windows(characters: int, val_split: float = 0.1) -> int:
    """The windows of ``BLOCK`` characters that ``datamodules.Text`` tiles the validation text with."""
    n_val = characters - int(characters * (1.0 - val_split))
    return len(range(0, n_val - BLOCK, BLOCK))


def gpt_flops_per_window() -> float:
    """Floating-point operations of one forward pass of the config's GPT over one window."""
    model = Transformer(TINY_SHAKESPEARE_VOCAB, block_size=BLOCK, bias=False).eval()
    windows = torch.randint(len(TINY_SHAKESPEARE_VOCAB), (VAL_BATCH, BLOCK))
    with torch.inference_mode(), FlopCounterMode(display=False) as counter:
        model(windows)
    return counter.get_total_flops() / VAL_BATCH


def gpt_bound(rounds: int) -> None:
    model = Transformer(TINY_SHAKESPEARE_VOCAB, block_size=BLOCK, bias=False).eval()
    per_window = gpt_flops_per_window()
    rows, width = VAL_BATCH * BLOCK, model.hparams.d_model
    shapes = [(rows, width, 3 * width), (rows, width, width), (rows, width, 4 * width), (rows, 4 * width, width)]
    rate = product_rate(shapes, torch.float32, rounds)
    ours = validation_windows(TINY_SHAKESPEARE_CHARS)
    text = torch.randint(len(TINY_SHAKESPEARE_VOCAB), (ours, BLOCK))

    def one_pass() -> None:
        with torch.inference_mode():
            for batch in text.split(VAL_BATCH):
                model(batch)

    measured = seconds(one_pass, rounds)
    drawn = TextSamples()  # as the run draws it; the weights do not change what it costs
    sample = seconds(lambda: model.generate_text(drawn.prompt, drawn.length, drawn.temperature, drawn.top_k), rounds)
    floor_ours, floor_theirs = VALIDATIONS * ours * per_window / rate, NANOGPT_WINDOWS * per_window / rate
    print(f"\n## GPT (configs/shakespeare_gpt.yaml) against nanoGPT's CPU run\n"
          f"- float32 products on the model's shapes ({rows} rows): {rate / 1e9:.0f} GFLOP/s; the model: "
          f"{per_window / 1e6:.0f} MFLOP a window of {BLOCK} characters (torch.utils.flop_counter)\n"
          f"- one whole-text validation: {ours:,} windows, at least {ours * per_window / rate:.2f} s; "
          f"measured (inference mode, batches of {VAL_BATCH}): {measured:.2f} s\n"
          f"- a run's validating, at least: ours ({VALIDATIONS} x {ours:,} windows) {floor_ours:.1f} s, "
          f"nanoGPT's ({NANOGPT_WINDOWS:,} windows) {floor_theirs:.1f} s: "
          f"{floor_ours - floor_theirs:.1f} s that ours must win back elsewhere to tie\n"
          f"- beside each of ours, the text sample (TextSamples, {drawn.length} characters): {sample:.2f} s, "
          f"{VALIDATIONS * sample:.1f} s a run", flush=True)  # fmt: skip


def knn_bound(rounds: int) -> None:
    fast = bfloat16_is_fast(torch.device("cpu"))
    dtype = torch.bfloat16 if fast else torch.float32
    chunk = 1000  # queries a product: configs/mnist_knn.yaml's batches
    rate = product_rate([(chunk, KNN_COLUMNS, KNN_MEMORY)], dtype, rounds)
    search = 2 * KNN_QUERIES * KNN_COLUMNS * KNN_MEMORY / rate
    imports, scripts = [], []
    with tempfile.TemporaryDirectory() as data_dir:
        write_mnist_sized(Path(data_dir))
        for _ in range(rounds):  # interleaved: the machine's speed moves from minute to minute
            for times, command in ((imports, ["-c", IMPORT]), (scripts, ["-c", PLAIN, data_dir])):
                start = time.perf_counter()
                subprocess.run([sys.executable, *command], check=True, cwd=ROOT)
                times.append(time.perf_counter() - start)
    floor, script = statistics.median(imports) + search, statistics.median(scripts)
    print(f"\n## kNN (configs/mnist_knn.yaml), start to exit\n"
          f"- {str(dtype).removeprefix('torch.')} products of {chunk:,} queries x {KNN_MEMORY:,} rows x {KNN_COLUMNS} "
          f"columns: {rate / 1e9:.0f} GFLOP/s; {KNN_QUERIES:,} queries: {search:.2f} s\n"
          f"- `import lightning` as a run of ours imports it (scipy.signal deferred): {statistics.median(imports):.2f} s "
          f"(a fresh Python, median of {rounds})\n"
          f"- the scikit-learn script (bench/knn.py's, on MNIST-sized files): {script:.2f} s (median of {rounds})\n"
          f"- any run, at least: {floor:.2f} s, **{floor / script:.3f}x** the script (target 0.5)", flush=True)  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=3, help="timings of each measure; the median is printed")
    args = parser.parse_args()
    if args.rounds < 1:
        parser.error(f"--rounds {args.rounds}: give 1 or more")
    print(describe())
    gpt_bound(args.rounds)
    knn_bound(args.rounds)


if __name__ == "__main__":
    main()
