"""A warning when a run asks for bfloat16 on a CPU that has no fast bfloat16.

Configs written for GPUs say ``precision: bf16-mixed``. A CPU with AVX512-BF16 or AMX multiplies
bfloat16 faster than float32, but one without bfloat16 instructions emulates it: on a 2-core AMD
EPYC with AVX2 only, a bfloat16 matrix product runs at 0.4 GFLOP/s against 129 in float32, so a
run silently takes hundreds of times longer. Whether the CPU multiplies bfloat16 fast is the kNN
search's question too: ``modules/device_speed.py`` answers it once per process for both.
"""

import functools

import lightning as L
import torch
from lightning.pytorch.accelerators import CPUAccelerator
from lightning.pytorch.utilities import rank_zero_warn

from modules.device_speed import SPEEDUP_NEEDED, bfloat16_is_fast


def warn_if_bf16_is_slow(trainer: L.Trainer) -> None:
    """Warns (once per process and precision) when ``trainer`` runs bfloat16 on a CPU where it does not pay."""
    if not str(trainer.precision).startswith("bf16") or not isinstance(trainer.accelerator, CPUAccelerator):
        return
    if not bfloat16_is_fast("cpu"):
        _warn(str(trainer.precision))


@functools.cache  # once per process and precision, however many runs it starts
def _warn(precision: str) -> None:
    rank_zero_warn(
        f"precision {precision} on this CPU ({torch.backends.cpu.get_cpu_capability()}): bfloat16 matrix products "
        f"are not {SPEEDUP_NEEDED}x faster than float32 here (without bfloat16 instructions they are emulated, up to "
        "~300x slower); pass --trainer.precision 32-true"
    )
