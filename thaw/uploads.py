"""Uploaded datasets: spool the bytes under a size limit, validate, store, record.

Stored under ``uploads_dir/<id>/``, or, with an object store (THAW_ARTIFACTS_URL), as the
uploaded file itself under ``datasets/<tenant hash>/<sha256>`` there, with no local copy
(the caller passes that store; workers unpack uploads into their cache,
``thaw.upload_cache``). On any failure nothing is left
on disk or in the store and no record is created.
"""

from __future__ import annotations

import hashlib
import os
import re
import secrets
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import IO, TYPE_CHECKING, Any, Protocol

from thaw.data import (
    DatasetError,
    DatasetInfo,
    extract_archive,
    inspect_image_folder,
    inspect_text_file,
    upload_kind,
)
from thaw.errors import ThawError
from thaw.store import Dataset, DatasetStore

if TYPE_CHECKING:
    from thaw.data.shape import UploadLookup
    from thaw.settings import Settings

OBJECTS_PREFIX = "datasets"


class ObjectStore(Protocol):
    """What uploads need of the artifact store (``thaw.artifacts.ArtifactStore``)."""

    def upload_file(self, key: str, path: Path) -> None: ...

    def delete_prefix(self, prefix: str) -> None: ...


INCOMING_DIR = ".incoming"
STAGING_PREFIX = ".staging-"
DATA_FOLDER = "data"
_NAME_MAX = 120
_UNSAFE_NAME_CHARS = re.compile(r"[\x00-\x1f\x7f]")
_ID = re.compile(r"^ds_[0-9a-f]{6,64}$")


class UploadTooLarge(ThawError):
    status = 413
    code = "upload_too_large"

    def __init__(self, limit: int):
        self.limit = limit
        super().__init__(
            f"the upload is larger than the limit of {limit} bytes; upload a smaller dataset "
            "or raise THAW_MAX_UPLOAD_BYTES"
        )

    def problem_fields(self) -> dict[str, Any]:
        return {"limit": self.limit}


class UploadRejected(ThawError):
    """A request that is not a usable upload (no file, bad name)."""

    status = 422
    code = "invalid_upload"

    def __init__(self, message: str):
        self.message = message
        super().__init__(message)


class DatasetQuotaExceeded(ThawError):
    """A tenant at its dataset count or bytes quota; deleting datasets frees it."""

    status = 429
    code = "dataset_quota_exceeded"
    retry_after_s = 60

    def __init__(self, message: str):
        self.message = message
        super().__init__(message)

    def headers(self) -> dict[str, str]:
        return {"Retry-After": str(self.retry_after_s)}


@dataclass(frozen=True)
class TenantUsage:
    datasets: int
    bytes: int


def tenant_usage(datasets: DatasetStore, tenant: str, settings: Settings) -> TenantUsage:
    """The tenant's stored uploads and their bytes, read no further than the count quota."""
    count, stored = datasets.usage(tenant, settings.max_datasets_per_tenant)
    return TenantUsage(count, stored)


def check_dataset_quota(
    datasets: DatasetStore, tenant: str, settings: Settings, adding_bytes: int = 0
) -> None:
    """Raise DatasetQuotaExceeded unless one more upload of ``adding_bytes`` fits (with
    ``adding_bytes`` 0: unless the tenant is below both quotas). Checked with the upload's
    size before it is unpacked and with its stored size before it is recorded."""
    usage = tenant_usage(datasets, tenant, settings)
    most, max_bytes = settings.max_datasets_per_tenant, settings.max_dataset_bytes_per_tenant
    if usage.datasets >= most:
        raise DatasetQuotaExceeded(
            f"this key has {usage.datasets} datasets, the most allowed "
            f"(THAW_MAX_DATASETS_PER_TENANT={most}); delete some before uploading more"
        )
    if usage.bytes >= max_bytes:
        raise DatasetQuotaExceeded(
            f"this key's datasets hold {usage.bytes} bytes, the most allowed "
            f"(THAW_MAX_DATASET_BYTES_PER_TENANT={max_bytes}); delete some before uploading more"
        )
    if usage.bytes + adding_bytes > max_bytes:
        raise DatasetQuotaExceeded(
            f"this key's datasets hold {usage.bytes} bytes; this upload of {adding_bytes} bytes "
            f"would pass THAW_MAX_DATASET_BYTES_PER_TENANT={max_bytes}; delete datasets or "
            "upload a smaller one"
        )


