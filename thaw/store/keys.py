"""Redis key names, in one place: Python builds them with Keys, the Lua scripts with the
functions lua_key_functions() renders from the same forms."""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass

# Each key below the prefix, with positional parts; Keys builds them in Python and
# lua_key_functions() renders the same forms as Lua functions for the store scripts.
KEY_FORMS: dict[str, str] = {
    "id_clock": "idclock",
    "redis_boot": "redis-boot",
    "job": "job:{0}",
    "job_layers": "job:{0}:layers",
    "job_events": "job:{0}:events",
    "jobs_by_tenant": "jobs:by-tenant:{0}",
    "jobs_by_tenant_status": "jobs:by-tenant-status:{1}:{0}",
    "jobs_by_status": "jobs:by-status:{0}",
    "leases": "jobs:leases",
    "idempotency": "idem:{0}",
    "dataset": "dataset:{0}",
    "datasets_by_tenant": "datasets:by-tenant:{0}",
    "workers": "workers",
    "worker": "worker:{0}",
    "checkpoint_task": "ctask:{0}",
    "checkpoint_task_done": "ctask:{0}:done",
    "checkpoint_tasks_running": "ctasks:running",
    "checkpoint_tasks_seq": "ctasks:seq",
    "job_checkpoint_tasks": "job:{0}:ctasks:{1}",
    "webhook": "webhook:{0}",
    "webhooks_by_tenant": "webhooks:by-tenant:{0}",
    "webhook_deliveries": "webhook:{0}:deliveries",
    "webhook_delivery": "webhook:{0}:delivery:{1}",
    "webhook_feed": "webhooks:feed",
    "webhooks_due": "webhooks:due",
    "streams": "streams:{0}",
}
WEBHOOK_FEED_MAXLEN = 100_000
"""Entries the webhook feed keeps (approximately) while no dispatcher reads it."""
_PART = re.compile(r"\{(\d)\}")


def lua_key_functions() -> str:
    """``local function key_job(a0) return P .. ':job:' .. a0 end`` for every key form."""
    lines = []
    for name, form in KEY_FORMS.items():
        count = len(set(_PART.findall(form)))
        pieces = [f"'{p}'" if i % 2 == 0 else f"a{p}" for i, p in enumerate(_PART.split(form))]
        body = " .. ".join(["P", "':'", *[p for p in pieces if p != "''"]])
        params = ", ".join(f"a{i}" for i in range(count))
        lines.append(f"local function key_{name}({params}) return {body} end")
    return "\n".join(lines) + "\n"


@dataclass(frozen=True, slots=True)
class Keys:
    prefix: str = "thaw"

    def _key(self, name: str, *parts: str) -> str:
        return f"{self.prefix}:{KEY_FORMS[name].format(*parts)}"

    @property
    def id_clock(self) -> str:
        return self._key("id_clock")

    @property
    def redis_boot(self) -> str:
        return self._key("redis_boot")

    def job(self, job_id: str) -> str:
        return self._key("job", job_id)

    def job_layers(self, job_id: str) -> str:
        return self._key("job_layers", job_id)

    def job_events(self, job_id: str) -> str:
        return self._key("job_events", job_id)

    def jobs_by_tenant(self, tenant: str) -> str:
        return self._key("jobs_by_tenant", tenant)

    def jobs_by_tenant_status(self, tenant: str, status: str) -> str:
        return self._key("jobs_by_tenant_status", tenant, status)

    def jobs_by_status(self, status: str) -> str:
        return self._key("jobs_by_status", status)

    @property
    def leases(self) -> str:
        return self._key("leases")

    def idempotency(self, tenant: str, key: str) -> str:
        digest = hashlib.sha256(f"{tenant}\0{key}".encode()).hexdigest()
        return self._key("idempotency", digest)

    def dataset(self, dataset_id: str) -> str:
        return self._key("dataset", dataset_id)

    def datasets_by_tenant(self, tenant: str) -> str:
        return self._key("datasets_by_tenant", tenant)

    @property
    def workers(self) -> str:
        return self._key("workers")

    def worker(self, worker_id: str) -> str:
        return self._key("worker", worker_id)

    def checkpoint_task(self, task_id: str) -> str:
        return self._key("checkpoint_task", task_id)

    def checkpoint_task_done(self, task_id: str) -> str:
        return self._key("checkpoint_task_done", task_id)

    @property
    def checkpoint_tasks_seq(self) -> str:
        return self._key("checkpoint_tasks_seq")

    @property
    def checkpoint_tasks_running(self) -> str:
        return self._key("checkpoint_tasks_running")

    def job_checkpoint_tasks(self, job_id: str, kind: str) -> str:
        return self._key("job_checkpoint_tasks", job_id, kind)

    def webhook(self, webhook_id: str) -> str:
        return self._key("webhook", webhook_id)

    def webhooks_by_tenant(self, tenant: str) -> str:
        return self._key("webhooks_by_tenant", tenant)

    def webhook_deliveries(self, webhook_id: str) -> str:
        return self._key("webhook_deliveries", webhook_id)

    def webhook_delivery(self, webhook_id: str, event_id: str) -> str:
        return self._key("webhook_delivery", webhook_id, event_id)

    @property
    def webhook_feed(self) -> str:
        return self._key("webhook_feed")

    @property
    def webhooks_due(self) -> str:
        return self._key("webhooks_due")

    def streams(self, tenant: str) -> str:
        return self._key("streams", tenant)
