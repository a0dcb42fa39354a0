"""Dataset records: what an upload holds and where its files are, per tenant."""

from __future__ import annotations

import re
import secrets
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import redis

from thaw.store import dataset_scripts
from thaw.store.codec import decoded, dumps, iso, loads, pairs, text
from thaw.store.errors import DatasetExists, InvalidCursor
from thaw.store.keys import Keys

DATASET_ID = re.compile(r"^ds_[0-9a-f]{6,64}$")
PUBLIC_FIELDS = (
    "id",
    "name",
    "format",
    "num_examples",
    "classes",
    "class_counts",
    "size_bytes",
    "sha256",
    "created_at",
)


@dataclass(frozen=True, slots=True)
class Dataset:
    id: str
    tenant: str
    name: str
    format: str
    num_examples: int
    classes: list[str]
    class_counts: dict[str, int]
    size_bytes: int
    sha256: str
    created_at: str
    path: str
    extra: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_record(cls, tenant: str, record: Mapping[str, Any]) -> Dataset:
        known = {"id", "tenant", "name", "format", "num_examples", "classes", "class_counts",
                 "size_bytes", "sha256", "created_at", "path"}  # fmt: skip
        missing = sorted(known - {"tenant"} - set(record))
        if missing:
            raise ValueError(f"dataset record is missing {', '.join(missing)}")
        return cls(
            id=str(record["id"]),
            tenant=tenant,
            name=str(record["name"]),
            format=str(record["format"]),
            num_examples=int(record["num_examples"]),
            classes=[str(c) for c in record["classes"]],
            class_counts={str(k): int(v) for k, v in record["class_counts"].items()},
            size_bytes=int(record["size_bytes"]),
            sha256=str(record["sha256"]),
            created_at=str(record["created_at"]),
            path=str(record["path"]),
            extra={k: v for k, v in record.items() if k not in known},
        )

    def to_dict(self) -> dict[str, Any]:
        """Every field, ``extra`` merged at the top; includes ``tenant`` and ``path``."""
        out = {name: getattr(self, name) for name in (*PUBLIC_FIELDS, "tenant", "path")}
        return {**self.extra, **out}

    def public_dict(self) -> dict[str, Any]:
        """The API's dataset shape: no tenant, no server path. ``size_bytes`` is what the
        dataset takes as stored; ``upload_bytes`` what was sent (absent on older records)."""
        out = {name: getattr(self, name) for name in PUBLIC_FIELDS}
        if "upload_bytes" in self.extra:
            out["upload_bytes"] = int(self.extra["upload_bytes"])
        return out

    def summary_dict(self) -> dict[str, Any]:
        """A list entry: the public shape with ``num_classes`` for the per-class data."""
        out = self.public_dict()
        del out["classes"], out["class_counts"]
        return {**out, "num_classes": len(self.classes)}


def _from_hash(fields: dict[str, str]) -> Dataset | None:
    if "record" not in fields:
        return None
    return Dataset.from_record(fields["tenant"], loads(fields["record"]))


class DatasetStore:
    def __init__(self, client: redis.Redis, prefix: str = "thaw"):
        self.redis = client
        self.keys = Keys(prefix)
        self._new_id = client.register_script(dataset_scripts.NEW_ID)
        self._create = client.register_script(dataset_scripts.CREATE)
        self._delete = client.register_script(dataset_scripts.DELETE)

    def _run(self, script: Any, *args: str) -> Any:
        return script(args=[self.keys.prefix, 0, *args])

    def new_id(self) -> str:
        """``ds_`` + 24 hex; ids sort by creation time, which is the listing order."""
        return text(self._run(self._new_id, "ds_", secrets.token_hex(4))) or ""

    def create(self, tenant: str, record: Mapping[str, Any]) -> Dataset:
        """Store a record (``id`` from ``new_id()`` when absent, ``created_at`` now when
        absent). Raises ``DatasetExists`` when the id is taken."""
        full = dict(record)
        full.pop("tenant", None)
        full.setdefault("id", self.new_id())
        full.setdefault("created_at", iso(datetime.now(UTC).timestamp()))
        if not DATASET_ID.match(str(full["id"])):
            raise ValueError(f"dataset id {full['id']!r} must be ds_ followed by hex digits")
        dataset = Dataset.from_record(tenant, full)
        if not self._run(self._create, dataset.id, tenant, dumps(full), str(dataset.size_bytes)):
            raise DatasetExists(dataset.id)
        return dataset

    def get(self, dataset_id: str, tenant: str | None = None) -> Dataset | None:
        """The record, or ``None`` when missing or owned by another tenant."""
        dataset = _from_hash(decoded(self.redis.hgetall(self.keys.dataset(dataset_id))))
        if dataset is None or (tenant is not None and dataset.tenant != tenant):
            return None
        return dataset

    def list(
        self, tenant: str, limit: int = 20, after: str | None = None
    ) -> tuple[list[Dataset], bool]:
        """A page of the tenant's datasets, newest first, and whether more follow."""
        if limit < 1:
            raise ValueError("limit must be at least 1")
        if after is not None and not DATASET_ID.match(after):
            raise InvalidCursor(after, "a dataset id such as ds_0123456789abcdef01234567")
        upper = f"({after}" if after else "+"
        index = self.keys.datasets_by_tenant(tenant)
        ids = [text(i) or "" for i in self.redis.zrevrangebylex(index, upper, "-", 0, limit + 1)]
        return self._load_many(ids[:limit]), len(ids) > limit

    def usage(self, tenant: str, limit: int) -> tuple[int, int]:
        """How many datasets the tenant has (counted up to ``limit + 1``) and the stored
        bytes of the first ``limit``, read without parsing the records' class lists."""
        index = self.keys.datasets_by_tenant(tenant)
        ids = [text(i) or "" for i in self.redis.zrevrangebylex(index, "+", "-", 0, limit + 1)]
        pipe = self.redis.pipeline(transaction=False)
        for dataset_id in ids[:limit]:
            pipe.hmget(self.keys.dataset(dataset_id), "size_bytes", "tenant")
        total = 0
        for dataset_id, (size, owner) in zip(ids, pipe.execute(), strict=False):
            if owner is None:
                continue
            if size is None:  # a record stored before the field existed
                old = self.get(dataset_id)
                total += old.size_bytes if old is not None else 0
            else:
                total += int(size)
        return len(ids), total

    def find_sha256(self, tenant: str, sha256: str, limit: int) -> Dataset | None:
        """The tenant's newest dataset uploaded as the file with this sha256, among its
        ``limit`` newest; None when there is none."""
        index = self.keys.datasets_by_tenant(tenant)
        ids = [text(i) or "" for i in self.redis.zrevrangebylex(index, "+", "-", 0, limit)]
        found = (d for d in self._load_many(ids) if d.sha256 == sha256 and d.tenant == tenant)
        return next(found, None)

    def _load_many(self, ids: Sequence[str]) -> list[Dataset]:
        pipe = self.redis.pipeline(transaction=False)
        for dataset_id in ids:
            pipe.hgetall(self.keys.dataset(dataset_id))
        loaded = (_from_hash(decoded(raw)) for raw in pipe.execute())
        return [d for d in loaded if d is not None]

    def delete(self, dataset_id: str, tenant: str) -> Dataset | None:
        """Remove the record; returns it (its ``path`` is for removing the files), or
        ``None`` when missing or owned by another tenant."""
        return _from_hash(pairs(self._run(self._delete, dataset_id, tenant)))
