"""Errors of the artifact store, each with the status and code the API and a job report."""

from __future__ import annotations

from thaw.errors import ThawError


class ArtifactStoreError(ThawError):
    """Base of every artifact store error: the store cannot do what was asked."""

    status = 503
    code = "artifact_store_error"

    def __init__(self, message: str, hint: str | None = None):
        self.message = message
        self.hint = hint
        super().__init__(f"{message} ({hint})" if hint else message)


class ArtifactCredentialsRejected(ArtifactStoreError):
    """The object store refused the access key or its secret."""

    status = 503
    code = "artifact_store_credentials"


class BucketMissing(ArtifactStoreError):
    """The bucket of THAW_ARTIFACTS_URL does not exist."""

    status = 503
    code = "artifact_store_bucket_missing"


class ArtifactStoreUnreachable(ArtifactStoreError):
    """No answer from the object store's endpoint."""

    status = 503
    code = "artifact_store_unreachable"


class ArtifactNotFound(ArtifactStoreError):
    """No object under that key."""

    status = 404
    code = "artifact_not_found"


class VersionConflict(ArtifactStoreError):
    """A conditional write lost: the object is not at the version the writer read."""

    status = 409
    code = "artifact_version_conflict"
