"""A warning when a run asks for bfloat16 on a CPU that has no fast bfloat16.

Configs written for GPUs say ``precision: bf16-mixed``. A CPU with AVX512-BF16 or AMX multiplies
bfloat16 faster than float32, but one without bfloat16 instructions emulates it: on a 2-core AMD
EPYC with AVX2 only, a bfloat16 matrix product runs at 0.4 GFLOP/s against 129 in float32, so a
run silently takes hundreds of times longer. The capability torch reports
(``torch.backends.cpu.get_cpu_capability()``) does not tell: ``AVX512`` comes with or without
BF16. So one small product in each type is timed, once per process, and only when a run asks
for bfloat16 on the CPU.
"""

import functools
import time

import lightning as L
import torch
from lightning.pytorch.accelerators import CPUAccelerator
from lightning.pytorch.utilities import rank_zero_warn

# Warn where bfloat16 is this many times slower than float32: an emulating CPU is ~300x slower,
# one with bfloat16 instructions is faster, so the threshold sits far from both.
SLOWDOWN_WARNED = 4.0
# 64 x 256 x 256, 8 MFLOP: ~20 ms in emulated bfloat16, well under 1 ms in float32.
SHAPE = (64, 256, 256)
ROUNDS = 3


@functools.cache
def bfloat16_slowdown() -> float:
    """Seconds of a bfloat16 matrix product over float32's on this CPU (the fastest of ``ROUNDS`` each)."""
    m, k, n = SHAPE
    generator = torch.Generator().manual_seed(0)
    a, b = torch.randn(m, k, generator=generator), torch.randn(k, n, generator=generator)
    pairs = {torch.float32: (a, b), torch.bfloat16: (a.bfloat16(), b.bfloat16())}
    fastest = dict.fromkeys(pairs, float("inf"))
    for _ in range(ROUNDS):  # interleaved, so a busy moment on a shared CPU spoils neither type alone
        for dtype, (x, y) in pairs.items():
            start = time.perf_counter()
            torch.matmul(x, y)
            fastest[dtype] = min(fastest[dtype], time.perf_counter() - start)
    return fastest[torch.bfloat16] / max(fastest[torch.float32], 1e-9)


def warn_if_bf16_is_slow(trainer: L.Trainer) -> None:
    """Warns (once per process) when ``trainer`` runs bfloat16 on a CPU that emulates it."""
    if not str(trainer.precision).startswith("bf16") or not isinstance(trainer.accelerator, CPUAccelerator):
        return
    slowdown = bfloat16_slowdown()
    if slowdown >= SLOWDOWN_WARNED:
        _warn(str(trainer.precision), slowdown)


@functools.cache  # once per process and precision, however many runs it starts
def _warn(precision: str, slowdown: float) -> None:
    rank_zero_warn(
        f"precision {precision} on this CPU ({torch.backends.cpu.get_cpu_capability()}): bfloat16 matrix "
        f"products run {slowdown:.0f}x slower than float32 here (no bfloat16 instructions); "
        "pass --trainer.precision 32-true"
    )
