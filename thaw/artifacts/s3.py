"""The S3-compatible artifact store (AWS S3, SeaweedFS, MinIO, Ceph RGW, R2) through boto3:
SigV4, multipart uploads by its transfer manager, If-Match / If-None-Match on put_object.
An outage (no answer, or the store's 5xx) is ridden out for ``outage_seconds``: each call is
tried again with backoff until then, and only past it fails as ArtifactStoreUnreachable."""

from __future__ import annotations

import contextlib
import logging
import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import boto3
from boto3.exceptions import RetriesExceededError, S3UploadFailedError
from boto3.s3.transfer import TransferConfig
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError, EndpointConnectionError

from thaw.artifacts.errors import (
    ArtifactCredentialsRejected,
    ArtifactNotFound,
    ArtifactStoreError,
    ArtifactStoreUnreachable,
    BucketMissing,
    VersionConflict,
)
from thaw.artifacts.store import Versioned

CREDENTIAL_CODES = frozenset(
    {"InvalidAccessKeyId", "SignatureDoesNotMatch", "AccessDenied", "403", "InvalidToken"}
)
MISSING_CODES = frozenset({"NoSuchKey", "404", "NotFound"})
CONFLICT_CODES = frozenset({"PreconditionFailed", "412", "ConditionalRequestConflict"})
TRANSIENT_CODES = frozenset(
    {"InternalError", "ServiceUnavailable", "SlowDown", "RequestTimeout", "500", "502", "503"}
)
BACKOFF_FIRST_S = 0.5
BACKOFF_MAX_S = 10.0

log = logging.getLogger(__name__)
T = TypeVar("T")


