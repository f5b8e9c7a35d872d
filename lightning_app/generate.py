"""Text from a language-model checkpoint: ``python -m lightning_app.generate --ckpt_path X.ckpt``.

The checkpoint holds the model's class, its hyperparameters and its vocabulary, so no config
and no data file is needed.
"""

import gc
import inspect
import sys
from pathlib import Path

if __name__ == "__main__":  # the command: the collector off while torch loads (lightning_app/__main__.py)
    gc.disable()
    from lightning_app.deferred import defer_unused_imports

    defer_unused_imports()

import torch  # noqa: E402
from jsonargparse import CLI  # noqa: E402

from lightning_app.checkpoints import load_checkpoint  # noqa: E402
from lightning_app.checkpoints.model_class import check_shapes, checkpoint_model_class  # noqa: E402
from modules.language_model import LanguageModel  # noqa: E402


def load_language_model(ckpt_path: str, device: str = "cpu", trusted_packages: list[str] | None = None) -> LanguageModel:
    """Rebuilds the model that `fit` saved in ``ckpt_path`` (checked, and loaded with ``weights_only``)."""
    if "://" not in ckpt_path and not Path(ckpt_path).is_file():
        raise FileNotFoundError(
            f"{ckpt_path}: no such checkpoint; fit saves them under runs/lightning_app/<run id>/checkpoints/"
        )
    checkpoint = load_checkpoint(ckpt_path, map_location=device)
    hparams = dict(checkpoint.get("hyper_parameters", {}))
    class_path = hparams.pop("_class_path", None)
    if class_path is None:
        raise ValueError(f"{ckpt_path} records no model class: it was not saved by `python -m lightning_app fit`")
    cls = checkpoint_model_class(class_path, trusted_packages or [], ckpt_path)
    if not issubclass(cls, LanguageModel):
        raise ValueError(f"{ckpt_path} holds a {class_path}, not a language model (modules.Transformer, modules.RNN)")
    # The CLI also records linked values the class does not take (an RNN has no block_size): skip those.
    accepted = inspect.signature(cls.__init__).parameters
    check_shapes(cls, hparams, checkpoint.get("state_dict") or {}, ckpt_path)  # before anything is allocated
    model = cls(**{key: value for key, value in hparams.items() if key in accepted})
    model.load_state_dict(checkpoint["state_dict"])
    return model.to(device).eval()


def generate(
    ckpt_path: str,
    prompt: str = "\n",
    length: int = 500,
    temperature: float = 0.8,
    top_k: int | None = 200,
    seed: int = 0,
    num_samples: int = 1,
    device: str = "cpu",
    output: str | None = None,
    trusted_packages: list[str] | None = None,
) -> None:
    """Writes ``num_samples`` continuations of ``prompt`` to stdout (or to ``output``).

    Args:
        ckpt_path: A checkpoint that `fit` wrote for a language model.
        prompt: Text to continue; every character must be in the model's vocabulary.
        length: Characters to generate after the prompt.
        temperature: Divides the logits: below 1 is more conservative, 0 always takes the likeliest character.
        top_k: Sample among the k likeliest characters only; None for all.
        seed: Seed of the sampling: the same seed gives the same text.
        num_samples: Independent continuations, separated by a line of dashes.
        device: Where to run, e.g. ``cpu`` or ``cuda``.
        output: File to write; stdout when None.
        trusted_packages: Packages besides ``modules`` whose model classes the checkpoint may name (and so import).
    """
    for name, value, low in (("length", length, 0), ("top_k", top_k, 1), ("num_samples", num_samples, 1)):
        if value is not None and value < low:
            raise ValueError(f"--{name} must be {low} or more, got {value}")
    if temperature < 0:
        raise ValueError(f"--temperature must be 0 or more, got {temperature}")
    if output is not None and (Path(output).is_dir() or not Path(output).parent.is_dir()):
        raise ValueError(f"--output {output}: give a file in an existing folder (the text is written there)")
    if torch.device(device).type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"--device {device}: CUDA is not available on this machine; use --device cpu")
    model = load_language_model(ckpt_path, device, trusted_packages)
    samples = model.generate_text(prompt, length, temperature, top_k, seed, num_samples)
    text = "\n---------------\n".join(samples) + "\n"
    if output is None:
        sys.stdout.write(text)
    else:
        Path(output).write_text(text, encoding="utf-8")


if __name__ == "__main__":
    gc.freeze()
    gc.enable()
    CLI(generate, as_positional=False)
