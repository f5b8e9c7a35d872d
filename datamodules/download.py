"""Downloads with checksums and mirror fallback; nothing here runs unless a file is missing."""

import hashlib
import os
import urllib.request
from pathlib import Path


def md5sum(path: Path) -> str:
    digest = hashlib.md5()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def download(mirrors: list[str], filename: str, md5: str, directory: Path, timeout: float = 30.0) -> Path:
    """Fetches ``filename`` from the first mirror that serves it with the right checksum.

    The file is written beside its destination and renamed into place only once verified,
    so an interrupted or corrupt download never looks like a finished one.
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    target = directory / filename
    partial = directory / f".{filename}.part"
    errors = []
    for mirror in mirrors:
        url = mirror.rstrip("/") + "/" + filename
        try:
            with urllib.request.urlopen(url, timeout=timeout) as response, open(partial, "wb") as f:
                while block := response.read(1 << 20):
                    f.write(block)
        except OSError as error:  # URLError, HTTPError, timeouts and disk errors are all OSErrors
            errors.append(f"{url}: {error}")
            continue
        actual = md5sum(partial)
        if actual != md5:
            errors.append(f"{url}: checksum mismatch (md5 {actual}, expected {md5})")
            continue
        os.replace(partial, target)
        return target
    partial.unlink(missing_ok=True)
    tried = "\n  ".join(errors)
    raise RuntimeError(
        f"Could not download {filename} into {directory}. Tried:\n  {tried}\n"
        f"With no network, copy {filename} into {directory} by hand."
    )