class S3Store:
    def __init__(
        self,
        bucket: str,
        prefix: str = "",
        *,
        endpoint: str | None = None,
        region: str = "us-east-1",
        access_key_id: str | None = None,
        secret_access_key: str | None = None,
        connect_timeout: float = 5.0,
        attempts: int = 3,
        multipart_bytes: int = 64 * 1024**2,
        outage_seconds: float = 0.0,
    ):
        self.bucket = bucket
        self.prefix = prefix.strip("/")
        self.endpoint = endpoint
        self.outage_seconds = outage_seconds
        self.client = boto3.session.Session().client(
            "s3",
            endpoint_url=endpoint or None,
            region_name=region,
            aws_access_key_id=access_key_id or None,
            aws_secret_access_key=secret_access_key or None,
            config=Config(
                signature_version="s3v4",
                connect_timeout=connect_timeout,
                read_timeout=max(connect_timeout, 60.0),
                retries={"max_attempts": attempts, "mode": "standard"},
                s3={"addressing_style": "path"},
            ),
        )
        self.transfer = TransferConfig(
            multipart_threshold=multipart_bytes, multipart_chunksize=multipart_bytes
        )

    def url(self, key: str) -> str:
        return f"s3://{self.bucket}/{self._key(key)}"

    def check(self) -> None:
        with self._errors(""):
            self.client.head_bucket(Bucket=self.bucket)

    def get(self, key: str) -> Versioned:
        def get() -> Versioned:
            answer = self.client.get_object(Bucket=self.bucket, Key=self._key(key))
            return Versioned(data=answer["Body"].read(), version=answer["ETag"])

        return self._call(key, get)

    def put(
        self, key: str, data: bytes, *, if_version: str | None = None, if_absent: bool = False
    ) -> str:
        args: dict[str, Any] = {"Bucket": self.bucket, "Key": self._key(key), "Body": data}
        if if_version is not None:
            args["IfMatch"] = if_version
        if if_absent:
            args["IfNoneMatch"] = "*"
        return self._call(key, lambda: str(self.client.put_object(**args)["ETag"]))

    def upload_file(self, key: str, path: Path) -> None:
        self._call(
            key,
            lambda: self.client.upload_file(
                str(path), self.bucket, self._key(key), Config=self.transfer
            ),
        )

    def download_file(self, key: str, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.download")
        try:
            self._call(
                key,
                lambda: self.client.download_file(
                    self.bucket, self._key(key), str(tmp), Config=self.transfer
                ),
            )
            os.replace(tmp, path)
        finally:
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()

    def read_range(self, key: str, start: int, end: int) -> bytes:
        def read() -> bytes:
            answer = self.client.get_object(
                Bucket=self.bucket, Key=self._key(key), Range=f"bytes={start}-{end}"
            )
            return bytes(answer["Body"].read())

        return self._call(key, read)

    def size(self, key: str) -> int:
        def head() -> int:
            return int(
                self.client.head_object(Bucket=self.bucket, Key=self._key(key))["ContentLength"]
            )

        return self._call(key, head)

    def delete_prefix(self, prefix: str) -> None:
        keys = self.list(prefix)
        for start in range(0, len(keys), 1000):
            batch = [{"Key": self._key(k)} for k in keys[start : start + 1000]]
            self._call(
                prefix,
                lambda batch=batch: self.client.delete_objects(
                    Bucket=self.bucket, Delete={"Objects": batch}
                ),
            )

    def list(self, prefix: str) -> list[str]:
        full = self._key(prefix) if prefix else (f"{self.prefix}/" if self.prefix else "")
        cut = len(self.prefix) + 1 if self.prefix else 0

        def listing() -> list[str]:
            keys: list[str] = []
            pages = self.client.get_paginator("list_objects_v2").paginate(
                Bucket=self.bucket, Prefix=full
            )
            for page in pages:
                keys += [item["Key"][cut:] for item in page.get("Contents", [])]
            return sorted(keys)

        return self._call(prefix, listing)

    def presigned_url(self, key: str, expires_seconds: int) -> str:
        """A time-limited GET URL for the object, for a client to download it directly."""
        with self._errors(key):
            return str(
                self.client.generate_presigned_url(
                    "get_object",
                    Params={"Bucket": self.bucket, "Key": self._key(key)},
                    ExpiresIn=expires_seconds,
                )
            )

    def _key(self, key: str) -> str:
        return f"{self.prefix}/{key}" if self.prefix else key

    def _call(self, key: str, work: Callable[[], T]) -> T:
        """``work()`` with the store's errors; while the store is unreachable, tried again
        with backoff until ``outage_seconds`` have passed since the first failure."""
        deadline: float | None = None
        pause = BACKOFF_FIRST_S
        while True:
            try:
                with self._errors(key):
                    return work()
            except ArtifactStoreUnreachable as exc:
                now = time.monotonic()
                if deadline is None:
                    deadline = now + self.outage_seconds
                    if self.outage_seconds > 0:
                        log.warning("%s; trying again for %.0f s", exc, self.outage_seconds)
                if now + pause > deadline:
                    raise
                time.sleep(pause)
                pause = min(pause * 2, BACKOFF_MAX_S)

    @contextlib.contextmanager
    def _errors(self, key: str) -> Iterator[None]:
        """botocore's exceptions as the store's errors, each with a code a user can act on."""
        try:
            yield
        except ClientError as exc:
            raise self._client_error(key, exc) from exc
        except (S3UploadFailedError, RetriesExceededError) as exc:
            cause = getattr(exc, "last_exception", None) or exc.__context__
            if isinstance(cause, ClientError):
                raise self._client_error(key, cause) from exc
            raise ArtifactStoreUnreachable(
                f"object store {self.endpoint or 'S3'} failed a transfer: {cause or exc}",
                "check THAW_ARTIFACTS_ENDPOINT and that the store is running",
            ) from exc
        except EndpointConnectionError as exc:
            raise ArtifactStoreUnreachable(
                f"object store {self.endpoint or 'S3'} does not answer",
                "check THAW_ARTIFACTS_ENDPOINT and that the store is running",
            ) from exc
        except BotoCoreError as exc:
            if "credentials" in type(exc).__name__.lower():
                raise ArtifactCredentialsRejected(
                    "no object store credentials were found",
                    "set THAW_ARTIFACTS_ACCESS_KEY_ID and THAW_ARTIFACTS_SECRET_ACCESS_KEY, "
                    "AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or "
                    "THAW_ARTIFACTS_CREDENTIALS_FILE",
                ) from exc
            raise ArtifactStoreUnreachable(
                f"object store {self.endpoint or 'S3'} failed: {type(exc).__name__}",
                "check THAW_ARTIFACTS_ENDPOINT and that the store is running",
            ) from exc

    def _client_error(self, key: str, exc: ClientError) -> ArtifactStoreError:
        error = exc.response.get("Error", {})
        code = str(error.get("Code", ""))
        if code in CONFLICT_CODES:
            return VersionConflict(f"{self.url(key)} changed since it was read")
        if code == "NoSuchBucket" or (code in MISSING_CODES and not key):
            return BucketMissing(
                f"bucket {self.bucket!r} does not exist",
                "create it or fix THAW_ARTIFACTS_URL",
            )
        if code in CREDENTIAL_CODES:
            return ArtifactCredentialsRejected(
                f"the object store refused the credentials ({code})",
                "check the access key and secret of THAW_ARTIFACTS_*",
            )
        if code in MISSING_CODES:
            return ArtifactNotFound(f"no artifact {self.url(key)}")
        if code in TRANSIENT_CODES:
            return ArtifactStoreUnreachable(
                f"object store {self.endpoint or 'S3'} failed on {self.url(key)}: {code}",
                "the store is overloaded or restarting",
            )
        return ArtifactStoreError(f"object store error {code} on {self.url(key)}")
