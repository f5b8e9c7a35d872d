"""Where attention looks: every layer's and head's weights for one fixed validation sample.

The weights are recomputed from each attention module's input, caught by a forward pre-hook, as
the module computes them (``softmax(q k^T / sqrt(hs))``, causal mask included): the model is not
changed, and its fused ``sdpa`` path, which never forms the weights, keeps its speed.
"""

import math

import numpy as np
import torch
from lightning.pytorch.utilities import rank_zero_warn
from torch import Tensor, nn

from lightning_app.pictures.figures import figure, name_cells, show
from lightning_app.pictures.base import PictureCallback, data_statistics, displayable, like_model, probe, publish
from lightning_app.pictures.filters import first_conv


def is_attention(module: nn.Module) -> bool:
    """A self-attention module as ``modules.layers.SelfAttention`` is: ``qkv`` (d -> 3d), ``nhead``, ``causal``."""
    qkv = getattr(module, "qkv", None)
    return (
        isinstance(qkv, nn.Linear)
        and qkv.out_features == 3 * qkv.in_features
        and isinstance(getattr(module, "nhead", None), int)
        and isinstance(getattr(module, "causal", None), bool)
    )


def attention_weights(module: nn.Module, x: Tensor) -> Tensor:
    """The ``(B, nh, T, T)`` attention weights of ``module`` for its input ``x`` ``(B, T, C)``; each row sums to 1."""
    B, T, C = x.shape
    q, k, _ = module.qkv(x).split(C, dim=2)  # (B, T, C) each
    q, k = (t.view(B, T, module.nhead, C // module.nhead).transpose(1, 2) for t in (q, k))  # (B, nh, T, hs)
    scores = (q @ k.transpose(-2, -1)).float() / math.sqrt(C // module.nhead)  # (B, nh, T, T)
    if module.causal:
        scores = scores.masked_fill(torch.ones(T, T, dtype=torch.bool, device=x.device).triu(1), float("-inf"))
    return scores.softmax(dim=-1)


def attention_maps(model: nn.Module, inputs: Tensor) -> list[Tensor]:
    """Runs ``model(inputs)`` in eval mode; the weights of every attention module, in call order, on the CPU."""
    maps: list[Tensor] = []
    modules = [m for m in model.modules() if is_attention(m)]
    hooks = [m.register_forward_pre_hook(lambda m, args: maps.append(attention_weights(m, args[0]).cpu())) for m in modules]
    probe(model, inputs, hooks)
    return maps


class AttentionMaps(PictureCallback):
    """Attention maps of one fixed sample, one picture per layer (``attention/layer{i}``), a panel per head.

    The sample is the first of the validation split (or ``text``, for a language model). For
    tokens: the ``num_tokens`` x ``num_tokens`` weights, characters on the axes (row: the
    position that looks; column: the one it looks at). For images: the weight each patch gets,
    from the class token when there is one, else averaged over all patches, over the image.
    At the end of ``fit``, and with ``every_n_epochs`` after every n-th validation; on rank 0.

    Args:
        every_n_epochs: Also draw after the validation of every n-th epoch (``_epoch{E}`` files); 0 only at the end.
        num_tokens: Tokens of the sample shown, for token inputs.
        text: A fixed text to show instead of the validation sample, for language models.
        dpi: Pixels per inch of the PNG files.
    """

    nothing = "no attention pictures"

    def __init__(self, every_n_epochs: int = 0, num_tokens: int = 32, text: str | None = None, dpi: int = 100) -> None:
        if every_n_epochs < 0 or num_tokens < 1 or dpi < 1 or text == "":
            raise ValueError(
                f"AttentionMaps: every_n_epochs={every_n_epochs} (>= 0), num_tokens={num_tokens} (>= 1), "
                f"dpi={dpi} (>= 1) and text={text!r} (None or not empty) are out of range"
            )
        self.every_n_epochs, self.num_tokens, self.text, self.dpi = every_n_epochs, num_tokens, text, dpi
        self.sample: Tensor | None = None

    @staticmethod
    def missing(pl_module, datamodule) -> str | None:
        return None if any(is_attention(m) for m in pl_module.modules()) else "no attention module (qkv, nhead, causal)"

    def setup(self, trainer, pl_module, stage: str) -> None:
        super().setup(trainer, pl_module, stage)
        if self.active and self.text is not None:
            if not callable(getattr(pl_module, "encode", None)):
                raise ValueError(f"AttentionMaps: `text` is for language models; {type(pl_module).__name__} has no `encode`")
            self.sample = pl_module.encode(self.text)[None]  # a character outside the vocabulary fails here, before training

    def on_validation_batch_start(self, trainer, pl_module, batch, batch_idx: int, dataloader_idx: int = 0) -> None:
        if self.sample is None and batch_idx == 0 and dataloader_idx == 0:
            self.sample = batch[0][:1].detach().cpu().clone()

    def on_validation_epoch_end(self, trainer, pl_module) -> None:
        if self.epoch_due(trainer):
            self._draw(trainer, pl_module, trainer.current_epoch + 1, f"_epoch{trainer.current_epoch}")

    def on_fit_end(self, trainer, pl_module) -> None:
        self._draw(trainer, pl_module, trainer.current_epoch, "")  # by now, the number of epochs trained

    def _draw(self, trainer, pl_module, epochs: int, suffix: str) -> None:
        if not self.active or not trainer.is_global_zero:
            return
        if self.sample is None:
            rank_zero_warn("AttentionMaps: no validation batch was seen and no `text` given; no attention pictures")
            return
        sample = self.sample[:, : self.num_tokens] if self.sample.dim() == 2 else self.sample
        maps = attention_maps(pl_module, like_model(sample, pl_module))
        for i, weights in enumerate(maps):
            title = f"layer {i} after {epochs} epochs"
            if sample.dim() == 2:
                fig = draw_tokens(weights[0], token_labels(pl_module, sample[0]), title)
            else:
                fig = draw_patches(weights[0], pl_module, sample, data_statistics(trainer), title)
            publish(trainer, f"attention/layer{i}", fig, dpi=self.dpi, name=f"attention/layer{i}{suffix}")


def token_labels(pl_module, tokens: Tensor) -> list[str]:
    """Each token as its character (newline and space made visible), or its id without a ``vocab``."""
    vocab = getattr(pl_module, "vocab", None)
    if not isinstance(vocab, str):
        return [str(t) for t in tokens.tolist()]
    return [{"\n": "\\n", " ": "_"}.get(vocab[t], vocab[t]) for t in tokens.tolist()]


def draw_tokens(weights: Tensor, labels: list[str], title: str):
    """One ``T x T`` heat map per head: row t is where position t looks.

    Placed by hand, and the characters written as text rather than ticks: a layout engine measuring
    160 tick labels made each picture take 0.7 s instead of 0.15 s (bench/draw_speed.py).
    """
    heads = weights.shape[0]
    side, gap, left, bottom, top = 2.9, 0.25, 0.3, 0.2, 0.85  # inches
    width, height = left + heads * (side + gap) + 0.6, bottom + side + top
    fig = figure(width, height, layout=None)
    for h in range(heads):
        axis = fig.add_axes(((left + h * (side + gap)) / width, bottom / height, side / width, side / height))
        image = axis.imshow(weights[h].numpy(), cmap="viridis", vmin=0, vmax=1)
        # The rows are the same characters for every head: named on the first only.
        name_cells(axis, labels, labels if h == 0 else [], fontsize=5, family="monospace")
        axis.set_title(f"head {h}", fontsize=9)
    fig.colorbar(image, cax=fig.add_axes(((width - 0.5) / width, bottom / height, 0.12 / width, side / height)))
    what = "row: the position that looks; column: the one it looks at"
    fig.suptitle(f"{title}\n{what}", fontsize=9, y=1 - 0.08 / height, va="top")
    return fig


def draw_patches(weights: Tensor, pl_module, image: Tensor, statistics, title: str):
    """Per head: the weight each image patch receives, over the image."""
    heads, T = weights.shape[0], weights.shape[-1]
    height, width = image.shape[-2:]
    found = first_conv(pl_module)
    stride = found[1].stride if found is not None else (1, 1)
    grid = (height // stride[0], width // stride[1])
    extra = T - grid[0] * grid[1]  # tokens before the patches (a class token)
    if extra < 0:
        return draw_tokens(weights, [str(t) for t in range(T)], title)
    # With a class token, where it looks decides the class; without, the mean over all patches.
    received = weights[:, 0, extra:] if extra else weights[:, :, extra:].mean(1)  # (nh, patches)
    picture = displayable(image, *statistics)[0]
    fig = figure(2.4 * heads + 0.6, 2.8)
    for h, axis in enumerate(np.atleast_1d(fig.subplots(1, heads))):
        show(axis, picture)
        # One scale for every head, so that the one colour bar reads for each.
        overlay = axis.imshow(
            received[h].view(grid).numpy(), cmap="inferno", alpha=0.6, interpolation="nearest",
            extent=(-0.5, width - 0.5, height - 0.5, -0.5), vmin=0, vmax=float(received.max()),
        )  # fmt: skip
        axis.set_title(f"head {h}", fontsize=9)
    fig.colorbar(overlay, ax=fig.axes, shrink=0.8)
    source = "from the class token" if extra else "received, mean over patches"
    fig.suptitle(f"{title}: attention {source}", fontsize=9)
    return fig
