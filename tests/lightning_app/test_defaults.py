"""What the CLI applies to every run: fused optimizer steps, the progress bar by time, the bf16 warning, no empty
per-step hooks, glibc's malloc thresholds fixed."""

import subprocess
import sys
import warnings
from pathlib import Path

import lightning as L
import pytest
import torch
from torch import nn

from lightning_app import defaults
from lightning_app.cli import AppCLI, main
from lightning_app.defaults import TimedProgressBar, fuse

ROOT = Path(__file__).parents[2]
CPU = torch.device("cpu")
CONFIG = str(ROOT / "configs" / "digits_mlp.yaml")
MLP_CONFIG = str(ROOT / "configs" / "mnist_mlp.yaml")


def parameters():
    return nn.Linear(4, 3).parameters()


@pytest.mark.parametrize("make", [torch.optim.Adam, torch.optim.AdamW, lambda p: torch.optim.SGD(p, lr=0.1, momentum=0.9)])
def test_adam_adamw_and_sgd_become_fused_on_a_cpu(make):
    optimizer = make(parameters())
    assert fuse(optimizer, CPU)
    assert all(group["fused"] for group in optimizer.param_groups)


def test_the_fused_step_equals_the_loop_within_rounding():
    torch.manual_seed(0)
    loop = nn.Linear(16, 8)
    fused = nn.Linear(16, 8)
    fused.load_state_dict(loop.state_dict())
    optimizers = [torch.optim.Adam(loop.parameters(), lr=1e-2), torch.optim.Adam(fused.parameters(), lr=1e-2)]
    assert fuse(optimizers[1], CPU) and not optimizers[0].param_groups[0]["fused"]
    x = torch.randn(32, 16)
    for _ in range(5):
        for model, optimizer in zip((loop, fused), optimizers):
            optimizer.zero_grad()
            model(x).square().mean().backward()
            optimizer.step()
    assert torch.allclose(loop.weight, fused.weight, atol=1e-6)


@pytest.mark.parametrize("chosen", [{"fused": False}, {"foreach": True}, {"foreach": False}, {"differentiable": True}])
def test_a_chosen_implementation_is_kept(chosen):
    optimizer = torch.optim.Adam(parameters(), **chosen)
    assert not fuse(optimizer, CPU)
    assert optimizer.param_groups[0]["fused"] in (None, False)


def test_other_optimizers_and_devices_are_left_alone():
    assert not fuse(torch.optim.RMSprop(parameters()), CPU)
    assert not fuse(torch.optim.Adam(parameters()), torch.device("meta"))  # no fused kernels there
    integer = torch.optim.SGD([torch.zeros(2, dtype=torch.float64), torch.zeros(2).long()], lr=0.1)
    assert not fuse(integer, CPU)


def test_the_cli_fuses_unless_the_config_says_otherwise(mnist_dir, in_tmp):
    fit = ["fit", "--config", MLP_CONFIG, "--data.data_dir", str(mnist_dir), "--trainer.max_epochs", "1",
           "--trainer.logger", "false", "--trainer.enable_progress_bar", "false", "--test_after_fit", "false"]  # fmt: skip
    (optimizer,) = main(fit).trainer.optimizers
    assert optimizer.param_groups[0]["fused"] is True
    (optimizer,) = main([*fit, "--optimizer.init_args.fused", "false"]).trainer.optimizers
    assert optimizer.param_groups[0]["fused"] is False


# The progress bar redraws by time, whatever the steps per second, and always shows a bar's end.


class Bar:
    """The part of a tqdm bar that TimedProgressBar uses; records what was drawn."""

    def __init__(self, total: int | None) -> None:
        self.total, self.disable, self.n, self.postfix, self.drawn = total, False, 0, None, []

    def set_postfix(self, postfix, refresh: bool = True) -> None:
        assert not refresh  # one redraw per update, not two
        self.postfix = postfix

    def refresh(self) -> None:
        self.drawn.append((self.n, self.postfix))


@pytest.fixture
def clock(monkeypatch):
    """A clock that advances 0.125 s (exact in binary) every time it is read."""
    now = [0.0]

    def monotonic() -> float:
        now[0] += 0.125
        return now[0]

    monkeypatch.setattr(defaults.time, "monotonic", monotonic)


def test_redraws_every_interval_and_at_the_end(clock):
    bar, asked = Bar(total=20), []
    timed = TimedProgressBar(interval=0.5)
    for n in range(1, 21):
        timed._draw(bar, n, lambda: asked.append(n) or {"loss": n})
    assert [n for n, _ in bar.drawn] == [1, 5, 9, 13, 17, 20]  # 0.5 s apart, and the last step
    assert asked == [1, 5, 9, 13, 17, 20]  # the metrics are gathered only for a redraw
    assert bar.drawn[-1] == (20, {"loss": 20})


def test_a_bar_of_unknown_length_redraws_by_time_only(clock):
    bar = Bar(total=None)
    timed = TimedProgressBar(interval=1.0)
    for n in range(1, 31):
        timed._draw(bar, n)
    assert [n for n, _ in bar.drawn] == [1, 9, 17, 25]


def test_a_disabled_bar_is_never_drawn(clock):
    bar = Bar(total=3)
    bar.disable = True
    TimedProgressBar()._draw(bar, 3)
    assert bar.drawn == []


