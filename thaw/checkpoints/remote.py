"""A run's checkpoints in an artifact store (local folder or S3 bucket), fenced like the
run folder: files go up first under their sha256 (``blobs/<sha256>``, so a stale writer can
only rewrite identical bytes), then one conditional write of ``index.json`` (If-Match the
version read, If-None-Match: * for the first) makes them visible, carrying the claim's
fencing token; a writer whose token is below the index's is refused (FencedOut). ``best``
and ``last`` are fields of the index, and so is ``resume``, the run's step resume point
(``R/resume``, with its training state) published the same way. :func:`fetch_checkpoint`
rebuilds a checkpoint folder and :func:`pull_run` a run folder's resume points on a host
that has no copy of them."""

from __future__ import annotations

import json
import secrets
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

from thaw.artifacts.errors import ArtifactNotFound, VersionConflict
from thaw.artifacts.open import object_store
from thaw.artifacts.store import ArtifactStore
from thaw.atomic import atomic_write_json, fsync_dir, remove_tree, replace_dir
from thaw.checkpoints.commit import check_fence, publish
from thaw.checkpoints.errors import CheckpointNotFound, CorruptCheckpoint
from thaw.checkpoints.index import (
    INDEX_VERSION,
    CheckpointInfo,
    Entry,
    FileInfo,
    Index,
    choose_best,
    index_checkpoints,
    read_index,
)
from thaw.checkpoints.layout import (
    BEST,
    INDEX_FILE,
    LAST,
    META_FILE,
    MODEL_FILE,
    STEP_DIR,
    TRAINING_STATE_FILE,
    checkpoints_dir,
    read_step_meta,
    step_dir,
    validate_name,
)
from thaw.hashing import sha256_file
from thaw.settings import Settings

Update = Callable[[Index], Index]
BLOBS = "blobs"
META_FORMAT = "thaw.checkpoint"
META_VERSION = 1
PUBLISH_TRIES = 20
RESUME_FILES = (MODEL_FILE, TRAINING_STATE_FILE)


@dataclass(frozen=True)
class StoreRun:
    """One run's place in an artifact store."""

    store: ArtifactStore
    prefix: str


def job_prefix(job_id: str) -> str:
    """Where everything of a job lives in the store."""
    return f"runs/{job_id}"


def run_prefix(job_id: str) -> str:
    """Where a job's checkpoints live in the store."""
    return f"{job_prefix(job_id)}/checkpoints"


def job_cache_dir(settings: Settings, job_id: str) -> Path:
    """Where this host keeps read-through copies of a job's files from the store: its
    checkpoints, and its exports under ``exports/<id>``."""
    return settings.data_dir / "cache" / job_id


def store_run(settings: Settings, job_id: str, *, outage_seconds: float = 0.0) -> StoreRun | None:
    """The job's place in the object store THAW_ARTIFACTS_URL names; None when it is empty
    (checkpoints then live only in the run folder under THAW_DATA_DIR). ``outage_seconds``:
    how long its calls ride out an unreachable store."""
    store = object_store(settings, outage_seconds=outage_seconds)
    return None if store is None else StoreRun(store, run_prefix(job_id))


def cached_checkpoint(remote: StoreRun, settings: Settings, job_id: str, name: str) -> Path:
    """A local copy of the job's checkpoint ``name`` for the API to serve, fetched into
    ``data_dir/cache`` (apart from any run folder) on first use."""
    return fetch_checkpoint(remote.store, remote.prefix, name, job_cache_dir(settings, job_id))


def pull_run(remote: StoreRun, run_dir: Path, token: int | None) -> None:
    """Bring the store's resume points into the run folder before it resumes: the ``last``
    checkpoint (:func:`pull_last`) and the step resume point (:func:`pull_resume`)."""
    pull_last(remote, run_dir, token)
    pull_resume(remote, run_dir, token)


def pull_last(remote: StoreRun, run_dir: Path, token: int | None) -> str | None:
    """Make the store's ``last`` checkpoint the run folder's ``last`` when the folder does
    not list it (a host with no copy, or an older one): download it and publish it locally
    under the fence. Returns its name, None when the store has none."""
    index, _ = read_store_index(remote.store, remote.prefix)
    if index.last is None:
        return None
    if read_index(run_dir).last == index.last:
        return index.last
    root = checkpoints_dir(run_dir)
    staged = fetch_checkpoint(remote.store, remote.prefix, index.last, root / ".fetch")
    entry = index.get(index.last)
    assert entry is not None

    def add(local: Index) -> Index:
        kept = [e for e in local.entries if e.name != entry.name and e.epoch < entry.epoch]
        entries = [*kept, entry]
        return Index(
            entries=entries,
            best=choose_best(entries, index.monitor, index.mode),
            last=entry.name,
            monitor=index.monitor,
            mode=index.mode,
        )

    publish(run_dir, token, {root / entry.name: staged}, add)
    remove_tree(root / ".fetch")
    return entry.name


def pull_resume(remote: StoreRun, run_dir: Path, token: int | None) -> int | None:
    """Make the store's step resume point the run folder's ``resume/`` when the folder has
    none or an older one: download it and publish it locally under the fence. Returns its
    step, None when the store has none."""
    point = read_store_index(remote.store, remote.prefix)[0].resume
    if point is None:
        return None
    local = read_step_meta(run_dir)
    if local is not None and local["step"] >= point["step"]:
        return int(local["step"])
    tmp = Path(run_dir) / f".{STEP_DIR}.tmp-{secrets.token_hex(6)}"
    try:
        files = [FileInfo.from_dict(f) for f in point.get("files", [])]
        _download(remote.store, remote.prefix, files, tmp, STEP_DIR)
        atomic_write_json(tmp / META_FILE, {k: v for k, v in point.items() if k != "files"})
        fsync_dir(tmp)
    except BaseException:
        remove_tree(tmp)
        raise
    publish(run_dir, token, {step_dir(run_dir): tmp})
    return int(point["step"])


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

    def add(index: Index) -> Index:
        after = update(index)
        newest = max((e.step for e in after.entries), default=-1)
        point = index.resume if index.resume and index.resume["step"] > newest else None
        return replace(after, resume=point)  # a resume point older than the checkpoint goes

    return _write_index(store, prefix, token, add, confirm)


