"""bench/nanogpt.py, against_nanogpt.py: nanoGPT's data and log lines, step times, the whole-text loss, shorter runs."""

import math
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from bench import nanogpt
from bench.against_nanogpt import print_rounds, shorter, value
from bench.machine import describe
from tests.fakes import write_text

ROOT = Path(__file__).parents[2]


def test_prepare_writes_what_nanogpts_prepare_writes(tmp_path):
    text = write_text(tmp_path / "verse.txt", repeats=3).read_text()
    vocab, val_ids = nanogpt.prepare(tmp_path / "verse.txt", tmp_path / "data")
    # nanoGPT's data/shakespeare_char/prepare.py, step by step
    chars = sorted(set(text))
    stoi = {ch: i for i, ch in enumerate(chars)}
    n = len(text)
    expected_train = np.array([stoi[c] for c in text[: int(n * 0.9)]], dtype=np.uint16)
    expected_val = np.array([stoi[c] for c in text[int(n * 0.9) :]], dtype=np.uint16)
    assert vocab == "".join(chars)
    np.testing.assert_array_equal(np.fromfile(tmp_path / "data" / "train.bin", dtype=np.uint16), expected_train)
    np.testing.assert_array_equal(np.fromfile(tmp_path / "data" / "val.bin", dtype=np.uint16), expected_val)
    np.testing.assert_array_equal(val_ids, expected_val)
    meta = pickle.loads((tmp_path / "data" / "meta.pkl").read_bytes())  # the file this test's own call wrote
    assert meta == {"vocab_size": len(chars), "itos": dict(enumerate(chars)), "stoi": stoi}


def test_log_lines_in_nanogpts_print_format_are_read():
    # train.py's own f-strings: f"iter {iter_num}: loss {lossf:.4f}, time {dt*1000:.2f}ms, mfu {running_mfu*100:.2f}%"
    assert nanogpt.ITER.match("iter 250: loss 1.9876, time 61.32ms, mfu -100.00%")[1] == "250"
    # and f"step {iter_num}: train loss {losses['train']:.4f}, val loss {losses['val']:.4f}"
    match = nanogpt.EVAL.match("step 2000: train loss 1.7012, val loss 1.8857")
    assert (match[1], match[3]) == ("2000", "1.8857")
    assert nanogpt.ITER.match("step 0: train loss 4.2, val loss 4.2") is None


def test_step_time_leaves_out_warmup_and_validations_which_are_timed_apart():
    # Steps take 1 s, except 9 s for step 0 (compilation) and 50 s for the stretch holding the validation before step 10.
    times, now = [], 0.0
    for step in range(20):
        now += 9.0 if step == 0 else 50.0 if step == 10 else 1.0
        times.append((step, now))
    assert nanogpt.seconds_per_step(times, eval_every=10, warmup=1) == pytest.approx(1.0)
    assert nanogpt.seconds_per_step(times[::3], eval_every=10, warmup=1) == pytest.approx(1.0)  # every 3rd step timed
    assert nanogpt.validation_seconds(times, eval_every=10, step_seconds=1.0) == pytest.approx(49.0)
    assert nanogpt.validation_seconds(times[::3], eval_every=10, step_seconds=1.0) == pytest.approx(49.0)
    with pytest.raises(ValueError, match="run more steps"):
        nanogpt.seconds_per_step(times[:3], eval_every=10, warmup=5)


def test_whole_text_loss_of_a_uniform_model_is_log_vocab():
    tokens = np.arange(103) % 7
    seen = []

    def uniform(inputs, targets):
        seen.append(inputs)
        return torch.zeros(*inputs.shape, 7)

    assert nanogpt.whole_text_loss(uniform, tokens, block_size=10, device="cpu", batch_size=4) == pytest.approx(math.log(7))
    windows = torch.cat(seen)
    assert windows.shape == (10, 10)  # (103 - 1) // 10 contiguous windows, the last partial one left out
    assert windows[3].tolist() == (np.arange(30, 40) % 7).tolist()


def test_machine_line_names_the_cpu_capability():
    line = describe("cpu")
    assert f"capability {torch.backends.cpu.get_cpu_capability()}" in line and f"torch {torch.__version__}" in line


def test_a_shorter_run_squeezes_both_schedules_alike_and_keeps_the_warmup():
    config = yaml.safe_load((ROOT / "configs" / "shakespeare_gpt_gpu.yaml").read_text())
    theirs, ours = shorter(config, 2100)  # whole epochs of 250 steps: 2,000
    assert theirs == ["--max_iters=2000", "--lr_decay_iters=2000"]  # nanoGPT's warm-up stays its config's 100 steps
    assert ours == ["--trainer.max_epochs", "8", "--lr_scheduler.init_args.warmup_steps", "100"]
    assert value(["--eval_interval=10", "--a", "3", "--eval_interval", "20"], "--eval_interval", 250) == 20
    assert value([], "--eval_interval", 250) == 250


def test_rounds_print_each_pair_and_the_median_ratios(capsys):
    def row(name, wall, step):  # name, steps, wall s, s/step, validating s, own losses, whole-text loss
        return (name, 100, wall, step, 1.0, "2.0000 / 2.0000", 2.0)

    pairs = [(row("nanoGPT", 100.0, 0.5), row("ours", 110.0, 0.5)), (row("nanoGPT", 90.0, 0.4), row("ours", 117.0, 0.6)),
             (row("nanoGPT", 100.0, 0.5), row("ours", 120.0, 0.45))]  # fmt: skip
    print_rounds(pairs)
    printed = capsys.readouterr().out
    assert "| ours, round 2 | 100 | 117.0 s | 600.0 | 60.0 s | 1.0 s | 56.0 s |" in printed
    assert "wall time 1.20x, train time per step 1.00x, medians of 3 rounds (1.10x, 1.30x, 1.20x;" in printed
    print_rounds(pairs[:1])
    assert capsys.readouterr().out.rstrip().endswith("ours / nanoGPT: wall time 1.10x, train time per step 1.00x")
