"""The local artifact store: objects are files under one folder (the default, one host or a
shared mount); a conditional write is compare-and-set under a flock."""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

from thaw.artifacts.errors import ArtifactNotFound, ArtifactStoreError, VersionConflict
from thaw.artifacts.store import Versioned
from thaw.atomic import atomic_path, atomic_write_bytes, exclusive_lock, remove_tree

LOCK_FILE = ".lock"


class LocalStore:
    def __init__(self, root: str | Path):
        self.root = Path(root)

    def url(self, key: str) -> str:
        return str(self._path(key))

    def check(self) -> None:
        try:
            self.root.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ArtifactStoreError(
                f"artifact folder {self.root} cannot be created: {exc.strerror}",
                "set THAW_DATA_DIR to a writable folder",
            ) from exc

    def get(self, key: str) -> Versioned:
        path = self._path(key)
        try:
            data = path.read_bytes()
        except (FileNotFoundError, IsADirectoryError) as exc:
            raise ArtifactNotFound(f"no artifact {key!r}") from exc
        return Versioned(data=data, version=_version(data))

    def put(
        self, key: str, data: bytes, *, if_version: str | None = None, if_absent: bool = False
    ) -> str:
        path = self._path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        with exclusive_lock(self.root / LOCK_FILE):
            if if_version is not None or if_absent:
                try:
                    current: str | None = _version(path.read_bytes())
                except FileNotFoundError:
                    current = None
                if (if_absent and current is not None) or (
                    if_version is not None and current != if_version
                ):
                    raise VersionConflict(f"artifact {key!r} changed since it was read")
            atomic_write_bytes(path, data)
        return _version(data)

    def upload_file(self, key: str, path: Path) -> None:
        target = self._path(key)
        target.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(target) as tmp:
            shutil.copyfile(path, tmp)

    def download_file(self, key: str, path: Path) -> None:
        source = self._path(key)
        if not source.is_file():
            raise ArtifactNotFound(f"no artifact {key!r}")
        path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(path) as tmp:
            shutil.copyfile(source, tmp)

    def read_range(self, key: str, start: int, end: int) -> bytes:
        try:
            with open(self._path(key), "rb") as f:
                f.seek(start)
                return f.read(end - start + 1)
        except FileNotFoundError as exc:
            raise ArtifactNotFound(f"no artifact {key!r}") from exc

    def size(self, key: str) -> int:
        try:
            return self._path(key).stat().st_size
        except FileNotFoundError as exc:
            raise ArtifactNotFound(f"no artifact {key!r}") from exc

    def delete_prefix(self, prefix: str) -> None:
        for key in self.list(prefix):
            remove_tree(self._path(key))

    def list(self, prefix: str) -> list[str]:
        if not self.root.is_dir():
            return []
        keys = []
        for path in self.root.rglob("*"):
            if not path.is_file() or path.name.startswith("."):
                continue
            key = path.relative_to(self.root).as_posix()
            if key.startswith(prefix):
                keys.append(key)
        return sorted(keys)

    def _path(self, key: str) -> Path:
        parts = key.split("/")
        if not key or any(p in ("", ".", "..") for p in parts):
            raise ValueError(f"invalid artifact key {key!r}")
        return self.root.joinpath(*parts)


def _version(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()
