"""``bench/shakespeare.py --against-nanogpt DIR``: nanoGPT's ``train.py``, then our GPT config, on one text.

On the CPU both take nanoGPT README's CPU settings (4 layers x 4 heads x 128, context 64,
batch 12, 2,000 steps, no dropout, uncompiled): nanoGPT through its command line, ours as
``configs/shakespeare_gpt.yaml``. On the GPU, nanoGPT's ``config/train_shakespeare_char.py``
(compiled, bf16) against ``configs/shakespeare_gpt_gpu.yaml`` with ``--compile true``.
``--steps gpt=N`` shortens both alike (the schedule squeezed to N steps, its 100 warm-up steps kept).
``--smoke`` runs the GPU comparison shrunk to seconds on any device, to check the script where the
real run is expensive (bench/gpu.sh --smoke). ``--rounds N`` runs each N times, alternating which
goes first (a machine's load moves one run's time by more than 5%), and prints the median ratios.
"""

import json
import statistics
import sys
import tempfile
from pathlib import Path

import torch
import yaml

from bench import nanogpt
from bench.machine import describe
from lightning_app.generate import load_language_model

ROOT = Path(__file__).resolve().parents[1]
NANOGPT_SETTINGS = {
    "cpu": ["--eval_iters=20", "--log_interval=1", "--block_size=64", "--batch_size=12", "--n_layer=4",
            "--n_head=4", "--n_embd=128", "--max_iters=2000", "--lr_decay_iters=2000", "--dropout=0.0"],
    "gpu": [],  # the config file's own: 6 x 6 x 384, context 256, batch 64, 5,000 steps, dropout 0.2
}  # fmt: skip
SMOKE = {
    "nanogpt": ["--n_layer=1", "--n_head=2", "--n_embd=32", "--block_size=16", "--batch_size=4", "--max_iters=30",
                "--lr_decay_iters=30", "--warmup_iters=3", "--eval_interval=10", "--eval_iters=2", "--log_interval=1"],
    "ours": ["--model.init_args.num_layers", "1", "--model.init_args.nhead", "2", "--model.init_args.d_model", "32",
             "--data.init_args.block_size", "16", "--data.init_args.batch_size", "4",
             "--data.init_args.batches_per_epoch", "10", "--trainer.max_epochs", "3",
             "--lr_scheduler.init_args.warmup_steps", "3"],
}  # fmt: skip


