"""nanoGPT's own ``train.py`` beside our CLI on the same text, timed and scored the same way.

Used by ``bench/shakespeare.py --against-nanogpt DIR``, where DIR is a checkout of
https://github.com/karpathy/nanoGPT that the user provides: nothing of it is copied here. Its data
is written from the given text as its ``data/shakespeare_char/prepare.py`` does, without the
download, into a temporary folder (``--dataset`` takes an absolute path), so DIR stays untouched.

Both runs are subprocesses, so wall times cover the same things (interpreter, imports, data,
compilation, training, validation, checkpoints). Time per training step comes from timestamps
taken after steps whose results were waited for (nanoGPT's printed ``iter N`` lines, which follow a
``loss.item()``; our ``StepClock`` callback, which synchronises the GPU at the same steps) and
leaves out the steps before ``warmup`` (compilation) and every stretch with a validation in it.
"""

import importlib.util
import json
import os
import pickle
import re
import subprocess
import sys
import time
from pathlib import Path

import lightning as L
import numpy as np
import torch
import torch.nn.functional as F

ITER = re.compile(r"^iter (\d+): loss [\d.]+, time")
EVAL = re.compile(r"^step (\d+): train loss ([\d.]+), val loss ([\d.]+)")


def prepare(text_path: str | Path, folder: Path) -> tuple[str, np.ndarray]:
    """``train.bin``, ``val.bin`` and ``meta.pkl`` as nanoGPT's ``prepare.py`` writes them; returns its
    vocabulary (the sorted characters of the whole text) and the validation token ids."""
    text = Path(text_path).read_text(encoding="utf-8")
    vocab = "".join(sorted(set(text)))
    if not 0 < len(vocab) <= 2**16:
        raise SystemExit(f"{text_path}: {len(vocab)} distinct characters; nanoGPT's uint16 files hold 1 to 65,536")
    codes = np.frombuffer(text.encode("utf-32-le"), dtype=np.uint32)
    ids = np.searchsorted(np.frombuffer(vocab.encode("utf-32-le"), dtype=np.uint32), codes).astype(np.uint16)
    n_train = int(len(text) * 0.9)
    folder.mkdir(parents=True, exist_ok=True)
    ids[:n_train].tofile(folder / "train.bin")
    ids[n_train:].tofile(folder / "val.bin")
    meta = {"vocab_size": len(vocab), "itos": dict(enumerate(vocab)), "stoi": {c: i for i, c in enumerate(vocab)}}
    (folder / "meta.pkl").write_bytes(pickle.dumps(meta))
    return vocab, ids[n_train:]


class StepClock(L.Callback):
    """Writes ``[[step, seconds], ...]`` to ``path`` at the end of fit: the time after every ``every``-th
    training step, taken after the GPU finished it (the only waits it adds)."""

    def __init__(self, path: str, every: int = 10) -> None:
        self.path, self.every = path, every
        self.points: list[tuple[int, float]] = []

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        step = trainer.global_step - 1  # nanoGPT's iteration number of the step just done
        if step % self.every == 0:
            if pl_module.device.type == "cuda":
                torch.cuda.synchronize(pl_module.device)
            self.points.append((step, time.perf_counter()))

    def on_fit_end(self, trainer, pl_module) -> None:
        if trainer.is_global_zero:
            Path(self.path).write_text(json.dumps(self.points))


