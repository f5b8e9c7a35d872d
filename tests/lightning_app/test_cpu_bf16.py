"""bf16 on a CPU that emulates it: one warning that names the flag to pass instead."""

import warnings
from pathlib import Path

import pytest

from lightning_app import cpu_bf16
from lightning_app.cli import AppCLI

ROOT = Path(__file__).parents[2]
CONFIG = str(ROOT / "configs" / "digits_mlp.yaml")


@pytest.fixture
def slowdown(monkeypatch):
    """Sets what the timed product reports, and counts how often it is timed."""
    measured = {"calls": 0, "value": 1.0}

    def fake() -> float:
        measured["calls"] += 1
        return measured["value"]

    monkeypatch.setattr(cpu_bf16, "bfloat16_slowdown", fake)
    cpu_bf16._warn.cache_clear()
    yield measured
    cpu_bf16._warn.cache_clear()


def build(precision: str, accelerator: str = "cpu") -> list[str]:
    """Builds the CLI's objects without training; returns the messages of the warnings it raised."""
    args = ["--config", CONFIG, "--trainer.logger", "false", "--trainer.precision", precision,
            "--trainer.accelerator", accelerator]  # fmt: skip
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        AppCLI(args=args, run=False)
    return [str(w.message) for w in caught if "bfloat16" in str(w.message)]


def test_emulated_bf16_warns_once_with_the_flag_to_pass(slowdown):
    slowdown["value"] = 300.0
    (message,) = build("bf16-mixed")
    assert "--trainer.precision 32-true" in message and "300x slower" in message and "bf16-mixed" in message
    assert build("bf16-mixed") == []  # once per process
    assert len(build("bf16-true")) == 1  # another precision is another question


def test_fast_bf16_and_other_precisions_stay_quiet(slowdown):
    slowdown["value"] = 0.5  # bfloat16 twice as fast as float32, as with AVX512-BF16 or AMX
    assert build("bf16-mixed") == []
    calls = slowdown["calls"]
    assert build("32-true") == [] and build("64-true") == []
    assert slowdown["calls"] == calls  # nothing timed unless bfloat16 is asked for


def test_the_timed_product_gives_a_ratio():
    ratio = cpu_bf16.bfloat16_slowdown()
    assert 0.0 < ratio < float("inf")
    assert cpu_bf16.bfloat16_slowdown() == ratio  # measured once per process
