"""The artifact store the settings name: local under data_dir, or S3 for s3:// URLs."""

from __future__ import annotations

import configparser
from pathlib import Path
from urllib.parse import urlsplit

from thaw.artifacts.errors import ArtifactCredentialsRejected, ArtifactStoreError
from thaw.artifacts.local import LocalStore
from thaw.artifacts.store import ArtifactStore
from thaw.settings import Settings

LOCAL_DIR = "artifacts"


def open_store(settings: Settings, *, outage_seconds: float = 0.0) -> ArtifactStore:
    """The store of ``settings.artifacts_url``; ArtifactStoreError for a URL it cannot use.
    An S3 store rides out an outage for ``outage_seconds`` (a job's worker passes
    ``settings.artifacts_outage_seconds``; a request or a readiness check does not wait)."""
    url = settings.artifacts_url.strip()
    if not url:
        return LocalStore(settings.data_dir / LOCAL_DIR)
    parts = urlsplit(url)
    if parts.scheme == "file":
        return LocalStore(Path(parts.path))
    if parts.scheme != "s3" or not parts.netloc:
        raise ArtifactStoreError(
            f"THAW_ARTIFACTS_URL {url!r} is not s3://bucket/prefix nor file:///folder",
            "set THAW_ARTIFACTS_URL=s3://bucket/prefix, or leave it empty",
        )
    key_id = settings.artifacts_access_key_id
    secret = settings.artifacts_secret_access_key
    secret_text = secret.get_secret_value() if secret is not None else None
    if not key_id and settings.artifacts_credentials_file is not None:
        key_id, secret_text = _credentials_file(settings.artifacts_credentials_file)
    from thaw.artifacts.s3 import S3Store  # boto3 loads only where a bucket is used

    return S3Store(
        parts.netloc,
        parts.path.strip("/"),
        endpoint=settings.artifacts_endpoint,
        region=settings.artifacts_region,
        access_key_id=key_id,
        secret_access_key=secret_text,
        connect_timeout=settings.artifacts_connect_timeout,
        multipart_bytes=settings.artifacts_multipart_bytes,
        outage_seconds=outage_seconds,
    )


def object_store(settings: Settings, *, outage_seconds: float = 0.0) -> ArtifactStore | None:
    """The object store THAW_ARTIFACTS_URL names; None when it is empty (artifacts and
    uploads then live under THAW_DATA_DIR alone)."""
    if not settings.artifacts_url.strip():
        return None
    return open_store(settings, outage_seconds=outage_seconds)


def check_store(settings: Settings) -> None:
    """Raise ArtifactStoreError unless the configured object store answers (readiness)."""
    if settings.artifacts_url.strip():
        open_store(settings).check()


def _credentials_file(path: Path) -> tuple[str, str]:
    parser = configparser.ConfigParser()
    try:
        read = parser.read(path, encoding="utf-8")
    except configparser.Error as exc:
        raise ArtifactCredentialsRejected(f"credentials file {path} is unreadable: {exc}") from exc
    section = parser["default"] if parser.has_section("default") else None
    if not read or section is None or not section.get("aws_access_key_id"):
        raise ArtifactCredentialsRejected(
            f"credentials file {path} has no [default] aws_access_key_id",
            "write aws_access_key_id and aws_secret_access_key under [default]",
        )
    return section["aws_access_key_id"], section.get("aws_secret_access_key", "")
