"""Checkpoint files you can trust: whole, checked before they load, and never running code.

Writing (``AtomicCheckpointIO``, installed for every run by ``FaultTolerance``): ``torch.save`` into
``<name>.part`` beside the target, fsync, rename over the target. Lightning's own writer goes through
the system temp folder, and its final move becomes a non-atomic copy when that folder is on another
filesystem. The SHA-256 of the bytes, taken while they are written (no second read), then goes to
``<name>.sha256`` in ``sha256sum`` format (``sha256sum -c last.ckpt.sha256`` checks it by hand),
renamed into place too but not fsynced (an fsync costs as much as the whole write of a small
model's checkpoint): a power cut can leave it missing or empty, and it then reads as missing. The
old record is removed before the new checkpoint takes its name, so a crash in between leaves a
checkpoint without a record, never one with a wrong record.

Loading (``load_checkpoint``: the trainer, the CLI, ``generate``): local files only; the record is
checked first (a mismatch is an error naming the file, a missing record a warning), then
``torch.load(weights_only=True)``, which unpickles tensors and plain data only. A file is hashed
once per process: the digest of a file this process wrote, or already checked, is remembered.
On Linux the tensors are mapped from the checked file, not read into fresh memory (``_torch_load``).

"""

import errno
import hashlib
import os
import pickle
import re
import urllib.parse
from pathlib import Path
from typing import Any

import torch
from lightning.fabric.utilities.cloud_io import _is_local_file_protocol
from lightning.pytorch.plugins.io import TorchCheckpointIO
from lightning.pytorch.utilities import rank_zero_warn

from lightning_app.record.read import open_regular, read_bounded

PARTIAL_SUFFIX = ".part"  # not `.ckpt`, so a half-written file is never taken for a checkpoint
RECORD_SUFFIX = ".sha256"
RECORD_LIMIT = 1 << 12  # bytes: a record is one line of a digest and a file name
_checked: dict[str, tuple] = {}  # path -> (device, inode, size, mtime) of the file there known to be whole


def record_path(path: str | Path) -> Path:
    return Path(path).with_name(Path(path).name + RECORD_SUFFIX)


def _stamp(stat: os.stat_result) -> tuple:
    return stat.st_dev, stat.st_ino, stat.st_size, stat.st_mtime_ns


class CorruptCheckpoint(ValueError):
    """A checkpoint whose bytes fail their integrity record, or that does not unpickle as tensors and plain data."""


class _HashingWriter:
    """The file ``torch.save`` writes through: hashes every byte; keeps the OSError that torch would wrap."""

    def __init__(self, file) -> None:
        self.file, self.sha256, self.error = file, hashlib.sha256(), None

    def write(self, data) -> int:
        try:
            written = self.file.write(data)
        except OSError as error:
            self.error = error
            raise
        self.sha256.update(data)
        return written

    def flush(self) -> None:
        self.file.flush()


def _write_durably(path: Path, write, before_rename=lambda: None, fsync: bool = True) -> None:
    """``write(file)`` into ``<path>.part``, fsync (with ``fsync``), rename over ``path``; the partial file never stays."""
    partial = path.with_name(path.name + PARTIAL_SUFFIX)
    try:
        with open(partial, "wb") as file:
            write(file)
            file.flush()
            if fsync:
                os.fsync(file.fileno())  # the bytes reach the disk before the name points at them
        before_rename()
        os.replace(partial, path)
    finally:
        partial.unlink(missing_ok=True)


class AtomicCheckpointIO(TorchCheckpointIO):
    """Atomic writes with an integrity record; loads that are checked, local and ``weights_only``."""

    def save_checkpoint(self, checkpoint: dict[str, Any], path, storage_options: Any | None = None) -> None:
        if not _is_local_file_protocol(path):
            return super().save_checkpoint(checkpoint, path, storage_options)
        path = Path(path)
        digest = []

        def write(file) -> None:
            writer = _HashingWriter(file)
            try:
                torch.save(checkpoint, writer)
            except RuntimeError:
                if writer.error is not None:  # torch reports a failed write as "unexpected pos"
                    raise writer.error from None
                raise
            digest.append(writer.sha256.hexdigest())

        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            # The old record goes before the new checkpoint takes the name: never a checkpoint beside a wrong record.
            _write_durably(path, write, lambda: record_path(path).unlink(missing_ok=True))
            record = f"{digest[0]}  {path.name}\n".encode()
            _write_durably(record_path(path), lambda f: f.write(record), fsync=False)  # see the module's docstring
        except OSError as error:
            if error.errno in (errno.ENOSPC, errno.EDQUOT):
                raise OSError(
                    error.errno,
                    f"No space left to write checkpoint {path} ({os.strerror(error.errno)} in {path.parent}); "
                    "what that name holds is still a whole checkpoint. Free space there, or write checkpoints to "
                    "another disk with --checkpoint.dirpath",
                ) from error
            raise
        _checked[str(path.resolve())] = _stamp(path.stat())

    def load_checkpoint(self, path, map_location: Any = "cpu", weights_only: bool | None = None) -> dict[str, Any]:
        # "cpu" as Lightning's own default does: a checkpoint written on a GPU loads on any machine.
        if weights_only is False:
            raise ValueError(f"{path}: weights_only=False is refused; checkpoints load with weights_only=True only")
        return load_checkpoint(path, map_location)

    def remove_checkpoint(self, path) -> None:
        super().remove_checkpoint(path)
        if _is_local_file_protocol(path):
            record_path(path).unlink(missing_ok=True)


