"""Validation loss against time on Tiny Shakespeare: the GPT of nanoGPT's runs, and RNN, LSTM, GRU.

    python bench/shakespeare.py --path ../shared/data/tinyshakespeare/input.txt
    python bench/shakespeare.py --path data/tinyshakespeare/input.txt --accelerator gpu --models gpt
    python bench/shakespeare.py --path input.txt --against-nanogpt ../nanoGPT [--accelerator gpu] [--rounds 2]

Each model trains from its shipped config (configs/shakespeare_*.yaml; on a GPU the GPT uses
shakespeare_gpt_gpu.yaml, nanoGPT's GPU run) through the same CLI a user runs, and the table
reports the validation loss after the last step and the best of the validations every 250 steps
(nats per character over the whole validation text), the wall time of `fit`, and training
throughput (characters per second, validation time excluded). nanoGPT's figures: 1.88 for the
CPU GPT after 2,000 steps, 1.47 for the GPU GPT.

With ``--against-nanogpt DIR`` (a checkout of nanoGPT's repository) it runs nanoGPT's own
``train.py`` and then our GPT config on the same text instead, one after the other, and prints
both (bench/nanogpt.py says how each figure is taken).
"""

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import torch
import yaml
from lightning.pytorch.callbacks import Callback

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from bench.against_nanogpt import compare  # noqa: E402
from bench.machine import describe  # noqa: E402
from lightning_app.cli import AppCLI  # noqa: E402

NANOGPT = {"cpu": 1.88, "gpu": 1.47}


class Clock(Callback):
    """Wall time of the whole fit and of its validation passes (synchronising the GPU at each edge)."""

    def __init__(self) -> None:
        self.fit_s = self.val_s = 0.0
        self._start = self._val_start = 0.0

    @staticmethod
    def _now() -> float:
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        return time.perf_counter()

    def on_fit_start(self, trainer, pl_module) -> None:
        self._start = self._now()

    def on_fit_end(self, trainer, pl_module) -> None:
        self.fit_s = self._now() - self._start

    def on_validation_start(self, trainer, pl_module) -> None:
        self._val_start = self._now()

    def on_validation_end(self, trainer, pl_module) -> None:
        self.val_s += self._now() - self._val_start


def run(model: str, args, folder: str) -> dict:
    config = ROOT / "configs" / f"shakespeare_{model}{'_gpu' if args.accelerator == 'gpu' and model == 'gpt' else ''}.yaml"
    overrides = [
        "--config", str(config), "--data.init_args.path", args.path, "--trainer.accelerator", args.accelerator,
        "--trainer.logger", "false", "--trainer.enable_progress_bar", "false", "--trainer.enable_model_summary", "false",
        "--trainer.default_root_dir", folder, "--checkpoint.dirpath", f"{folder}/{model}",
    ]  # fmt: skip
    if args.steps.get(model):  # a shorter run: fewer epochs, and the schedule squeezed to match
        batches = yaml.safe_load(config.read_text())["data"]["init_args"]["batches_per_epoch"]
        overrides += ["--trainer.max_epochs", str(args.steps[model] // batches)]
        overrides += ["--lr_scheduler.init_args.total_steps", str(args.steps[model] // batches * batches)]
    cli = AppCLI(args=overrides + args.cli.split(), run=False)
    clock = Clock()
    cli.trainer.callbacks.append(clock)
    cli.trainer.fit(cli.model, datamodule=cli.datamodule)
    data, trainer = cli.datamodule, cli.trainer
    characters = trainer.global_step * data.batch_size * data.block_size
    lm = cli.model.to("cuda" if args.accelerator == "gpu" else "cpu")  # fit's teardown left it on the CPU
    sample = lm.generate_text("\n", args.sample, temperature=0.8, top_k=200, seed=0)[0] if args.sample else ""
    return {
        "model": f"{model} ({cli.config.model.class_path.rsplit('.', 1)[-1]})",
        "params": sum(p.numel() for p in cli.model.parameters()),
        "steps": trainer.global_step,
        "val_loss": trainer.callback_metrics["val/loss"].item(),
        "val_loss_best": trainer.callback_metrics["val/loss_best"].item(),
        "fit_s": clock.fit_s,
        "chars_per_s": characters / (clock.fit_s - clock.val_s),
        "sample": sample,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--path", required=True, help="Tiny Shakespeare's input.txt (md5 6fb458f1232090904fb40fe944165e91)")
    parser.add_argument("--models", nargs="+", default=["gpt", "lstm", "gru", "rnn"], choices=["gpt", "lstm", "gru", "rnn"])
    parser.add_argument("--accelerator", default="cpu", choices=["cpu", "gpu"])
    parser.add_argument("--steps", nargs="*", default=[], metavar="MODEL=N", help="fewer steps for a model, e.g. rnn=1000")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    parser.add_argument("--cli", default="", help="more CLI arguments for every run, e.g. '--optimizer.init_args.lr=2.0e-3'")
    parser.add_argument("--sample", type=int, default=500, help="characters to generate from each model after training")
    parser.add_argument("--against-nanogpt", metavar="DIR", help="a nanoGPT checkout: run its train.py and our GPT instead")
    parser.add_argument("--compile", type=lambda v: v.lower() == "true", default=None, metavar="true|false",
                        help="compile both GPTs in --against-nanogpt (default: on the GPU only, as nanoGPT's settings)")
    parser.add_argument("--smoke", action="store_true", help="--against-nanogpt with tiny models and 30 steps: checks the script")
    parser.add_argument("--rounds", type=int, default=1, help="--against-nanogpt: runs of each, alternating which goes first")
    args = parser.parse_args()
    args.steps = {name: int(n) for name, n in (item.split("=") for item in args.steps)}
    if args.rounds < 1:
        parser.error(f"--rounds {args.rounds}: give 1 or more")
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.against_nanogpt:
        compare(args)
        return
    torch.set_float32_matmul_precision("high")
    print(describe("cuda" if args.accelerator == "gpu" else "cpu"), flush=True)
    rows = []
    with tempfile.TemporaryDirectory() as folder:
        for model in args.models:
            rows.append(run(model, args, folder))
            print(f"\n## {rows[-1]['model']} sample (temperature 0.8, top-k 200, seed 0)\n{rows[-1]['sample']}", flush=True)
    print("\n| model | parameters | steps | val loss (nats/char), last | best | fit wall time | train chars/s |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for r in rows:
        print(f"| {r['model']} | {r['params'] / 1e6:.2f}M | {r['steps']:,} | {r['val_loss']:.4f} | {r['val_loss_best']:.4f} "
              f"| {r['fit_s']:.0f} s | {r['chars_per_s']:,.0f} |")
    print(f"nanoGPT's figure for the GPT: {NANOGPT[args.accelerator]}; load at the end {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
