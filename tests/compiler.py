"""Whether torch.compile can build code on this machine: compiled tests skip, saying why, where it cannot."""

import functools

import torch


@functools.cache
def compiler_problem() -> str | None:
    """Why torch.compile cannot build CPU code here (no C++ compiler, an unsupported platform), or None."""
    try:
        torch.compile(lambda x: x * 2 + 1)(torch.ones(3))
    except Exception as error:  # noqa: BLE001 - any failure means the same: nothing compiled to test here
        return f"{type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''}"
    return None
