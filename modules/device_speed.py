"""Whether a device multiplies bfloat16 matrices fast, measured once per device.

CPUs with AVX512-BF16 or AMX, and recent GPUs, multiply bfloat16 2-10x faster than float32;
an AVX2-only CPU has no bfloat16 instructions and emulates them, up to ~300x slower (0.4
against 129 GFLOP/s on a 2-core AMD EPYC). The CPU's instruction set alone does not tell:
``torch.backends.cpu.get_cpu_capability()`` says ``AVX512`` with or without BF16, so where it
allows bfloat16 at all, one small product in each type is timed.
"""

import time

import torch

# A capability whose CPUs lack bfloat16 instructions: no product worth timing.
NO_BFLOAT16 = ("DEFAULT", "NO AVX", "AVX2")
# The bfloat16 filter is taken where its product is at least this much faster than float32's:
# below it, the float32 second pass that hard data can need would eat the gain.
SPEEDUP_NEEDED = 1.5
# 256 x 512 x 1024, 0.27 GFLOP: ~2 ms in float32 on one CPU core, long enough to time.
SHAPE = (256, 512, 1024)
ROUNDS = 5

_measured: dict[tuple[str, int | None], bool] = {}


def _seconds(a: torch.Tensor, b: torch.Tensor) -> float:
    """Wall time of one product."""
    if a.device.type == "cuda":
        torch.cuda.synchronize(a.device)
    start = time.perf_counter()
    torch.matmul(a, b)
    if a.device.type == "cuda":
        torch.cuda.synchronize(a.device)
    return time.perf_counter() - start


def bfloat16_is_fast(device: torch.device | str) -> bool:
    """True where ``device`` multiplies bfloat16 matrices at least ``SPEEDUP_NEEDED`` times faster than float32.

    Float32 is timed at the current ``torch.get_float32_matmul_precision()``. Each type's fastest of
    ``ROUNDS`` interleaved products counts (the first is a warm-up), so a busy machine spoils neither alone.
    """
    device = torch.device(device)
    key = (device.type, device.index)
    if key not in _measured:
        if device.type == "cpu" and torch.backends.cpu.get_cpu_capability() in NO_BFLOAT16:
            _measured[key] = False
        else:
            m, k, n = SHAPE
            generator = torch.Generator().manual_seed(0)
            a, b = torch.randn(m, k, generator=generator).to(device), torch.randn(k, n, generator=generator).to(device)
            products = {torch.float32: (a, b), torch.bfloat16: (a.bfloat16(), b.bfloat16())}
            fastest = {dtype: float("inf") for dtype in products}
            for _ in range(ROUNDS):
                for dtype, (x, y) in products.items():
                    fastest[dtype] = min(fastest[dtype], _seconds(x, y))
            _measured[key] = fastest[torch.bfloat16] * SPEEDUP_NEEDED <= fastest[torch.float32]
    return _measured[key]
