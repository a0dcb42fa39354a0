"""Content digest of a stored file."""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass

_CHUNK = 1024 * 1024


@dataclass(frozen=True)
class FileDigest:
    sha256: str
    size_bytes: int


def file_digest(path: str | os.PathLike[str]) -> FileDigest:
    """SHA-256 (hex) and size in bytes of a file, read in 1 MiB chunks."""
    h = hashlib.sha256()
    size = 0
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            h.update(chunk)
            size += len(chunk)
    return FileDigest(sha256=h.hexdigest(), size_bytes=size)
