"""kNN search speed and agreement against scikit-learn's brute force, on MNIST-sized data.

    python bench/knn.py                       # 60,000 memorised x 10,000 queries, k=3, L2, CPU
    python bench/knn.py --precision float32   # force the L2 filter's product (what an AVX2-only CPU gets)
    python bench/knn.py --batch-size 1000     # one search a batch of 1,000, as a run's test loop searches
    python bench/knn.py --device cuda         # GPU queries/second instead (no scikit-learn rounds)
    python bench/knn.py --whole-process       # `fit --config configs/mnist_knn.yaml`, start to exit
    python bench/knn.py --whole-process --roots /tmp/base .   # that `fit` from two checkouts, interleaved

`--whole-process` writes the synthetic images as MNIST's IDX files (60,000 train, 10,000 test) and
times two processes from start to exit, interleaved: `python -m lightning_app fit --config
configs/mnist_knn.yaml` with every default (54,000 memorised, 6,000 validated, 10,000 tested), and
a plain scikit-learn script doing the same search from the same files (`PLAIN`: read, normalise,
brute-force fit, predict the 16,000 queries).

The data are synthetic uint8 "images" of MNIST's size (784 pixels, 10 classes: a class-dependent
band plus noise), normalised with MNIST's mean and std and given to both libraries as the same
float32 arrays. Timing rounds interleave scikit-learn and this project's search; the ratio is
the median over rounds. The L2 filter multiplies in bfloat16 where the device does that fast,
else in float32 (``--precision auto``); the output names the CPU capability and the precision. Peak memory: the rise of the resident set (sampled every millisecond by a
thread) during one chunked search, against the budget.
"""

import argparse
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import get_args

import numpy as np
import torch

from modules.knn_l2 import MemoryIndex, Precision
from modules.knn_search import nearest_neighbours, vote

METRICS = {"l1": "manhattan", "l2": "euclidean", "cosine": "cosine"}
ROOT = Path(__file__).resolve().parents[1]
PLAIN = """
import gzip, sys, numpy as np
from sklearn.neighbors import KNeighborsClassifier
def read(name, offset):
    with gzip.open(f"{sys.argv[1]}/{name}", "rb") as f:
        return np.frombuffer(f.read(), np.uint8, offset=offset)
x = (read("train-images-idx3-ubyte.gz", 16).reshape(-1, 784).astype(np.float32) / 255 - 0.1307) / 0.3081
y = read("train-labels-idx1-ubyte.gz", 8)
test = (read("t10k-images-idx3-ubyte.gz", 16).reshape(-1, 784).astype(np.float32) / 255 - 0.1307) / 0.3081
knn = KNeighborsClassifier(3, algorithm="brute").fit(x[:54000], y[:54000])
knn.predict(np.concatenate([x[54000:], test]))
"""


def synthetic_mnist(n: int, seed: int, normalise: bool = True) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 10, n)
    images = rng.integers(0, 120, (n, 28, 28))
    for i, label in enumerate(labels):
        images[i, 2 * label + 4 : 2 * label + 9, 4:24] += 120
    if not normalise:
        return images.astype(np.uint8), labels.astype(np.uint8)
    normalised = (images.reshape(n, 784).astype(np.float32) / 255 - 0.1307) / 0.3081
    return normalised.astype(np.float32), labels


def rss_mib() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * resource.getpagesize() / 2**20


def peak_rss_rise(function) -> tuple[object, float]:
    """Runs ``function`` while a thread samples the resident set every millisecond: (result, peak rise in MiB)."""
    base, peak, done = rss_mib(), [0.0], threading.Event()

    def sample() -> None:
        while not done.is_set():
            peak[0] = max(peak[0], rss_mib() - base)
            time.sleep(0.001)

    sampler = threading.Thread(target=sample)
    sampler.start()
    try:
        return function(), peak[0]
    finally:
        done.set()
        sampler.join()


def ours(memory, labels, queries, args) -> torch.Tensor:
    """Predictions, as ``KNN`` makes them: for L2 the memory's index is built once (at fit) and kept;
    with ``--batch-size``, one search a batch, as a run's test loop searches."""
    predictions = []
    for batch in queries.split(args.batch_size or len(queries)):
        distances, indices = nearest_neighbours(batch, memory, args.k, args.distance, int(args.chunk_mb * 2**20))
        predictions.append(vote(distances, labels[indices], 10, args.weights, args.distance).argmax(1))
    return torch.cat(predictions)