@dataclass
class UploadSpool:
    """A temp file under the uploads folder that counts and hashes what is written."""

    settings: Settings
    path: Path = field(init=False)
    size: int = field(default=0, init=False)
    _hash: Any = field(default_factory=hashlib.sha256, init=False)
    _file: IO[bytes] | None = field(default=None, init=False)

    def __post_init__(self) -> None:
        incoming = self.settings.uploads_dir / INCOMING_DIR
        incoming.mkdir(parents=True, exist_ok=True)
        self.path = incoming / f"upload-{secrets.token_hex(12)}"
        self._file = open(self.path, "xb")  # noqa: SIM115

    def write(self, chunk: bytes) -> None:
        self.size += len(chunk)
        if self.size > self.settings.max_upload_bytes:
            raise UploadTooLarge(self.settings.max_upload_bytes)
        assert self._file is not None
        self._file.write(chunk)
        self._hash.update(chunk)

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None

    @property
    def sha256(self) -> str:
        return self._hash.hexdigest()

    def discard(self) -> None:
        self.close()
        self.path.unlink(missing_ok=True)

    def __enter__(self) -> UploadSpool:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.discard()


def dataset_name(given: str | None, filename: str) -> str:
    """The dataset's display name: ``given``, else the file name without its suffixes."""
    name = (given or "").strip()
    if not name:
        base = Path(filename.replace("\\", "/")).name
        for suffix in (".tar.gz", ".tgz", ".zip", ".csv", ".jsonl"):
            if base.lower().endswith(suffix):
                base = base[: -len(suffix)]
                break
        name = base or "dataset"
    if len(name) > _NAME_MAX or _UNSAFE_NAME_CHARS.search(name):
        raise UploadRejected(
            f"dataset name must be at most {_NAME_MAX} printable characters; shorten it"
        )
    return name


def store_upload(
    spool: UploadSpool,
    *,
    filename: str,
    name: str | None,
    tenant: str,
    settings: Settings,
    datasets: DatasetStore,
    store: ObjectStore | None = None,
) -> Dataset:
    """Validate the spooled upload, move it to ``uploads_dir/<id>/`` (or, with ``store``,
    the object store) and create its record.

    Raises DatasetError (or UploadRejected) and leaves nothing behind on failure."""
    try:
        spool.close()
        title = dataset_name(name, filename)
        kind = upload_kind(filename)
        if spool.size == 0:
            raise DatasetError(
                "the uploaded file is empty; upload the dataset file", code="empty_dataset"
            )
        check_dataset_quota(datasets, tenant, settings, spool.size)
        return _store(spool, kind, title, filename, tenant, settings, datasets, store)
    finally:
        spool.discard()


def existing_upload(
    spool: UploadSpool, tenant: str, settings: Settings, datasets: DatasetStore
) -> Dataset | None:
    """The tenant's dataset stored from a file identical to the spooled one (same sha256),
    so the same upload is not stored twice."""
    if spool.size == 0:
        return None
    return datasets.find_sha256(tenant, spool.sha256, settings.max_datasets_per_tenant)


