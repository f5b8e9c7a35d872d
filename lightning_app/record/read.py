"""Reading a file that anyone may have put in a run folder or beside a checkpoint, safely.

Such a file may be anything: a link to ``/dev/zero`` (read whole, it fills the memory), a FIFO
(opening it waits for a writer forever), a folder, a sparse file of gigabytes. So it is opened
without blocking, checked to be a regular file on the open descriptor (a file swapped after a
check cannot slip through), and read up to a bound. Nothing here imports torch or Lightning:
``compare`` and the sweep use it too.
"""

import os
import stat
from pathlib import Path


def open_regular(path: str | Path):
    """``path`` opened for binary reading if it is a regular file (links followed); else a ``ValueError``
    naming it (missing: ``FileNotFoundError``). A FIFO is never waited on, a device never read."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)  # non-blocking: opening a FIFO returns at once
    except FileNotFoundError:
        raise
    except OSError as error:  # a link loop, no permission
        raise ValueError(f"{path} cannot be opened ({error.strerror}); replace it with a regular file") from None
    mode = os.fstat(fd).st_mode
    if not stat.S_ISREG(mode):
        os.close(fd)
        kind = "a folder" if stat.S_ISDIR(mode) else "a FIFO" if stat.S_ISFIFO(mode) else "a device or socket"
        raise ValueError(f"{path} is {kind}, not a regular file: it is not read; give a regular file")
    os.set_blocking(fd, True)
    return os.fdopen(fd, "rb")


def read_bounded(path: str | Path, limit: int) -> bytes:
    """The bytes of the regular file at ``path`` (links followed), at most ``limit`` of them; more is a
    ``ValueError`` naming the file (missing: ``FileNotFoundError``)."""
    with open_regular(path) as file:
        data = file.read(limit + 1)
    if len(data) > limit:
        raise ValueError(f"{path} is larger than {limit} bytes, far more than such a file holds: it is not read")
    return data


def read_text(path: str | Path, limit: int) -> str:
    """``read_bounded`` as UTF-8 text; text that is not UTF-8 is a ``ValueError`` naming the file."""
    try:
        return read_bounded(path, limit).decode()
    except UnicodeDecodeError as error:
        raise ValueError(f"{path} is not UTF-8 text: {error}") from None
