"""The L2 search's choice of filter precision: from the CPU's capability, else from one timed product."""

import pytest
import torch

from modules import device_speed, knn_l2
from modules.knn_l2 import MemoryIndex


@pytest.fixture
def fresh(monkeypatch):
    """Forgets what was measured, and times products at the speeds a test sets: {dtype: seconds}."""
    monkeypatch.setattr(device_speed, "_measured", {})
    speeds: dict[torch.dtype, float] = {}
    timed: list[torch.dtype] = []
    monkeypatch.setattr(device_speed, "_seconds", lambda a, b: timed.append(a.dtype) or speeds[a.dtype])
    return speeds, timed


def test_a_cpu_without_bfloat16_instructions_filters_in_float32_without_timing(fresh, monkeypatch):
    _, timed = fresh
    monkeypatch.setattr(torch.backends.cpu, "get_cpu_capability", lambda: "AVX2")
    assert not device_speed.bfloat16_is_fast(torch.device("cpu"))
    assert timed == []
    index = MemoryIndex(torch.randn(50, 8))
    assert index.dtype == torch.float32 and not hasattr(index, "folded")  # no bfloat16 copy kept


@pytest.mark.parametrize(("bfloat16_seconds", "fast"), [(1.0, True), (1.4, False), (30.0, False)])
def test_an_avx512_cpu_times_one_product_in_each_type_once(bfloat16_seconds, fast, fresh, monkeypatch):
    speeds, timed = fresh
    speeds.update({torch.float32: 1.5, torch.bfloat16: bfloat16_seconds})  # 1.5x faster is fast enough
    monkeypatch.setattr(torch.backends.cpu, "get_cpu_capability", lambda: "AVX512")
    assert device_speed.bfloat16_is_fast(torch.device("cpu")) is fast
    assert device_speed.bfloat16_is_fast("cpu") is fast
    assert sorted(set(map(str, timed))) == ["torch.bfloat16", "torch.float32"]
    assert len(timed) == 2 * device_speed.ROUNDS  # measured at first use only
    assert MemoryIndex(torch.randn(50, 8)).dtype == (torch.bfloat16 if fast else torch.float32)


def test_forced_precisions_need_no_measurement(monkeypatch):
    monkeypatch.setattr(knn_l2, "bfloat16_is_fast", lambda device: pytest.fail("measured a forced precision"))
    memory = torch.randn(40, 6)
    assert MemoryIndex(memory, "float32").dtype == torch.float32
    assert MemoryIndex(memory, "bfloat16").folded.shape == (40, 8)