def _recorded_digest(record: bytes) -> str | None:
    """The lower-case SHA-256 of a record's first line as ``sha256sum -c`` reads it (``<hex>  <name>``,
    ``<hex> *<name>`` for binary mode, ``SHA256 (<name>) = <hex>`` as ``--tag`` writes; either hex case);
    None without one."""
    line = record.split(b"\n", 1)[0].decode("ascii", errors="replace").rstrip("\r")
    match = re.match(r"\\?([0-9a-fA-F]{64})( [ *]|$)", line) or re.fullmatch(r"SHA256 \(.*\) = ([0-9a-fA-F]{64})", line)
    return match[1].lower() if match else None


def _verify(path: Path, file) -> bool:
    """Checks the open ``file`` against ``path``'s record; False when ``path`` was replaced meanwhile."""
    stat = os.fstat(file.fileno())
    if _checked.get(str(path.resolve())) == _stamp(stat):
        return True
    record = record_path(path.resolve())
    try:
        expected = _recorded_digest(read_bounded(record, RECORD_LIMIT))
    except FileNotFoundError:
        rank_zero_warn(f"{path} has no integrity record ({record.name}): it is loaded unchecked")
        return True
    except ValueError as error:  # a folder, a device, a link to /dev/zero: never a record that power cuts leave
        raise ValueError(f"{path}: its integrity record is unusable: {error}") from None
    if expected is None:
        rank_zero_warn(
            f"{path}: its integrity record {record.name} holds no SHA-256 (empty or cut short, as a power cut "
            "before it reached the disk leaves it): it is loaded unchecked"
        )
        return True
    sha256 = hashlib.sha256()
    while block := file.read(1 << 20):
        sha256.update(block)
    file.seek(0)
    if expected != sha256.hexdigest():
        if os.stat(path).st_ino != stat.st_ino:  # rewritten while we read: check the new file
            return False
        raise CorruptCheckpoint(
            f"{path} is corrupt: its SHA-256 is {sha256.hexdigest()}, its integrity record {record} says "
            f"{expected}. It was changed after it was written: do not use it "
            "(take another checkpoint of the run, or train again)"
        )
    _checked[str(path.resolve())] = _stamp(stat)
    return True


def newest_whole_checkpoint(folder: Path, but: Path) -> Path | None:
    """The newest ``*.ckpt`` in ``folder`` other than ``but`` whose integrity record verifies (unchecked ones
    are passed over), or None."""
    for path in sorted(folder.glob("*.ckpt"), key=lambda p: p.stat().st_mtime, reverse=True):
        if path.name == but.name or not record_path(path).is_file():
            continue
        try:
            with open_regular(path) as file:
                if _verify(path, file):
                    return path
        except (ValueError, OSError):
            continue
    return None


def local_path(path: str | None) -> str | None:
    """``path`` with a ``file://`` URL of this machine turned into the local path it names."""
    if path is None or not str(path).startswith("file://"):
        return path
    url = urllib.parse.urlsplit(str(path))
    if url.netloc not in ("", "localhost"):
        raise ValueError(f"{path}: a file:// URL of another machine ({url.netloc}); copy the file here and pass its path")
    return urllib.parse.unquote(url.path)


def _torch_load(file, map_location: Any) -> dict[str, Any]:
    """``torch.load(weights_only=True)`` of the open ``file``. Where a path names that very open file
    (Linux's ``/proc/self/fd``; not a path, which could be renamed over since the check) and it is in
    torch's zip format, its tensors are mapped (``mmap``, private: writes to them copy the page) instead
    of read into fresh memory: reading a kNN's 170 MB memory back for the test after fit took 0.45 s,
    mapping it next to nothing (docs/speed.md). A mapped file changed in place later would change the
    tensors: this project's writers never do that (a new file is renamed over the old)."""
    proc = f"/proc/self/fd/{file.fileno()}"
    zipped = file.read(4) == b"PK\x03\x04"  # the zip format of torch.save; the legacy one is not mapped
    file.seek(0)
    if zipped and os.path.exists(proc):
        try:
            return torch.load(proc, map_location=map_location, weights_only=True, mmap=True)
        except RuntimeError:  # a file system that cannot map, or a damaged file: reading says which
            file.seek(0)
    return torch.load(file, map_location=map_location, weights_only=True)


def load_checkpoint(path, map_location: Any = "cpu") -> dict[str, Any]:
    """A local checkpoint, checked against its integrity record, unpickled with ``weights_only=True``."""
    path = local_path(str(path)) if isinstance(path, str) else path
    if not _is_local_file_protocol(path):
        raise ValueError(
            f"{path}: remote checkpoints are not loaded. A checkpoint is a pickle; only local files are "
            "loaded, checked against their integrity record and with weights_only=True. Download it from a "
            "source you trust and pass the local path"
        )
    for _ in range(3):
        with open_regular(path) as file:
            if not _verify(Path(path), file):
                continue
            try:
                return _torch_load(file, map_location)
            except (pickle.UnpicklingError, RuntimeError, EOFError) as error:  # a crafted, truncated or foreign file
                lines = str(error).strip().splitlines() or [type(error).__name__]
                reason = next((line.split("error: ")[-1] for line in lines if "Unsupported global" in line), lines[0])
                message = f"{path} is not a checkpoint of tensors and plain data, and is not loaded ({reason.strip()})"
                raise CorruptCheckpoint(message) from error
    raise ValueError(f"{path} kept changing while it was read; is a run still writing it?")
