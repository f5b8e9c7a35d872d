"""bf16 on a CPU that emulates it: one warning that names the flag to pass instead."""

import warnings
from pathlib import Path

import pytest
import torch

from lightning_app import cpu_bf16
from lightning_app.cli import AppCLI

ROOT = Path(__file__).parents[2]
CONFIG = str(ROOT / "configs" / "digits_mlp.yaml")


@pytest.fixture
def bf16_fast(monkeypatch):
    """Sets what the shared speed probe answers, and counts how often it is asked."""
    probe = {"calls": 0, "fast": True}

    def fake(device) -> bool:
        assert str(device) == "cpu"
        probe["calls"] += 1
        return probe["fast"]

    monkeypatch.setattr(cpu_bf16, "bfloat16_is_fast", fake)
    cpu_bf16._warn.cache_clear()
    yield probe
    cpu_bf16._warn.cache_clear()


def build(precision: str, accelerator: str = "cpu") -> list[str]:
    """Builds the CLI's objects without training; returns the messages of the warnings it raised."""
    args = ["--config", CONFIG, "--trainer.logger", "false", "--trainer.precision", precision,
            "--trainer.accelerator", accelerator]  # fmt: skip
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        AppCLI(args=args, run=False)
    return [str(w.message) for w in caught if "bfloat16" in str(w.message)]


def test_emulated_bf16_warns_once_with_the_flag_to_pass(bf16_fast, in_tmp):
    bf16_fast["fast"] = False  # as on an AVX2-only CPU
    (message,) = build("bf16-mixed")
    assert "--trainer.precision 32-true" in message and "bf16-mixed" in message
    assert torch.backends.cpu.get_cpu_capability() in message
    assert build("bf16-mixed") == []  # once per process
    assert len(build("bf16-true")) == 1  # another precision is another question


def test_fast_bf16_and_other_precisions_stay_quiet(bf16_fast, in_tmp):
    bf16_fast["fast"] = True  # as with AVX512-BF16 or AMX
    assert build("bf16-mixed") == []
    calls = bf16_fast["calls"]
    assert build("32-true") == [] and build("64-true") == []
    assert bf16_fast["calls"] == calls  # nothing measured unless bfloat16 is asked for
