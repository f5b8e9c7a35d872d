"""How the commands end once their work is done: at once, with everything written and flushed.

A Python that exits normally then tears down every module it imported, object by object: 0.15 s after
a run (torch, Lightning, W&B) and 0.5 s after a sweep (Optuna, SQLAlchemy, matplotlib), while the user
waits and nothing is left to write (docs/speed.md). ``quick_exit`` does what a normal exit does before
that teardown (waits for the threads that are not daemons, runs the ``atexit`` handlers: W&B's,
logging's, multiprocessing's, temporary folders'), flushes the standard streams and ends the process.
A process of a distributed job exits normally: its process group is torn down as torch expects.
"""

import atexit
import os
import sys
import threading
from typing import NoReturn


def distributed() -> bool:
    """True in a process of a multi-process job (torchrun, SLURM, Lightning's DDP launcher)."""
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        return True
    torch_distributed = sys.modules.get("torch.distributed")
    return bool(torch_distributed and torch_distributed.is_available() and torch_distributed.is_initialized())


def quick_exit(code: int = 0) -> NoReturn | None:
    """Ends the process with ``code`` after the threads, the ``atexit`` handlers and the streams; returns
    (for a normal exit) in a distributed job or where it is not called from the main thread."""
    if distributed() or threading.current_thread() is not threading.main_thread():
        return None
    for thread in threading.enumerate():
        if thread is not threading.current_thread() and not thread.daemon:
            thread.join()
    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):  # a closed pipe or stream: nothing more can reach it
            pass
    os._exit(code)
