"""Writing files so that nothing is ever half-written, and knowing when two paths are one file.

:func:`atomic_write` lets a writer fill a temporary file in the target's
folder and renames it over the target only when the writer succeeded; an
interrupted or failed write leaves the old file (or no file) behind. The
file gets the usual permissions (0666 minus the umask), not ``mkstemp``'s
owner-only 0600, so saved models and masks are readable like any other file.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write(path: str | os.PathLike, write: Callable[[str], object]) -> Path:
    """Call ``write(temporary_path)``, then rename the temporary file to ``path``."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        write(tmp)
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def file_identity(path: str | os.PathLike) -> tuple[str, object]:
    """A key equal for two paths that name one file (links, ``..``, case-folding file
    systems): the device and inode when the file exists, else the resolved path."""
    path = Path(path)
    try:
        stat = path.stat()
        return ("inode", (stat.st_dev, stat.st_ino))
    except OSError:
        return ("path", path.resolve())