def publish_step_to_store(
    store: ArtifactStore,
    prefix: str,
    token: int | None,
    folder: Path,
    confirm: Callable[[], object] | None = None,
) -> Index:
    """Upload the step resume point ``folder`` (``R/resume``: model, training state and
    meta.json), then make it the index's ``resume`` with the same fenced conditional write
    as a checkpoint."""
    meta = json.loads((folder / META_FILE).read_text(encoding="utf-8"))
    files = [
        FileInfo(name=n, size=(folder / n).stat().st_size, sha256=sha256_file(folder / n))
        for n in RESUME_FILES
    ]
    for info in files:
        store.upload_file(f"{prefix}/{BLOBS}/{info.sha256}", folder / info.name)
    point = {**meta, "files": [f.to_dict() for f in files]}
    return _write_index(store, prefix, token, lambda index: replace(index, resume=point), confirm)


def fetch_checkpoint(store: ArtifactStore, prefix: str, name: str, dest: Path) -> Path:
    """Download checkpoint ``name`` (``best``, ``last`` or ``epoch-<k>``) into
    ``dest/<epoch-k>`` unless a verified copy is there; returns that folder."""
    entry = _entry(store, prefix, name)
    folder = dest / entry.name
    if _matches(folder, entry):
        return folder
    dest.mkdir(parents=True, exist_ok=True)
    tmp = dest / f".{entry.name}.tmp-{secrets.token_hex(6)}"
    try:
        _download(store, prefix, entry.files, tmp, entry.name)
        meta = {"format": META_FORMAT, "version": META_VERSION, **entry.to_dict()}
        atomic_write_json(tmp / META_FILE, meta)
        fsync_dir(tmp)
        replace_dir(tmp, folder)
    except BaseException:
        remove_tree(tmp)
        raise
    return folder


def _download(
    store: ArtifactStore, prefix: str, files: list[FileInfo], folder: Path, label: str
) -> None:
    """Download each blob of ``files`` into ``folder`` under its name, checked as it comes in."""
    for info in files:
        path = folder / info.name
        store.download_file(f"{prefix}/{BLOBS}/{info.sha256}", path)
        if path.stat().st_size != info.size or sha256_file(path) != info.sha256:
            raise CorruptCheckpoint(f"{label}/{info.name} does not match its sha256")


def presigned_file(remote: StoreRun, name: str, file: str, seconds: int) -> tuple[str, str] | None:
    """A time-limited URL of ``file`` of checkpoint ``name`` straight from the store, and the
    file's sha256; None for a store that has no such URLs (a local folder)."""
    if getattr(remote.store, "presigned_url", None) is None:
        return None
    entry = _entry(remote.store, remote.prefix, name)
    info = next((f for f in entry.files if f.name == file), None)
    if info is None:
        listed = ", ".join(f.name for f in entry.files)
        raise CheckpointNotFound(f"checkpoint {name!r} has no file {file!r}", f"files: {listed}")
    url = presigned_key(remote.store, f"{remote.prefix}/{BLOBS}/{info.sha256}", seconds)
    return None if url is None else (url, info.sha256)


def presigned_key(store: ArtifactStore, key: str, seconds: int) -> str | None:
    """A time-limited URL of the object ``key`` straight from the store; None for a store
    that has no such URLs (a local folder)."""
    presign = getattr(store, "presigned_url", None)
    return None if presign is None else presign(key, seconds)


def _entry(store: ArtifactStore, prefix: str, name: str) -> Entry:
    index, _ = read_store_index(store, prefix)
    target = validate_name(name)
    if target in (BEST, LAST):
        target = (index.best if target == BEST else index.last) or ""
    entry = index.get(target)
    if entry is None:
        raise CheckpointNotFound(
            f"no checkpoint {name!r}", f"checkpoints: {', '.join(index.names()) or 'none'}"
        )
    return entry


def _matches(folder: Path, entry: Entry) -> bool:
    """A copy fetched before (checked as it came in, then renamed into place) of ``entry``."""
    try:
        meta = json.loads((folder / META_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return meta.get("files") == [f.to_dict() for f in entry.files] and all(
        (folder / f.name).is_file() and (folder / f.name).stat().st_size == f.size
        for f in entry.files
    )


def store_checkpoints(remote: StoreRun) -> list[CheckpointInfo]:
    """The checkpoints the store lists for the run, oldest first, with best and last."""
    index, _ = read_store_index(remote.store, remote.prefix)
    return index_checkpoints(index, Path(remote.prefix))


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
    kept = set(_blobs(after))
    for sha in _blobs(before):
        if sha not in kept:
            store.delete_prefix(f"{prefix}/{BLOBS}/{sha}")
            kept.add(sha)


def _blobs(index: Index) -> list[str]:
    """The sha256 of every file the index's checkpoints and resume point use."""
    shas = [f.sha256 for e in index.entries for f in e.files]
    if index.resume is not None:
        shas += [str(f["sha256"]) for f in index.resume.get("files", [])]
    return shas
