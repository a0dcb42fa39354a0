"""Uploads kept in the object store, on a worker: a bounded local read-through cache of them
unpacked, by content hash, the least recently used evicted first (THAW_DATASET_CACHE_BYTES).

An entry a job reads inside ``held_uploads()`` is never evicted while that block lasts: the
job holds a shared lock on it, and eviction skips what it cannot lock alone."""

from __future__ import annotations

import contextlib
import fcntl
import os
import secrets
import shutil
from collections.abc import Iterator
from contextvars import ContextVar
from pathlib import Path

from thaw.artifacts import ArtifactStore, open_store
from thaw.atomic import exclusive_lock
from thaw.data.shape import upload_cache_dir
from thaw.settings import Settings
from thaw.store import Dataset
from thaw.uploads import stored_bytes, unpack_upload

USED_MARK = ".used"
LOCK_FILE = ".lock"

_held: ContextVar[list[int] | None] = ContextVar("held_uploads", default=None)


@contextlib.contextmanager
def held_uploads() -> Iterator[None]:
    """The cache entries handed out in this block (to this thread) stay until it ends."""
    fds: list[int] = []
    token = _held.set(fds)
    try:
        yield
    finally:
        _held.reset(token)
        for fd in fds:
            os.close(fd)


def upload_path(record: Dataset, settings: Settings) -> Path:
    """Where the upload's data lies on this host: its folder under THAW_DATA_DIR, or, for an
    upload kept in the object store, its unpacked copy in the cache (fetched on first use,
    riding out an outage of the store as a job's uploads do)."""
    key = record.extra.get("object")
    if not isinstance(key, str):
        return Path(record.path)
    store = open_store(settings, outage_seconds=settings.artifacts_outage_seconds)
    entry = cached_upload(store, key, record, settings)
    return entry / record.path


def cached_upload(store: ArtifactStore, key: str, record: Dataset, settings: Settings) -> Path:
    """The cache's folder of the upload at ``key`` (its sha256 names it), unpacked with the
    same limits as when it was uploaded; then older entries are evicted to fit the bound."""
    root = upload_cache_dir(settings)
    entry = root / record.sha256
    with exclusive_lock(root / LOCK_FILE):  # worker processes of one host share the cache
        if not entry.is_dir():
            _fill(store, key, record, settings, entry)
        (entry / USED_MARK).touch()
        _hold(entry)
        evict(root, settings.dataset_cache_bytes, keep=entry)
    return entry


def evict(root: Path, max_bytes: int, keep: Path) -> list[str]:
    """Remove the least recently used entries until the cache holds at most ``max_bytes``
    (``keep``, and entries a job holds, stay); returns the names removed."""
    entries = [p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")]
    sizes = {p: stored_bytes(p) for p in entries}
    total = sum(sizes.values())
    removed: list[str] = []
    for path in sorted(entries, key=_last_used):
        if total <= max_bytes:
            break
        if path == keep or not _remove_unheld(path):
            continue
        total -= sizes[path]
        removed.append(path.name)
    return removed


def _use_file(entry: Path) -> Path:
    return entry.parent / f".{entry.name}.use"


def _hold(entry: Path) -> None:
    fds = _held.get()
    if fds is None:
        return
    fd = os.open(_use_file(entry), os.O_RDWR | os.O_CREAT, 0o644)
    fcntl.flock(fd, fcntl.LOCK_SH)
    fds.append(fd)


def _remove_unheld(entry: Path) -> bool:
    """Remove ``entry`` unless a job holds it. Holds and removals both happen under the
    cache's lock, so the use file can go with the entry."""
    use = _use_file(entry)
    fd = os.open(use, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        shutil.rmtree(entry, ignore_errors=True)
        use.unlink(missing_ok=True)
        return True
    finally:
        os.close(fd)


def _fill(store: ArtifactStore, key: str, record: Dataset, settings: Settings, entry: Path) -> None:
    tmp = entry.parent / f".{entry.name}.tmp-{secrets.token_hex(6)}"
    try:
        tmp.mkdir(parents=True)
        upload = tmp / "upload"
        store.download_file(key, upload)
        kind = str(record.extra.get("kind", "archive"))
        shown = str(record.extra.get("filename", record.name))
        unpack_upload(upload, kind, shown, tmp, settings)
        upload.unlink(missing_ok=True)
        os.replace(tmp, entry)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _last_used(path: Path) -> float:
    try:
        return (path / USED_MARK).stat().st_mtime
    except FileNotFoundError:
        return 0.0