def describe(memory: torch.Tensor | MemoryIndex) -> None:
    if isinstance(memory, MemoryIndex):
        print(f"L2 filter precision: {str(memory.dtype).removeprefix('torch.')}")


def write_mnist_sized(folder: Path) -> None:
    """MNIST's four IDX files in ``folder``, of MNIST's sizes (60,000 and 10,000), from ``synthetic_mnist``."""
    sys.path.insert(0, str(ROOT))
    from tests.fakes import write_idx

    for prefix, n, seed in (("train", 60000, 0), ("t10k", 10000, 1)):
        images, labels = synthetic_mnist(n, seed, normalise=False)
        write_idx(folder / f"{prefix}-images-idx3-ubyte.gz", images)
        write_idx(folder / f"{prefix}-labels-idx1-ubyte.gz", labels)


def whole_process(rounds: int, roots: list[Path]) -> None:
    """`fit --config configs/mnist_knn.yaml` from each checkout of ``roots`` against the `PLAIN` scikit-learn
    script, start to exit, interleaved."""
    with tempfile.TemporaryDirectory() as data_dir:
        write_mnist_sized(Path(data_dir))
        commands = {"scikit-learn script": (ROOT, [sys.executable, "-c", PLAIN, data_dir])}
        for given in roots:
            root = given.resolve()  # the processes run in temporary folders
            fit = [sys.executable, "-m", "lightning_app", "fit", "--config", str(root / "configs/mnist_knn.yaml")]
            commands[f"fit ({given})" if len(roots) > 1 else "fit"] = (root, [*fit, "--data.data_dir", data_dir])
        times: dict[str, list[float]] = {name: [] for name in commands}
        for _ in range(rounds):
            for name, (root, command) in commands.items():
                env = {**os.environ, "PYTHONPATH": str(root), "WANDB_MODE": "offline"}
                with tempfile.TemporaryDirectory() as cwd:
                    start = time.perf_counter()
                    subprocess.run(command, cwd=cwd, env=env, check=True, capture_output=True)
                    times[name].append(time.perf_counter() - start)
            print("  round: " + ", ".join(f"{name} {t[-1]:.2f} s" for name, t in times.items()), flush=True)
    plain = times.pop("scikit-learn script")
    print(f"start to exit, median of {rounds}: scikit-learn script {statistics.median(plain):.2f} s, "
          f"CPU capability {torch.backends.cpu.get_cpu_capability()}")
    for name, fits in times.items():
        ratios = [f / p for f, p in zip(fits, plain)]
        print(f"{name} {statistics.median(fits):.2f} s ({min(fits):.2f}-{max(fits):.2f}), median ratio "
              f"{statistics.median(ratios):.3f} ({min(ratios):.3f}-{max(ratios):.3f}; target <= 0.5)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n-memory", type=int, default=60000)
    parser.add_argument("--n-queries", type=int, default=10000)
    parser.add_argument("--k", type=int, default=3)
    parser.add_argument("--distance", choices=list(METRICS), default="l2")
    parser.add_argument("--weights", choices=["uniform", "distance"], default="uniform")
    parser.add_argument("--chunk-mb", type=float, default=256.0)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--precision", choices=get_args(Precision), default="auto", help="of the L2 filter")
    parser.add_argument("--batch-size", type=int, default=0, help="queries a search, as a run's batches (0: all at once)")
    parser.add_argument("--whole-process", action="store_true", help="time `fit` and a scikit-learn script, start to exit")
    parser.add_argument("--roots", type=Path, nargs="+", default=[ROOT], help="--whole-process: checkouts `fit` runs from")
    args = parser.parse_args()
    if args.whole_process:
        return whole_process(args.rounds, args.roots)
    x_train, y_train = synthetic_mnist(args.n_memory, seed=0)
    x_test, _ = synthetic_mnist(args.n_queries, seed=1)
    memory, labels, queries = torch.from_numpy(x_train), torch.from_numpy(y_train), torch.from_numpy(x_test)
    if args.batch_size < 0:
        parser.error(f"--batch-size {args.batch_size}: give 0 (all queries in one search) or more")
    print(f"{args.n_memory} memorised x {args.n_queries} queries x 784 (batches of {args.batch_size or args.n_queries}), "
          f"k={args.k}, {args.distance}, "
          f"{args.weights}, chunk budget {args.chunk_mb:.0f} MiB, torch threads {torch.get_num_threads()}, "
          f"CPU capability {torch.backends.cpu.get_cpu_capability()}")

    if args.device != "cpu":
        reference = ours(memory, labels, queries[:1000], args)  # the CPU search's predictions, to compare
        memory, labels, queries = memory.to(args.device), labels.to(args.device), queries.to(args.device)
        memory = MemoryIndex(memory, args.precision) if args.distance == "l2" else memory
        describe(memory)
        ours(memory, labels, queries[:1000], args)  # warm-up: kernels, allocator
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        times = []
        for _ in range(args.rounds):
            start = time.perf_counter()
            ours(memory, labels, queries, args)
            torch.cuda.synchronize()
            times.append(time.perf_counter() - start)
        data = sum(t.nbytes for t in (getattr(memory, "memory", memory), labels, queries))
        extra = (torch.cuda.max_memory_allocated() - data) / 2**20
        same = (ours(memory, labels, queries[:1000], args).cpu() == reference).float().mean().item()
        print(f"{torch.cuda.get_device_name()}: median {statistics.median(times):.3f} s, "
              f"{args.n_queries / statistics.median(times):,.0f} queries/s; peak beyond the data {extra:.0f} MiB; "
              f"predictions equal to the CPU search's on the first 1,000 queries: {same:.2%}")
        return

    memory, index_rise = peak_rss_rise(lambda: MemoryIndex(memory, args.precision) if args.distance == "l2" else memory)
    describe(memory)
    _, rise = peak_rss_rise(lambda: ours(memory, labels, queries, args))
    if args.distance == "l2":
        kept = f"a bfloat16 copy, {args.n_memory * 786 * 2 / 2**20:.0f} MiB" if memory.dtype == torch.bfloat16 else "norms"
        print(f"building the L2 index (kept: {kept}): peak RSS rise {index_rise:.0f} MiB")
    print(f"peak RSS rise during the chunked search: {rise:.0f} MiB "
          f"(budget {args.chunk_mb:.0f} MiB; the whole distance matrix would be "
          f"{args.n_memory * args.n_queries * 4 / 2**20:.0f} MiB)")

    from sklearn.neighbors import KNeighborsClassifier

    sklearn = KNeighborsClassifier(args.k, algorithm="brute", metric=METRICS[args.distance], weights=args.weights)
    sklearn.fit(x_train, y_train)
    theirs_s, ours_s, cpu_ratios = [], [], []
    for _ in range(args.rounds):
        start, cpu = time.perf_counter(), time.process_time()
        expected = sklearn.predict(x_test)
        theirs_s.append(time.perf_counter() - start)
        theirs_cpu = time.process_time() - cpu
        start, cpu, faults = time.perf_counter(), time.process_time(), resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        predictions = ours(memory, labels, queries, args).numpy()
        ours_s.append(time.perf_counter() - start)
        cpu_ratios.append((time.process_time() - cpu) / theirs_cpu)
        faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt - faults
        print(f"  round: scikit-learn {theirs_s[-1]:.2f} s, ours {ours_s[-1]:.2f} s ({faults:,} page faults), ratio "
              f"{ours_s[-1] / theirs_s[-1]:.3f} (CPU time, all threads: scikit-learn {theirs_cpu:.1f} s, ratio "
              f"{cpu_ratios[-1]:.3f})", flush=True)

    differ = np.flatnonzero(predictions != expected)
    # A disagreement is a tie when the k-th and (k+1)-th neighbours (float64) are as good as equal
    # or the vote itself is tied: then either answer follows the rules, only the tie-break differs.
    distances, _ = sklearn.kneighbors(x_test[differ], args.k + 1) if len(differ) else (np.zeros((0, args.k + 1)), None)
    boundary_tie = np.isclose(distances[:, -2], distances[:, -1], rtol=1e-5)
    probabilities = sklearn.predict_proba(x_test[differ]) if len(differ) else np.zeros((0, 10))
    vote_tie = (probabilities == probabilities.max(1, keepdims=True)).sum(1) > 1
    ties = int((boundary_tie | vote_tie).sum())
    print(f"agreement {1 - len(differ) / len(expected):.4%}: {len(differ)} of {len(expected)} predictions differ, "
          f"{ties} of them at a tie (equal k-th/(k+1)-th distance or equal votes), {len(differ) - ties} otherwise")
    print(f"median time: scikit-learn {statistics.median(theirs_s):.2f} s, ours {statistics.median(ours_s):.2f} s, "
          f"median ratio ours/scikit-learn {statistics.median(o / t for o, t in zip(ours_s, theirs_s)):.3f} "
          f"(CPU-time ratio {statistics.median(cpu_ratios):.3f})")


if __name__ == "__main__":
    main()