def seconds_per_step(points: list[tuple[int, float]], eval_every: int, warmup: int) -> float:
    """Mean seconds per training step between timestamps ``(step, time)``, leaving out the steps
    before ``warmup`` and every stretch ``(a, b]`` that holds a validation (before each multiple of ``eval_every``)."""
    seconds = steps = 0.0
    for (a, start), (b, end) in zip(points, points[1:]):
        if a >= warmup and (b // eval_every) == (a // eval_every):
            seconds, steps = seconds + end - start, steps + b - a
    if not steps:
        raise ValueError(f"no timed stretch without a validation after step {warmup}: run more steps")
    return seconds / steps


def validation_seconds(points: list[tuple[int, float]], eval_every: int, step_seconds: float) -> float:
    """Seconds spent validating: what the stretches holding a validation took beyond their steps' usual time."""
    return sum(
        end - start - (b - a) * step_seconds
        for (a, start), (b, end) in zip(points, points[1:])
        if (b // eval_every) != (a // eval_every)
    )


def run(command: list[str], cwd: Path, log: Path, env: dict | None = None) -> tuple[float, list[str], list[float]]:
    """Runs ``command``; returns its wall time, its stdout lines and when each arrived (stderr goes to ``log``)."""
    lines, arrived = [], []
    start = time.perf_counter()
    env = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
    with open(log, "w") as errors:
        process = subprocess.Popen(command, cwd=cwd, stdout=subprocess.PIPE, stderr=errors, text=True, env=env)
        for line in process.stdout:
            lines.append(line.rstrip("\n"))
            arrived.append(time.perf_counter())
    if process.wait():
        tail = "\n".join(log.read_text(errors="replace").splitlines()[-20:])
        raise RuntimeError(f"{' '.join(command[:3])} ... failed with exit code {process.returncode}; its errors end:\n{tail}")
    return time.perf_counter() - start, lines, arrived


def train_nanogpt(directory: Path, folder: Path, settings: list[str], env: dict | None = None, out: Path | None = None) -> dict:
    """nanoGPT's ``train.py`` on the data in ``folder``; its checkpoint and log go to ``out`` (else ``folder``)."""
    out = out or folder
    command = [sys.executable, "train.py", "config/train_shakespeare_char.py", f"--dataset={folder}",
               f"--out_dir={out / 'out'}", *settings]  # fmt: skip
    wall, lines, arrived = run(command, directory, out / "nanogpt.stderr", env)
    points = [(int(m[1]), t) for line, t in zip(lines, arrived) if (m := ITER.match(line))]
    evals = [(int(m[1]), float(m[3])) for line in lines if (m := EVAL.match(line))]
    if not points or not evals:
        last = " | ".join(lines[-5:])
        raise SystemExit(f"{directory / 'train.py'} printed no 'iter N: loss ..., time ...' or 'step N: train loss ..., "
                         f"val loss ...' lines (a nanoGPT whose log reads otherwise?); its last lines: {last}")  # fmt: skip
    return {"wall_s": wall, "points": points, "evals": evals, "steps": points[-1][0] + 1}


def load_nanogpt(directory: Path, checkpoint: Path, device: str) -> torch.nn.Module:
    """nanoGPT's GPT (its own ``model.py``, imported from ``directory``) with the weights of ``checkpoint``."""
    spec = importlib.util.spec_from_file_location("nanogpt_model", directory / "model.py")
    model_py = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(model_py)
    saved = torch.load(checkpoint, map_location=device, weights_only=True)
    model = model_py.GPT(model_py.GPTConfig(**saved["model_args"]))
    # A compiled nanoGPT saves its wrapper's keys, prefixed `_orig_mod.` (its own sample.py strips them too).
    model.load_state_dict({k.removeprefix("_orig_mod."): v for k, v in saved["model"].items()})
    return model.to(device).eval()


@torch.no_grad()
def whole_text_loss(logits_of, tokens: np.ndarray, block_size: int, device: str, batch_size: int = 64) -> float:
    """Nats per character over the whole validation text, in contiguous windows of ``block_size``
    (our data module's validation windows); ``logits_of(inputs, targets)``: ``(B, T)`` ids each ->
    ``(B, T, V)`` logits (nanoGPT's GPT returns every position's logits only when given the targets)."""
    tokens = torch.from_numpy(tokens.astype(np.int64)).to(device)
    starts = torch.arange(0, len(tokens) - block_size, block_size, device=device)
    total = 0.0
    for batch in starts.split(batch_size):
        windows = tokens[batch[:, None] + torch.arange(block_size + 1, device=device)]  # (B, T+1)
        inputs, targets = windows[:, :-1].contiguous(), windows[:, 1:].contiguous()  # (B, T) each
        logits = logits_of(inputs, targets).float()
        total += F.cross_entropy(logits.flatten(0, 1), targets.flatten(), reduction="sum").item()
    return total / (len(starts) * block_size)
