"""The S3-compatible artifact store (AWS S3, SeaweedFS, MinIO, Ceph RGW, R2) through boto3:
SigV4, multipart uploads by its transfer manager, If-Match / If-None-Match on put_object."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
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
    ):
        self.bucket = bucket
        self.prefix = prefix.strip("/")
        self.endpoint = endpoint
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
        with self._errors(key):
            answer = self.client.get_object(Bucket=self.bucket, Key=self._key(key))
            return Versioned(data=answer["Body"].read(), version=answer["ETag"])

    def put(
        self, key: str, data: bytes, *, if_version: str | None = None, if_absent: bool = False
    ) -> str:
        args: dict[str, Any] = {"Bucket": self.bucket, "Key": self._key(key), "Body": data}
        if if_version is not None:
            args["IfMatch"] = if_version
        if if_absent:
            args["IfNoneMatch"] = "*"
        with self._errors(key):
            return str(self.client.put_object(**args)["ETag"])

    def upload_file(self, key: str, path: Path) -> None:
        with self._errors(key):
            self.client.upload_file(str(path), self.bucket, self._key(key), Config=self.transfer)

    def download_file(self, key: str, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.download")
        try:
            with self._errors(key):
                self.client.download_file(
                    self.bucket, self._key(key), str(tmp), Config=self.transfer
                )
            os.replace(tmp, path)
        finally:
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()

    def read_range(self, key: str, start: int, end: int) -> bytes:
        with self._errors(key):
            answer = self.client.get_object(
                Bucket=self.bucket, Key=self._key(key), Range=f"bytes={start}-{end}"
            )
            return bytes(answer["Body"].read())

    def size(self, key: str) -> int:
        with self._errors(key):
            head = self.client.head_object(Bucket=self.bucket, Key=self._key(key))
            return int(head["ContentLength"])

    def delete_prefix(self, prefix: str) -> None:
        keys = self.list(prefix)
        for start in range(0, len(keys), 1000):
            batch = [{"Key": self._key(k)} for k in keys[start : start + 1000]]
            with self._errors(prefix):
                self.client.delete_objects(Bucket=self.bucket, Delete={"Objects": batch})

    def list(self, prefix: str) -> list[str]:
        full = self._key(prefix) if prefix else (f"{self.prefix}/" if self.prefix else "")
        cut = len(self.prefix) + 1 if self.prefix else 0
        keys: list[str] = []
        with self._errors(prefix):
            pages = self.client.get_paginator("list_objects_v2").paginate(
                Bucket=self.bucket, Prefix=full
            )
            for page in pages:
                keys += [item["Key"][cut:] for item in page.get("Contents", [])]
        return sorted(keys)

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

    @contextlib.contextmanager
    def _errors(self, key: str) -> Iterator[None]:
        """botocore's exceptions as the store's errors, each with a code a user can act on."""
        try:
            yield
        except ClientError as exc:
            raise self._client_error(key, exc) from exc
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
        return ArtifactStoreError(f"object store error {code} on {self.url(key)}")
