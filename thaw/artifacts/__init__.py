"""Where run artifacts live: one store interface, a local folder or an S3-compatible bucket."""

from thaw.artifacts.errors import (
    ArtifactNotFound,
    ArtifactStoreError,
    BucketMissing,
    StoreCredentialsRejected,
    StoreUnreachable,
    VersionConflict,
)
from thaw.artifacts.local import LocalStore
from thaw.artifacts.open import open_store
from thaw.artifacts.s3 import S3Store
from thaw.artifacts.store import ArtifactStore, Versioned

__all__ = [
    "ArtifactNotFound",
    "ArtifactStore",
    "ArtifactStoreError",
    "BucketMissing",
    "LocalStore",
    "S3Store",
    "StoreCredentialsRejected",
    "StoreUnreachable",
    "VersionConflict",
    "Versioned",
    "open_store",
]
