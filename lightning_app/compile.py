"""``--compile true``: every model's ``forward`` through ``torch.compile``, the same way for all.

The model compiles in place (``nn.Module.compile()``), not as ``torch.compile(model)``'s wrapper:
it keeps its class and its state-dict keys (no ``_orig_mod.`` prefix), so a checkpoint written by a
compiled run loads into an uncompiled model and ``python -m lightning_app.generate`` reads it as it
is. Lightning sees a plain LightningModule, which it then wraps as usual: under DDP each process
compiles its own copy inside the DDP wrapper (the order PyTorch's docs recommend), and bf16-mixed's
autocast surrounds the compiled forward like any other. The steps stay eager and call the compiled
``forward``: their logging and metric updates would only break the graph.

The option lives in the CLI, not in a model's ``__init__``, so checkpoints do not record it: how a
run executes is not part of the model.
"""

import lightning as L
from lightning.pytorch.utilities import rank_zero_info


def compile_model(model: L.LightningModule) -> bool:
    """Compiles ``model``'s forward in place; returns whether it did.

    A model with no trained parameters (kNN memorises the data, then searches it) has no training
    step to speed up and is left as it is.
    """
    if not any(parameter.requires_grad for parameter in model.parameters()):
        rank_zero_info(f"--compile: {type(model).__name__} trains no parameters; it runs uncompiled")
        return False
    model.compile()  # the first forward compiles (slow); later calls with the same shapes are fast
    return True
