"""DatasetStore against a real Redis: CRUD, paging and tenants."""

from __future__ import annotations

import re
from typing import Any

import pytest
import redis

from thaw.store import Dataset, DatasetExists, DatasetStore, InvalidCursor


@pytest.fixture
def store(redis_client: redis.Redis) -> DatasetStore:
    return DatasetStore(redis_client)


def record(name: str = "digits", **extra: Any) -> dict[str, Any]:
    return {
        "name": name,
        "format": "image_folder",
        "num_examples": 30,
        "classes": ["cat", "dog"],
        "class_counts": {"cat": 10, "dog": 20},
        "size_bytes": 12345,
        "sha256": "ab" * 32,
        "path": f"/data/datasets/{name}",
        **extra,
    }


def test_create_and_get(store: DatasetStore) -> None:
    ds = store.create("acme", record(kind="image"))
    assert re.fullmatch(r"ds_[0-9a-f]{24}", ds.id)
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", ds.created_at)
    assert ds.tenant == "acme"
    assert ds.class_counts == {"cat": 10, "dog": 20}
    assert ds.extra == {"kind": "image"}
    assert store.get(ds.id) == ds
    assert store.get(ds.id, "acme") == ds
    assert store.get(ds.id, "globex") is None
    assert store.get("ds_000000000000000000000000") is None


def test_public_and_full_dicts(store: DatasetStore) -> None:
    ds = store.create("acme", record(kind="image"))
    assert ds.public_dict() == {
        "id": ds.id,
        "name": "digits",
        "format": "image_folder",
        "num_examples": 30,
        "classes": ["cat", "dog"],
        "class_counts": {"cat": 10, "dog": 20},
        "size_bytes": 12345,
        "sha256": "ab" * 32,
        "created_at": ds.created_at,
    }
    full = ds.to_dict()
    assert (full["tenant"], full["path"], full["kind"]) == (
        "acme",
        "/data/datasets/digits",
        "image",
    )


def test_caller_supplied_id_and_created_at(store: DatasetStore) -> None:
    ds_id = store.new_id()
    ds = store.create("acme", {**record(), "id": ds_id, "created_at": "2025-01-01T00:00:00Z"})
    assert (ds.id, ds.created_at) == (ds_id, "2025-01-01T00:00:00Z")
    with pytest.raises(DatasetExists):
        store.create("globex", {**record("other"), "id": ds_id})
    assert store.get(ds_id) == ds


def test_create_validates_record(store: DatasetStore) -> None:
    with pytest.raises(ValueError, match="missing sha256"):
        store.create("acme", {k: v for k, v in record().items() if k != "sha256"})
    with pytest.raises(ValueError, match="must be ds_"):
        store.create("acme", {**record(), "id": "../../etc"})
    assert store.list("acme") == ([], False)


def test_new_ids_sort_by_creation(store: DatasetStore) -> None:
    ids = [store.new_id() for _ in range(200)]
    assert ids == sorted(ids)
    assert len(set(ids)) == 200


def test_list_pages_newest_first_per_tenant(store: DatasetStore) -> None:
    ids = [store.create("acme", record(f"d{i}")).id for i in range(5)]
    other = store.create("globex", record("theirs"))

    page1, more1 = store.list("acme", limit=2)
    page2, more2 = store.list("acme", limit=2, after=page1[-1].id)
    page3, more3 = store.list("acme", limit=2, after=page2[-1].id)
    assert [d.name for d in page1 + page2 + page3] == ["d4", "d3", "d2", "d1", "d0"]
    assert [d.id for d in page1 + page2 + page3] == ids[::-1]
    assert (more1, more2, more3) == (True, True, False)
    assert store.list("globex") == ([other], False)
    assert store.list("nobody") == ([], False)
    with pytest.raises(InvalidCursor):
        store.list("acme", after="job_1")


def test_delete_by_owner_only(store: DatasetStore, redis_client: redis.Redis) -> None:
    ds = store.create("acme", record())
    keep = store.create("acme", record("keep"))
    assert store.delete(ds.id, "globex") is None
    assert store.get(ds.id) == ds

    deleted = store.delete(ds.id, "acme")
    assert isinstance(deleted, Dataset)
    assert deleted == ds
    assert deleted.path == "/data/datasets/digits"
    assert store.get(ds.id) is None
    assert store.delete(ds.id, "acme") is None
    assert store.list("acme") == ([keep], False)
    assert [k for k in redis_client.keys("*") if ds.id in k] == []
    assert redis_client.zscore("thaw:datasets:by-tenant:acme", ds.id) is None
