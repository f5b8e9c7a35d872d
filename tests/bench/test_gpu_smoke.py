"""bench/gpu.sh --smoke on a CPU: the GPU script and its two benches run end to end before a GPU session pays for them."""

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.compiler import compiler_problem
from tests.fakes import write_text

ROOT = Path(__file__).parents[2]
ENV = {**{k: v for k, v in os.environ.items() if k != "WANDB_SERVICE"}, "PYTHONPATH": str(ROOT),
       "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}  # `python` in gpu.sh: this one  # fmt: skip
NUMBER = r"([\d,]+(?:\.\d+)?)"


def rates(output: str) -> tuple[float, float]:
    """Our and the plain loop's images per second from cifar_gpu.py's last line."""
    match = re.search(rf"last epoch: ours {NUMBER} images/s, plain {NUMBER} images/s", output)
    assert match, output[-2000:]
    return float(match[1].replace(",", "")), float(match[2].replace(",", ""))


@pytest.mark.slow
def test_cifar_bench_smoke_times_both_loops():
    flags = [] if compiler_problem() else ["--compile", "--channels-last"]
    run = subprocess.run([sys.executable, "bench/cifar_gpu.py", "--smoke", *flags], cwd=ROOT, env=ENV,
                         capture_output=True, text=True, timeout=900)  # fmt: skip
    assert run.returncode == 0, run.stderr[-3000:]
    assert min(rates(run.stdout)) > 0
    assert len(re.findall(r"^\s+\d\s+[\d.]+\s", run.stdout, flags=re.M)) == 2  # one row per epoch
    assert "capability" in run.stdout and f"compile {bool(flags)}" in run.stdout


@pytest.mark.slow
def test_gpu_script_smoke_against_nanogpt(tmp_path):
    nanogpt = os.environ.get("NANOGPT_DIR")
    if not nanogpt or not (Path(nanogpt) / "train.py").is_file():
        pytest.skip("set NANOGPT_DIR to a checkout of https://github.com/karpathy/nanoGPT to run nanoGPT's train.py")
    if compiler_problem():
        pytest.skip(f"torch.compile is unavailable here: {compiler_problem()}")
    text = write_text(tmp_path / "verse.txt")
    logs = tmp_path / "logs"
    run = subprocess.run(["bash", "bench/gpu.sh", "--smoke", str(text), nanogpt, str(logs)], cwd=ROOT, env=ENV,
                         capture_output=True, text=True, timeout=1800)  # fmt: skip
    assert run.returncode == 0, run.stderr[-3000:]
    gpt = (logs / "gpt_vs_nanogpt.log").read_text()
    names = "nanoGPT train.py|ours, shakespeare_gpt_gpu.yaml"
    rows = re.findall(rf"^\| ({names}) \| {NUMBER} \| {NUMBER} s \| {NUMBER} \|", gpt, re.M)
    assert [row[0] for row in rows] == ["nanoGPT train.py", "ours, shakespeare_gpt_gpu.yaml"], gpt[-3000:]
    assert all(float(row[2]) > 0 and float(row[3]) > 0 for row in rows)
    assert "--compile true" in gpt and "--compile=True" in gpt
    assert min(rates((logs / "resnet_vs_plain.log").read_text())) > 0
