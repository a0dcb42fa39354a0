"""The artifact store interface: keyed objects, read whole or by range, written
unconditionally or only over the version the writer read (compare-and-set)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Protocol


@dataclass(frozen=True)
class Versioned:
    """An object's bytes with the version (ETag) they were read at."""

    data: bytes
    version: str


class ArtifactStore(Protocol):
    """Keys are ``/``-separated relative paths (``runs/<job>/checkpoints/index.json``)."""

    def url(self, key: str) -> str:
        """Where the object lives, for logs and messages (no secret in it)."""
        ...

    def check(self) -> None:
        """Raise ArtifactStoreError (credentials, bucket, endpoint) unless the store answers."""
        ...

    def get(self, key: str) -> Versioned:
        """The object and its version; ArtifactNotFound when absent."""
        ...

    def put(
        self, key: str, data: bytes, *, if_version: str | None = None, if_absent: bool = False
    ) -> str:
        """Write ``data``; with ``if_version`` only over that version, with ``if_absent`` only
        where no object is. VersionConflict when the condition fails. Returns the new version."""
        ...

    def upload_file(self, key: str, path: Path) -> None:
        """Store a local file (multipart where the store splits large ones)."""
        ...

    def download_file(self, key: str, path: Path) -> None:
        """Write the object to ``path`` (replaced in one rename); ArtifactNotFound when absent."""
        ...

    def read_range(self, key: str, start: int, end: int) -> bytes:
        """Bytes ``start``..``end`` inclusive of the object."""
        ...

    def size(self, key: str) -> int:
        """The object's size in bytes; ArtifactNotFound when absent."""
        ...

    def delete_prefix(self, prefix: str) -> None:
        """Remove every object whose key starts with ``prefix``."""
        ...

    def list(self, prefix: str) -> list[str]:
        """Keys under ``prefix``, sorted."""
        ...
