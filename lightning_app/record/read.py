"""Reading a file that anyone may have put in a run folder or beside a checkpoint, safely; and
writing one so that a reader never sees half of it (``replace_file``).

Such a file may be anything: a link to ``/dev/zero`` (read whole, it fills the memory), a FIFO
(opening it waits for a writer forever), a folder, a sparse file of gigabytes. So it is opened
without blocking, checked to be a regular file on the open descriptor (a file swapped after a
check cannot slip through), and read up to a bound. Nothing here imports torch or Lightning:
``compare`` and the sweep use it too.
"""

import os
import stat
from pathlib import Path

CONFIG_LIMIT = 1 << 24  # bytes: far more than any config


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


def check_config_files(args: list[str]) -> None:
    """Fails, naming it, when a command line names a file that the CLI's parser would read as a config
    and that is not a regular one: it would wait on a FIFO for ever and read ``/dev/zero`` until the
    memory is gone. A ``--config`` (``-c``) must be a regular file of at most ``CONFIG_LIMIT`` bytes;
    any other value that names a FIFO, a device or a socket is refused too, since the parser reads
    the file a class's argument names (``--model model.yaml``). Missing files are the parser's to report."""
    for i, arg in enumerate(args):
        path = arg.split("=", 1)[1] if arg.startswith("--config=") else None
        if arg in ("--config", "-c") and i + 1 < len(args):
            path = args[i + 1]
        if path and os.path.exists(path):
            read_bounded(path, CONFIG_LIMIT)
        option, equals, value = arg.partition("=") if arg.startswith("-") else ("", "", arg)
        if not equals and not value:
            continue  # an option's name; its value is the next argument
        try:
            mode = os.stat(value).st_mode  # links followed; a FIFO is not opened
        except (OSError, ValueError):  # not a path: most values
            continue
        if not (stat.S_ISREG(mode) or stat.S_ISDIR(mode)):
            option = option or (args[i - 1] if i and args[i - 1].startswith("-") else "")
            kind = "a FIFO" if stat.S_ISFIFO(mode) else "a device or socket"
            given = f", given to {option}," if option else ""
            raise ValueError(f"{value}{given} is {kind}: the parser would read it as a config; give a regular file")


def read_text(path: str | Path, limit: int) -> str:
    """``read_bounded`` as UTF-8 text; text that is not UTF-8 is a ``ValueError`` naming the file."""
    try:
        return read_bounded(path, limit).decode()
    except UnicodeDecodeError as error:
        raise ValueError(f"{path} is not UTF-8 text: {error}") from None


def replace_file(path: Path, content: str | bytes) -> None:
    """Writes ``content`` into a partial file beside ``path`` and renames it over ``path``: a reader
    sees the old file or the new one, never half of either. The partial file's name holds this
    process's id, so two processes writing one path (two runs sharing a folder, two sweep workers)
    never write into the same partial file; a failed write leaves none behind. No fsync: for
    records and pictures, not checkpoints (``checkpoints/files.py``)."""
    partial = path.with_name(f".{path.name}.{os.getpid()}.part")
    try:
        if isinstance(content, str):
            partial.write_text(content, encoding="utf-8")
        else:
            partial.write_bytes(content)
        os.replace(partial, path)
    finally:
        partial.unlink(missing_ok=True)