def shorter(config: dict, steps: int) -> tuple[list[str], list[str]]:
    """nanoGPT's and our arguments for ``steps`` steps (whole epochs): the schedule squeezed, its warm-up kept."""
    batches = config["data"]["init_args"]["batches_per_epoch"]
    warmup = round(config["lr_scheduler"]["init_args"]["warmup_fraction"] * config["trainer"]["max_epochs"] * batches)
    steps = max(1, steps // batches) * batches
    ours = ["--trainer.max_epochs", str(steps // batches), "--lr_scheduler.init_args.warmup_steps", str(warmup)]
    return [f"--max_iters={steps}", f"--lr_decay_iters={steps}"], ours


def value(args: list[str], flag: str, default: int) -> int:
    """The last value given to ``flag`` in either style (``--a=1`` or ``--a 1``), else ``default``."""
    found = [a.split("=", 1)[1] for a in args if a.startswith(flag + "=")]
    found += [args[i + 1] for i, a in enumerate(args[:-1]) if a == flag]
    return int(found[-1]) if found else default


def nanogpt_row(directory: Path, data: Path, folder: Path, theirs: list[str], val_ids, env: dict, warmup: int,
                device: str) -> tuple:  # fmt: skip
    nano = nanogpt.train_nanogpt(directory, data, theirs, env, out=folder)
    gpt = nanogpt.load_nanogpt(directory, folder / "out" / "ckpt.pt", device)
    own = [loss for _, loss in nano["evals"]]
    every = value(theirs, "--eval_interval", 250)
    step_s = nanogpt.seconds_per_step(nano["points"], every, warmup)
    return ("nanoGPT train.py", nano["steps"], nano["wall_s"], step_s, nanogpt.validation_seconds(nano["points"], every, step_s),
            f"{own[-1]:.4f} / {min(own):.4f}",
            nanogpt.whole_text_loss(lambda x, y: gpt(x, y)[0], val_ids, gpt.config.block_size, device))  # fmt: skip


def ours_row(config_path: Path, text: Path, folder: Path, ours: list[str], val_ids, vocab: str, env: dict,
             timed_every: int, warmup: int, device: str) -> tuple:  # fmt: skip
    command = ["fit", "--config", str(config_path), "--data.init_args.path", str(text), "--trainer.logger", "false", *ours]
    print(f"ours: python -m lightning_app {' '.join(command)}", flush=True)
    command += ["--trainer.default_root_dir", str(folder), "--checkpoint.dirpath", str(folder / "ours"),
                "--trainer.callbacks+=bench.nanogpt.StepClock", "--trainer.callbacks.path", str(folder / "steps.json"),
                "--trainer.callbacks.every", str(timed_every)]  # fmt: skip
    wall, _, _ = nanogpt.run([sys.executable, "-m", "lightning_app", *command], ROOT, folder / "ours.stderr", env)
    (best,) = [p for p in (folder / "ours").glob("*.ckpt") if p.name != "last.ckpt"]
    last = torch.load(folder / "ours" / "last.ckpt", weights_only=True)
    scores = next(state for name, state in last["callbacks"].items() if name.startswith("ModelCheckpoint"))
    model = load_language_model(str(best), device)
    if model.vocab != vocab:
        raise SystemExit(f"{text}: a character occurs only in the validation text; the vocabularies differ")
    points = [tuple(point) for point in json.loads((folder / "steps.json").read_text())]
    configured = yaml.safe_load(config_path.read_text())["data"]["init_args"]["batches_per_epoch"]
    every = value(ours, "--data.init_args.batches_per_epoch", configured)
    step_s = nanogpt.seconds_per_step(points, every, warmup)
    return (f"ours, {config_path.name}", last["global_step"], wall, step_s, nanogpt.validation_seconds(points, every, step_s),
            f"{float(scores['current_score']):.4f} / {float(scores['best_model_score']):.4f}",
            nanogpt.whole_text_loss(lambda x, y: model(x), val_ids, model.block_size, device))  # fmt: skip


def print_rounds(pairs: list[tuple[tuple, tuple]]) -> None:
    """The table of every round's two rows and the ratios, ours over nanoGPT's: medians over the rounds."""
    print("\n| run | steps | wall time | train ms/step | steps x ms/step | validating | the rest | "
          "val loss, own: last / best | val loss, whole text, best checkpoint |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for index, pair in enumerate(pairs):
        for name, n, wall_s, step_s, val_s, reported, whole in pair:
            name += f", round {index + 1}" if len(pairs) > 1 else ""
            print(f"| {name} | {n:,} | {wall_s:.1f} s | {1e3 * step_s:.1f} | {n * step_s:.1f} s | {val_s:.1f} s "
                  f"| {wall_s - n * step_s - val_s:.1f} s | {reported} | {whole:.4f} |")
    walls = [mine[2] / theirs[2] for theirs, mine in pairs]  # column 2: wall time, 3: seconds per step
    steps = [mine[3] / theirs[3] for theirs, mine in pairs]
    rounds = f", medians of {len(pairs)} rounds ({', '.join(f'{w:.2f}x' for w in walls)}; nanoGPT first in odd rounds)"
    print(f"ours / nanoGPT: wall time {statistics.median(walls):.2f}x, train time per step "
          f"{statistics.median(steps):.2f}x{rounds if len(pairs) > 1 else ''}")


def compare(args) -> None:
    """Runs both, one after the other, and prints their wall times, step times and validation losses."""
    directory = Path(args.against_nanogpt).resolve()
    if not (directory / "train.py").is_file() or not (directory / "config" / "train_shakespeare_char.py").is_file():
        raise SystemExit(f"{directory}: not a nanoGPT checkout (no train.py or config/train_shakespeare_char.py); "
                         "clone https://github.com/karpathy/nanoGPT and pass its folder")  # fmt: skip
    gpu = args.accelerator == "gpu"
    device = "cuda" if gpu else "cpu"
    settings = "gpu" if gpu or args.smoke else "cpu"
    compiled = settings == "gpu" if args.compile is None else args.compile
    config_path = ROOT / "configs" / f"shakespeare_gpt{'_gpu' if settings == 'gpu' else ''}.yaml"
    theirs = [*NANOGPT_SETTINGS[settings], f"--compile={compiled}"] + ([] if gpu else ["--device=cpu"])
    ours = ["--compile", str(compiled).lower(), "--trainer.accelerator", args.accelerator, *args.cli.split()]
    if args.steps.get("gpt"):
        more = shorter(yaml.safe_load(config_path.read_text()), args.steps["gpt"])
        theirs, ours = theirs + more[0], ours + more[1]
    if args.smoke:
        theirs, ours = theirs + SMOKE["nanogpt"], ours + SMOKE["ours"]
    timed_every = 10 if gpu and not args.smoke else 1  # nanoGPT prints (and waits for) every 10th step on the GPU
    warmup = 2 if args.smoke else 10  # steps left out of the step time: compilation, first allocations
    env = {"OMP_NUM_THREADS": str(args.threads)} if args.threads else {}  # the same torch threads for both
    print(describe(device), flush=True)
    pairs = []  # per round: (nanoGPT's row, ours)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        text = Path(args.path)
        if args.smoke:  # the first 20,000 characters: a validation pass over the whole text takes a second
            text = folder / "smoke.txt"
            text.write_text(Path(args.path).read_text(encoding="utf-8")[:20_000], encoding="utf-8")
        vocab, val_ids = nanogpt.prepare(text, folder)
        print(f"nanoGPT: python train.py config/train_shakespeare_char.py {' '.join(theirs)}", flush=True)
        for index in range(args.rounds):  # each round in its own folder; who goes first alternates
            here = folder / f"round{index}"
            here.mkdir()
            runs = {"nanoGPT": lambda: nanogpt_row(directory, folder, here, theirs, val_ids, env, warmup, device),
                    "ours": lambda: ours_row(config_path, text, here, ours, val_ids, vocab, env, timed_every, warmup, device)}  # fmt: skip
            order = ["nanoGPT", "ours"] if index % 2 == 0 else ["ours", "nanoGPT"]
            done = {name: runs[name]() for name in order}
            pairs.append((done["nanoGPT"], done["ours"]))
    print_rounds(pairs)
    print("The rest: start-up (imports, data, compilation, the first steps), checkpoints, teardown. "
          "Own val loss: nanoGPT's is the mean of eval_iters random batches of the validation text; ours covers the "
          "whole validation text. The last column scores each run's best checkpoint alike: every contiguous window "
          "of the validation text (the last 10%), nats per character.")  # fmt: skip
