"""Class names for pictures: the data module's own, else CIFAR's names file, else the class indices.

Digits (MNIST, scikit-learn's digits) are their indices. CIFAR's archives hold the names as
text (``batches.meta.txt`` for CIFAR-10; ``fine_label_names.txt``, ``coarse_label_names.txt``
for CIFAR-100); the data module extracts only the record files, so the names file is read from
the extracted folder when present there, else straight out of the archive, into memory (nothing
is extracted, so no member can land anywhere).
"""

import tarfile
import zlib
from pathlib import Path

from lightning.pytorch.utilities import rank_zero_warn

NAMES_FILES = {10: "batches.meta.txt", 100: "fine_label_names.txt", 20: "coarse_label_names.txt"}
LONGEST = 1 << 16  # bytes: a names file is a few hundred; anything longer is not one


def class_names(datamodule, num_classes: int) -> list[str]:
    """``num_classes`` names: ``datamodule.class_names`` when it has them, else CIFAR's file, else "0", "1", ..."""
    names = getattr(datamodule, "class_names", None)
    if names is None:
        names = cifar_names(datamodule, num_classes)
    if names is not None and len(names) == num_classes:
        return [str(name) for name in names]
    return [str(i) for i in range(num_classes)]


def cifar_names(datamodule, num_classes: int) -> list[str] | None:
    """The names in a CIFAR data module's names file (extracted, or inside its archive), if any."""
    data_dir, folder, archive = (getattr(datamodule, name, None) for name in ("data_dir", "folder", "archive"))
    file = NAMES_FILES.get(num_classes)
    if None in (data_dir, folder, archive, file):
        return None
    extracted, packed = Path(data_dir) / folder / file, Path(data_dir) / archive
    if extracted.is_file() and extracted.stat().st_size <= LONGEST:
        text = extracted.read_bytes()
    elif packed.is_file():
        text = read_member(packed, f"{folder}/{file}")
    else:
        return None
    names = [line.strip() for line in (text or b"").decode("utf-8", errors="replace").splitlines() if line.strip()]
    return names if len(names) == num_classes else None


def read_member(archive: Path, name: str) -> bytes | None:
    """The content of the regular file ``name`` in a tar.gz, read into memory; None if absent or unreadable."""
    try:
        with tarfile.open(archive, "r:gz") as tar:
            for member in tar:
                if member.name.removeprefix("./") == name:
                    if not member.isfile() or member.size > LONGEST:
                        return None
                    with tar.extractfile(member) as source:
                        return source.read()
    except (tarfile.TarError, EOFError, zlib.error, OSError) as error:
        rank_zero_warn(f"{archive}: class names not readable ({error}); pictures show class indices")
    return None
