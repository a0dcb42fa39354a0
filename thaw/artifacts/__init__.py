"""Where run artifacts live: one store interface, a local folder or an S3-compatible bucket."""

from thaw.artifacts.errors import (
    ArtifactCredentialsRejected,
    ArtifactNotFound,
    ArtifactStoreError,
    ArtifactStoreUnreachable,
    BucketMissing,
    VersionConflict,
)
from thaw.artifacts.local import LocalStore
from thaw.artifacts.open import check_store, object_store, open_store
from thaw.artifacts.store import ArtifactStore, Versioned

__all__ = [
    "ArtifactCredentialsRejected",
    "ArtifactNotFound",
    "ArtifactStore",
    "ArtifactStoreError",
    "ArtifactStoreUnreachable",
    "BucketMissing",
    "LocalStore",
    "VersionConflict",
    "Versioned",
    "check_store",
    "object_store",
    "open_store",
]