def test_a_negative_interval_is_refused():
    with pytest.raises(ValueError, match="interval must be 0 or more seconds, got -1"):
        TimedProgressBar(interval=-1)


# bf16 on a CPU that emulates it: one warning that names the flag to pass instead.


@pytest.fixture
def bf16_fast(monkeypatch):
    """Sets what the shared speed probe answers, and counts how often it is asked."""
    probe = {"calls": 0, "fast": True}

    def fake(device) -> bool:
        assert str(device) == "cpu"
        probe["calls"] += 1
        return probe["fast"]

    monkeypatch.setattr(defaults, "bfloat16_is_fast", fake)
    defaults._warn.cache_clear()
    yield probe
    defaults._warn.cache_clear()


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


# Empty per-step hooks are not called: Lightning would call each, every step, for nothing.


class CountsSteps(L.Callback):
    """Overrides one per-step hook; leaves the others empty."""

    def __init__(self) -> None:
        self.steps = self.starts = 0
        self.on_train_batch_start = self.count_start  # a hook the instance sets for itself

    def count_start(self, trainer, pl_module, batch, batch_idx) -> None:
        self.starts += 1

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self.steps += 1


def test_empty_step_hooks_are_skipped_and_the_others_still_run(in_tmp):
    fit = ["fit", "--config", CONFIG, "--trainer.max_epochs", "1", "--trainer.logger", "false",
           "--trainer.callbacks+=tests.lightning_app.test_defaults.CountsSteps", "--test_after_fit", "false"]  # fmt: skip
    trainer = main(fit).trainer
    counter = next(c for c in trainer.callbacks if isinstance(c, CountsSteps))
    assert counter.steps == counter.starts == trainer.global_step > 0  # its own hooks ran at every step
    assert counter.on_before_backward is None and counter.on_after_backward is None
    bar = next(c for c in trainer.callbacks if isinstance(c, TimedProgressBar))
    assert callable(bar.on_train_batch_end) and bar.on_before_backward is None  # the bar draws; nothing else
    assert all(getattr(c, hook) is None or callable(getattr(c, hook)) for c in trainer.callbacks for hook in defaults.STEP_HOOKS)


class FakeLibc:
    """A glibc stand-in that records its mallopt calls (the test process's own allocator is left as it is)."""

    gnu_get_libc_version = None

    def __init__(self) -> None:
        self.calls: list[tuple[int, int]] = []

    def mallopt(self, parameter: int, value: int) -> int:
        self.calls.append((parameter, value))
        return 1


@pytest.fixture
def libc(monkeypatch) -> FakeLibc:
    fake = FakeLibc()
    monkeypatch.setattr(defaults.ctypes, "CDLL", lambda name: fake)
    for variable in ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_"):
        monkeypatch.delenv(variable, raising=False)
    return fake


def test_glibcs_malloc_thresholds_are_fixed(libc, monkeypatch):
    monkeypatch.setattr(defaults.sys, "platform", "linux")
    assert defaults.fix_malloc_thresholds()
    assert libc.calls == [(-3, 64 << 20), (-1, 128 << 20)]  # M_MMAP_THRESHOLD, M_TRIM_THRESHOLD


@pytest.mark.parametrize("variable", ["MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_"])
def test_a_threshold_the_environment_sets_is_kept(variable, libc, monkeypatch):
    monkeypatch.setattr(defaults.sys, "platform", "linux")
    monkeypatch.setenv(variable, "131072")
    assert not defaults.fix_malloc_thresholds() and libc.calls == []


def test_another_c_library_or_system_is_left_alone(libc, monkeypatch):
    monkeypatch.setattr(defaults.sys, "platform", "darwin")
    assert not defaults.fix_malloc_thresholds()
    monkeypatch.setattr(defaults.sys, "platform", "linux")
    monkeypatch.delattr(FakeLibc, "gnu_get_libc_version")  # musl
    assert not defaults.fix_malloc_thresholds() and libc.calls == []


@pytest.mark.slow
@pytest.mark.skipif(sys.platform != "linux", reason="glibc's malloc")
def test_a_fixed_threshold_serves_a_48_mib_block_from_the_heap():
    # In a fresh process: mallinfo2's hblks counts the blocks malloc mapped apart from its heap. glibc's
    # own threshold never rises above 32 MiB, so a 48 MiB block is one; under the fixed one (64 MiB) it is not.
    script = """
import ctypes, sys
from lightning_app.defaults import fix_malloc_thresholds
libc = ctypes.CDLL(None)
class Info(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in "arena ordblks smblks hblks hblkhd usmblks fsmblks uordblks fordblks keepcost".split()]
libc.mallinfo2.restype, libc.malloc.restype = Info, ctypes.c_void_p
if sys.argv[1] == "fix":
    assert fix_malloc_thresholds()
before = libc.mallinfo2().hblks
block = libc.malloc(48 << 20)
print(libc.mallinfo2().hblks - before)
"""
    counts = {}
    for mode in ("glibc", "fix"):
        out = subprocess.run([sys.executable, "-c", script, mode], capture_output=True, text=True, cwd=ROOT, check=True)
        counts[mode] = int(out.stdout.split()[-1])
    assert counts == {"glibc": 1, "fix": 0}
