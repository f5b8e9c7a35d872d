"""Torch's fused optimizer step, where it exists for the device and the config chose no implementation.

Torch's Adam, AdamW and SGD default to a Python loop over the parameters on a CPU (``foreach`` is
the default on CUDA); ``fused=True`` updates every parameter in one kernel per step. For the small
models here that loop is a tenth of a training step on a CPU (docs/speed.md). A config that sets
``fused`` or ``foreach`` (``--optimizer.init_args.fused false``) keeps its choice.
"""

import torch
from torch.optim import SGD, Adam, Optimizer

FUSED_DEVICES = ("cpu", "cuda")  # where torch has fused Adam, AdamW and SGD kernels (and CI runs them)


def fuse(optimizer: Optimizer, device: torch.device) -> bool:
    """Switches ``optimizer`` to its fused step when it is torch's Adam, AdamW or SGD, its parameters are
    floating point on ``device`` (a CPU or CUDA device) and no group chose ``fused`` or ``foreach``;
    returns whether it did. Called before the first step (a restored checkpoint then sets its own groups)."""
    groups = optimizer.param_groups
    kind = torch.device(device).type
    if not isinstance(optimizer, Adam | SGD) or kind not in FUSED_DEVICES:
        return False
    chosen = any(group.get("fused") is not None or group.get("foreach") is not None for group in groups)
    differentiable = any(group.get("differentiable") for group in groups)  # fused steps are not differentiable
    params = [p for group in groups for p in group["params"]]
    if chosen or differentiable or not all(p.is_floating_point() and p.device.type == kind for p in params):
        return False
    for group in groups:  # the step reads `fused` from each group
        group["fused"] = True
    return True