def _store(
    spool: UploadSpool,
    kind: str,
    title: str,
    filename: str,
    tenant: str,
    settings: Settings,
    datasets: DatasetStore,
    store: ObjectStore | None,
) -> Dataset:
    dataset_id = datasets.new_id()
    staging = settings.uploads_dir / f"{STAGING_PREFIX}{dataset_id}"
    final = settings.uploads_dir / dataset_id
    key = upload_key(tenant, spool.sha256)
    uploaded = False
    try:
        staging.mkdir(parents=True)
        data_path, info = unpack_upload(spool.path, kind, filename, staging, settings)
        stored = stored_bytes(staging)
        check_dataset_quota(datasets, tenant, settings, stored)
        record: dict[str, Any] = {
            "id": dataset_id,
            "name": title,
            "format": info.format,
            "num_examples": info.num_examples,
            "classes": list(info.classes),
            "class_counts": dict(info.class_counts),
            "size_bytes": stored,
            "upload_bytes": spool.size,
            "sha256": spool.sha256,
            "filename": Path(filename.replace("\\", "/")).name,
            "has_explicit_val": info.has_explicit_val,
            "val_class_counts": dict(info.val_class_counts),
        }
        if store is None:
            os.replace(staging, final)
            record["path"] = str((final / data_path.relative_to(staging)).resolve())
        else:
            # The uploaded file as sent (a text upload was moved to its data path).
            store.upload_file(key, spool.path if kind == "archive" else data_path)
            uploaded = True
            record |= {"path": data_path.relative_to(staging).as_posix(), "object": key}
            record["kind"] = kind
            shutil.rmtree(staging, ignore_errors=True)
        return datasets.create(tenant, record)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        shutil.rmtree(final, ignore_errors=True)
        if uploaded and store is not None:
            _drop_object(store, key, tenant, spool.sha256, settings, datasets)
        raise


def upload_key(tenant: str, sha256: str) -> str:
    """Where an upload's file lives in the object store: by its content, per tenant (the
    same file uploaded by one key is stored once; a tenant's name stays out of keys)."""
    owner = hashlib.sha256(tenant.encode()).hexdigest()[:24]
    return f"{OBJECTS_PREFIX}/{owner}/{sha256}"


def unpack_upload(
    upload: Path, kind: str, filename: str, staging: Path, settings: Settings
) -> tuple[Path, DatasetInfo]:
    """Unpack (an archive) or move (a text file) ``upload`` into ``staging`` and inspect it
    within the settings' limits; returns the data's path and what it holds."""
    if kind == "archive":
        root = staging / DATA_FOLDER
        extract_archive(
            upload,
            root,
            max_members=settings.max_archive_members,
            max_uncompressed_bytes=settings.max_uncompressed_bytes,
            max_header_bytes=settings.max_archive_header_bytes,
            max_depth=settings.max_member_depth,
            max_name_chars=settings.max_member_name_chars,
            shown_as=filename,
        )
        return root, inspect_image_folder(
            root,
            max_image_pixels=settings.max_image_pixels,
            max_dataset_pixels=settings.max_dataset_pixels,
            max_classes=settings.max_classes,
        )
    target = staging / f"{DATA_FOLDER}.{kind}"
    os.replace(upload, target)
    fmt = "csv" if kind == "csv" else "jsonl"
    return target, inspect_text_file(
        target, fmt, max_classes=settings.max_classes, shown_as=filename
    )


def stored_bytes(root: Path) -> int:
    """Bytes of the files under ``root`` as stored: what an upload holds once extracted,
    padding inside or after its images included, so the byte quota counts what it takes."""
    total = 0
    for folder, _dirs, files in os.walk(root):
        for name in files:
            total += os.lstat(os.path.join(folder, name)).st_size
    return total


def tenant_uploads(datasets: DatasetStore, tenant: str) -> UploadLookup:
    """A tenant's own uploads by id; another tenant's upload is as absent as a missing one."""
    return lambda dataset_id: datasets.get(dataset_id, tenant)


def remove_dataset_files(
    settings: Settings, dataset: Dataset, datasets: DatasetStore, store: ObjectStore | None = None
) -> None:
    """Delete a deleted dataset's files: ``uploads_dir/<id>/``, or its object in ``store``
    unless another of the tenant's datasets still uses it."""
    key = dataset.extra.get("object")
    if store is not None and isinstance(key, str):
        _drop_object(store, key, dataset.tenant, dataset.sha256, settings, datasets)
    if _ID.match(dataset.id):
        shutil.rmtree(settings.uploads_dir / dataset.id, ignore_errors=True)


def _drop_object(
    store: ObjectStore,
    key: str,
    tenant: str,
    sha256: str,
    settings: Settings,
    datasets: DatasetStore,
) -> None:
    if datasets.find_sha256(tenant, sha256, settings.max_datasets_per_tenant) is None:
        store.delete_prefix(key)
