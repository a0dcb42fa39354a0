"""Redis key names, in one place; the Lua scripts build the same names from the prefix."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Keys:
    prefix: str = "thaw"

    @property
    def id_clock(self) -> str:
        return f"{self.prefix}:idclock"

    def job(self, job_id: str) -> str:
        return f"{self.prefix}:job:{job_id}"

    def job_layers(self, job_id: str) -> str:
        return f"{self.job(job_id)}:layers"

    def job_events(self, job_id: str) -> str:
        return f"{self.job(job_id)}:events"

    def jobs_by_tenant(self, tenant: str) -> str:
        return f"{self.prefix}:jobs:by-tenant:{tenant}"

    def jobs_by_tenant_status(self, tenant: str, status: str) -> str:
        return f"{self.prefix}:jobs:by-tenant-status:{status}:{tenant}"

    def jobs_by_status(self, status: str) -> str:
        return f"{self.prefix}:jobs:by-status:{status}"

    @property
    def leases(self) -> str:
        return f"{self.prefix}:jobs:leases"

    def idempotency(self, tenant: str, key: str) -> str:
        digest = hashlib.sha256(f"{tenant}\0{key}".encode()).hexdigest()
        return f"{self.prefix}:idem:{digest}"

    def dataset(self, dataset_id: str) -> str:
        return f"{self.prefix}:dataset:{dataset_id}"

    def datasets_by_tenant(self, tenant: str) -> str:
        return f"{self.prefix}:datasets:by-tenant:{tenant}"

    @property
    def workers(self) -> str:
        return f"{self.prefix}:workers"

    def worker(self, worker_id: str) -> str:
        return f"{self.prefix}:worker:{worker_id}"
