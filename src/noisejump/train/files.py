"""Files a run writes: whole, fsynced, strict JSON, with SHA-256 digests.

Every file is created with mode 0666 less the umask (0644 under the usual umask 022), the
same as the PNGs Pillow writes. ``replace`` writes a temporary sibling, fsyncs it and
renames it over the target (rename is atomic on POSIX), so a reader or a crash sees the
old file or the new one, never half of one. JSON is strict (``allow_nan=False``): a NaN
or an infinity is a bug to report, not a token other JSON readers reject.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

_CHUNK = 1 << 20


def write(path: Path, data: bytes) -> str:
    """Create (or truncate) ``path``, write ``data`` and fsync it; return its SHA-256."""
    with open(path, "wb") as file:
        file.write(data)
        file.flush()
        os.fsync(file.fileno())
    return hashlib.sha256(data).hexdigest()


def replace(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically (temporary sibling, fsync, rename, fsync of
    the folder). On any error the temporary file is removed and ``path`` is untouched."""
    path = Path(path)
    temporary = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        write(temporary, data)
        os.replace(temporary, path)
        fsync(path.parent)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise


def sha256(path: Path) -> str:
    """The SHA-256 (hex) of the file ``path``, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        while chunk := file.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def strict_json(value: object, indent: int | None = 1) -> bytes:
    """``value`` as JSON text; ValueError if it holds NaN or an infinity."""
    return json.dumps(value, indent=indent, allow_nan=False).encode()


def fsync(path: Path) -> None:
    """fsync a file or a directory (a directory's fsync makes a rename in it durable)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
