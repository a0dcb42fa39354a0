"""A run's checkpoints in an artifact store (local folder or S3 bucket), fenced like the
run folder: files go up first under their sha256 (``blobs/<sha256>``, so a stale writer can
only rewrite identical bytes), then one conditional write of ``index.json`` (If-Match the
version read, If-None-Match: * for the first) makes them visible, carrying the claim's
fencing token; a writer whose token is below the index's is refused (FencedOut). ``best``
and ``last`` are fields of the index. :func:`fetch_checkpoint` rebuilds a checkpoint folder
on a host that has no copy of it."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

from thaw.artifacts.errors import ArtifactNotFound, VersionConflict
from thaw.artifacts.store import ArtifactStore
from thaw.checkpoints.atomic import atomic_write_json, fsync_dir, remove_tree, replace_dir
from thaw.checkpoints.commit import check_fence
from thaw.checkpoints.errors import CheckpointNotFound, CorruptCheckpoint
from thaw.checkpoints.hashing import sha256_file
from thaw.checkpoints.index import INDEX_VERSION, Entry, Index
from thaw.checkpoints.layout import BEST, INDEX_FILE, LAST, META_FILE, validate_name

Update = Callable[[Index], Index]
BLOBS = "blobs"
META_FORMAT = "thaw.checkpoint"
META_VERSION = 1
PUBLISH_TRIES = 20


@dataclass(frozen=True)
class StoreRun:
    """One run's place in an artifact store."""

    store: ArtifactStore
    prefix: str


def run_prefix(job_id: str) -> str:
    """Where a job's checkpoints live in the store."""
    return f"runs/{job_id}/checkpoints"


def read_store_index(store: ArtifactStore, prefix: str) -> tuple[Index, str | None]:
    """The index and the version it was read at (None: nothing published yet)."""
    try:
        got = store.get(f"{prefix}/{INDEX_FILE}")
    except ArtifactNotFound:
        return Index(), None
    try:
        data = json.loads(got.data)
        if not isinstance(data, dict) or data.get("version") != INDEX_VERSION:
            raise ValueError("unknown index version")
        return Index.from_dict(data), got.version
    except (ValueError, KeyError, TypeError) as exc:
        raise CorruptCheckpoint(f"{store.url(prefix)}/{INDEX_FILE} is unreadable: {exc}") from exc


def raise_store_fence(store: ArtifactStore, prefix: str, token: int | None) -> None:
    """Claim the run for ``token`` in the store: from now on no older claim publishes there."""
    if token is not None:
        _write_index(store, prefix, token, lambda index: index)


def publish_to_store(
    store: ArtifactStore,
    prefix: str,
    token: int | None,
    folder: Path,
    update: Update,
    confirm: Callable[[], object] | None = None,
) -> Index:
    """Upload the files of checkpoint ``folder`` (its meta.json lists them), then write
    ``update(index)`` conditionally, only while ``token`` holds the fence and ``confirm()``
    passes. Blobs only the dropped checkpoints used are removed afterwards."""
    entry = Entry.from_dict(json.loads((folder / META_FILE).read_text(encoding="utf-8")))
    for info in entry.files:
        store.upload_file(f"{prefix}/{BLOBS}/{info.sha256}", folder / info.name)
    return _write_index(store, prefix, token, update, confirm)


def fetch_checkpoint(store: ArtifactStore, prefix: str, name: str, dest: Path) -> Path:
    """Download checkpoint ``name`` (``best``, ``last`` or ``epoch-<k>``) into
    ``dest/<epoch-k>`` unless a verified copy is there; returns that folder."""
    index, _ = read_store_index(store, prefix)
    target = validate_name(name)
    if target in (BEST, LAST):
        target = (index.best if target == BEST else index.last) or ""
    entry = index.get(target)
    if entry is None:
        raise CheckpointNotFound(f"no checkpoint {name!r} in {store.url(prefix)}")
    folder = dest / entry.name
    if _matches(folder, entry):
        return folder
    dest.mkdir(parents=True, exist_ok=True)
    tmp = dest / f".{entry.name}.tmp-fetch"
    remove_tree(tmp)
    try:
        for info in entry.files:
            path = tmp / info.name
            store.download_file(f"{prefix}/{BLOBS}/{info.sha256}", path)
            if path.stat().st_size != info.size or sha256_file(path) != info.sha256:
                raise CorruptCheckpoint(f"{entry.name}/{info.name} does not match its sha256")
        meta = {"format": META_FORMAT, "version": META_VERSION, **entry.to_dict()}
        atomic_write_json(tmp / META_FILE, meta)
        fsync_dir(tmp)
        replace_dir(tmp, folder)
    except BaseException:
        remove_tree(tmp)
        raise
    return folder


def _matches(folder: Path, entry: Entry) -> bool:
    if not (folder / META_FILE).is_file():
        return False
    return all(
        (folder / f.name).is_file()
        and (folder / f.name).stat().st_size == f.size
        and sha256_file(folder / f.name) == f.sha256
        for f in entry.files
    )


def _write_index(
    store: ArtifactStore,
    prefix: str,
    token: int | None,
    update: Update,
    confirm: Callable[[], object] | None = None,
) -> Index:
    key = f"{prefix}/{INDEX_FILE}"
    for _ in range(PUBLISH_TRIES):
        before, version = read_store_index(store, prefix)
        check_fence(store.url(prefix), before, token)
        if confirm is not None:
            confirm()
        fence = max((t for t in (before.token, token) if t is not None), default=None)
        after = replace(update(before), token=fence)
        if version is not None and after == before:
            return after
        data = (json.dumps(after.to_dict(), indent=2, allow_nan=False) + "\n").encode()
        try:
            store.put(key, data, if_version=version, if_absent=version is None)
        except VersionConflict:
            continue  # another writer published in between: read again, check the fence again
        _drop_unused_blobs(store, prefix, before, after)
        return after
    raise VersionConflict(f"{store.url(key)} kept changing", "another writer holds the run")


def _drop_unused_blobs(store: ArtifactStore, prefix: str, before: Index, after: Index) -> None:
    kept = {f.sha256 for e in after.entries for f in e.files}
    for entry in before.entries:
        for info in entry.files:
            if info.sha256 not in kept:
                store.delete_prefix(f"{prefix}/{BLOBS}/{info.sha256}")
                kept.add(info.sha256)
