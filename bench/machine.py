"""The line every benchmark prints beside its figures: what it ran on.

Speed on a CPU depends on its instruction set (an AVX2-only CPU emulates bfloat16 hundreds of
times slower than one with AVX512-BF16), and a shared machine's load moves every timing, so
both are named: the CPU model and ``torch.backends.cpu.get_cpu_capability()``, the cores,
torch's threads, the load average, and the GPU when one is used.
"""

import os
from pathlib import Path

import torch


def cpu_name() -> str:
    """The CPU's model name from /proc/cpuinfo (Linux), else ``cpu``."""
    info = Path("/proc/cpuinfo")
    if info.is_file():
        for line in info.read_text(errors="replace").splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return "cpu"


def describe(device: str | torch.device = "cpu") -> str:
    """``# <GPU, >CPU model (capability X), N cores, torch V, T threads, load L``."""
    gpu = ""
    if torch.device(device).type == "cuda":
        gpu = f"{torch.cuda.get_device_name(device)}, "
    load = f", load {os.getloadavg()[0]:.1f}" if hasattr(os, "getloadavg") else ""
    return (
        f"# {gpu}{cpu_name()} (capability {torch.backends.cpu.get_cpu_capability()}), {os.cpu_count()} cores, "
        f"torch {torch.__version__}, {torch.get_num_threads()} threads{load}"
    )
