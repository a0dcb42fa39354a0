"""Uploaded datasets for a local ``thaw plan``: looked up in the store when THAW_REDIS_URL
answers, described by ``--classes`` otherwise."""

from __future__ import annotations

from typing import TYPE_CHECKING

from thaw.errors import SpecError
from thaw.spec import DatasetSource, JobSpec

if TYPE_CHECKING:
    from thaw.data.shape import UploadLookup
    from thaw.settings import Settings
    from thaw.store import Dataset

STORE_CONNECT_TIMEOUT_S = 2.0


def upload_locs(spec: JobSpec) -> dict[str, tuple[str, ...]]:
    """Each uploaded dataset id the spec names, with the field that names it."""
    found = {}
    if spec.dataset.id is not None:
        found[spec.dataset.id] = ("dataset", "id")
    validation = spec.dataset.validation
    if isinstance(validation, DatasetSource) and validation.id is not None:
        found.setdefault(validation.id, ("dataset", "validation", "id"))
    return found


def plan_uploads(
    spec: JobSpec, settings: Settings, classes: list[str] | None, examples: int | None
) -> UploadLookup | None:
    """Where ``thaw plan`` finds the spec's uploads: records standing for them with
    ``classes`` given, else the store (any tenant's: whoever reaches Redis runs the
    service). A SpecError saying how to plan it when neither is at hand."""
    ids = upload_locs(spec)
    if not ids:
        return None
    if classes is not None:
        return lambda dataset_id: _described(dataset_id, classes, examples)
    from thaw.store import DatasetStore, connect, is_reachable

    client = connect(settings.redis_url, socket_connect_timeout=STORE_CONNECT_TIMEOUT_S)
    if is_reachable(client):
        return DatasetStore(client).get
    dataset_id, loc = next(iter(ids.items()))
    raise SpecError(
        loc,
        f"uploaded dataset {dataset_id!r} cannot be looked up here: the store "
        "(THAW_REDIS_URL) does not answer",
        "plan it with POST /v1/plans, set THAW_REDIS_URL to the service's Redis, or give "
        "its classes: thaw plan SPEC --classes a,b,c [--examples N]",
    )


def _described(dataset_id: str, classes: list[str], examples: int | None) -> Dataset:
    """A stand-in record: ``classes`` sharing ``examples`` (one each by default)."""
    from thaw.store import Dataset

    total = len(classes) if examples is None else examples
    base, extra = divmod(total, len(classes))
    counts = {name: base + (1 if i < extra else 0) for i, name in enumerate(classes)}
    return Dataset(
        id=dataset_id, tenant="", name=dataset_id, format="image_folder", num_examples=total,
        classes=list(classes), class_counts=counts, size_bytes=0, sha256="", created_at="",
        path="",
    )  # fmt: skip
