"""Records of work a worker does on a job's checkpoint: evaluations, predictions, exports.

Each record belongs to its job's tenant and is listed under the job, newest first. Its
status moves ``queued -> running -> succeeded | failed``; a prediction nobody started
before its deadline becomes ``expired`` and no worker runs it afterwards."""

from __future__ import annotations

import re
import secrets
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

import redis

from thaw.job_status import TASK_TERMINAL_STATUSES, TaskStatus
from thaw.store.codec import decoded, dumps, iso, loads, text
from thaw.store.keys import Keys
from thaw.store.lua import script

TaskKind = Literal["evaluation", "prediction", "export"]


ID_PREFIXES: dict[str, str] = {"evaluation": "ev_", "prediction": "pr_", "export": "ex_"}
TASK_ID = {kind: re.compile(rf"^{prefix}[0-9a-f]{{24}}$") for kind, prefix in ID_PREFIXES.items()}
TERMINAL = TASK_TERMINAL_STATUSES
FINISHED = frozenset({TaskStatus.SUCCEEDED, TaskStatus.FAILED})
"""The ends a worker reaches: they wake waiters and, for WEBHOOK_KINDS, notify webhooks."""
WEBHOOK_KINDS = frozenset({"evaluation", "export"})
DONE_SIGNAL_TTL_S = 300
LIST_LIMIT = 100
WAIT_SLICE_S = 10.0


def _lua_set(name: str, members: frozenset[str]) -> str:
    return f"local {name} = {{" + ", ".join(f"['{m}'] = true" for m in sorted(members)) + "}\n"


# ARGV (after the prelude's two): the record's id, the statuses it may move from (comma
# separated), the new status, then field/value pairs to set. Returns 1 when it moved. A
# record that starts running joins the running set, one that ends leaves it; one that
# finishes wakes its waiters and, in the same script, reaches the webhook feed when its
# tenant has a webhook (``thaw.webhooks`` turns it into deliveries).
_TRANSITION = script(
    f"local RUNNING = '{TaskStatus.RUNNING}'\n"
    f"local DONE_TTL = {DONE_SIGNAL_TTL_S}\n"
    + _lua_set("FINISHED", FINISHED)
    + _lua_set("WEBHOOK_KINDS", WEBHOOK_KINDS)
    + r"""
local id, to = ARGV[3], ARGV[5]
local k = key_checkpoint_task(id)
local h = redis.call('HMGET', k, 'status', 'tenant', 'kind', 'job_id')
if not h[1] then return 0 end
local allowed = false
for from in string.gmatch(ARGV[4], '[^,]+') do
  if from == h[1] then allowed = true end
end
if not allowed then return 0 end
redis.call('HSET', k, 'status', to, unpack(ARGV, 6))
if to == RUNNING then
  redis.call('SADD', key_checkpoint_tasks_running(), id)
else
  redis.call('SREM', key_checkpoint_tasks_running(), id)
end
if FINISHED[to] then
  local done = key_checkpoint_task_done(id)
  redis.call('RPUSH', done, to)
  redis.call('EXPIRE', done, DONE_TTL)
  if WEBHOOK_KINDS[h[3]] and redis.call('EXISTS', key_webhooks_by_tenant(h[2])) == 1 then
    redis.call('XADD', key_webhook_feed(), 'MAXLEN', '~', FEED_MAXLEN, '*', 'task', id,
      'kind', h[3], 'job', h[4], 'tenant', h[2], 'data', cjson.encode({status = to}))
  end
end
return 1
"""
)


@dataclass(frozen=True, slots=True)
class CheckpointTask:
    id: str
    kind: str
    tenant: str
    job_id: str
    status: TaskStatus
    checkpoint: str
    request: dict[str, Any]
    result: dict[str, Any] | None
    error: dict[str, Any] | None
    created_at: str
    started_at: str | None
    finished_at: str | None

    @classmethod
    def from_hash(cls, fields: Mapping[str, str]) -> CheckpointTask:
        return cls(
            id=fields["id"],
            kind=fields["kind"],
            tenant=fields["tenant"],
            job_id=fields["job_id"],
            status=TaskStatus(fields["status"]),
            checkpoint=fields["checkpoint"],
            request=loads(fields.get("request") or "{}"),
            result=loads(fields["result"]) if fields.get("result") else None,
            error=loads(fields["error"]) if fields.get("error") else None,
            created_at=fields["created_at"],
            started_at=fields.get("started_at") or None,
            finished_at=fields.get("finished_at") or None,
        )

    @property
    def terminal(self) -> bool:
        return self.status in TERMINAL

    def public_dict(self) -> dict[str, Any]:
        """The API's shape: everything but the tenant."""
        return {
            "id": self.id,
            "kind": self.kind,
            "job_id": self.job_id,
            "status": self.status.value,
            "checkpoint": self.checkpoint,
            "request": self.request,
            "result": self.result,
            "error": self.error,
            "created_at": self.created_at,
            "started_at": self.started_at,
            "finished_at": self.finished_at,
        }


def _now() -> str:
    return iso(datetime.now(UTC).timestamp()) or ""


class CheckpointTaskStore:
    def __init__(self, client: redis.Redis, prefix: str = "thaw"):
        self.redis = client
        self.keys = Keys(prefix)
        self._transition = client.register_script(_TRANSITION)

    def create(
        self,
        kind: TaskKind,
        tenant: str,
        job_id: str,
        checkpoint: str,
        request: Mapping[str, Any],
    ) -> CheckpointTask:
        """A queued record. Its id starts with the creation time; the job's list is in the
        order of a counter every process shares, so two records of one millisecond keep
        theirs."""
        ms = time.time_ns() // 1_000_000
        task_id = f"{ID_PREFIXES[kind]}{ms:012x}{secrets.token_hex(6)}"
        fields = {
            "id": task_id,
            "kind": kind,
            "tenant": tenant,
            "job_id": job_id,
            "status": TaskStatus.QUEUED.value,
            "checkpoint": checkpoint,
            "request": dumps(dict(request)),
            "created_at": _now(),
        }
        order = int(self.redis.incr(self.keys.checkpoint_tasks_seq))
        pipe = self.redis.pipeline(transaction=True)
        pipe.hset(self.keys.checkpoint_task(task_id), mapping=fields)
        pipe.zadd(self.keys.job_checkpoint_tasks(job_id, kind), {task_id: order})
        pipe.execute()
        return CheckpointTask.from_hash(fields)

    def get(self, task_id: str, tenant: str | None = None) -> CheckpointTask | None:
        """The record, or None when missing or another tenant's."""
        fields = decoded(self.redis.hgetall(self.keys.checkpoint_task(task_id)))
        if not fields or (tenant is not None and fields.get("tenant") != tenant):
            return None
        return CheckpointTask.from_hash(fields)

    def list(self, job_id: str, kind: TaskKind, limit: int = LIST_LIMIT) -> list[CheckpointTask]:
        """The job's records of ``kind``, newest first."""
        ids = self.redis.zrevrange(self.keys.job_checkpoint_tasks(job_id, kind), 0, limit - 1)
        pipe = self.redis.pipeline(transaction=False)
        for task_id in ids:
            pipe.hgetall(self.keys.checkpoint_task(text(task_id) or ""))
        found = (decoded(raw) for raw in pipe.execute())
        return [CheckpointTask.from_hash(f) for f in found if f]

    def _move(
        self, task_id: str, from_: tuple[TaskStatus, ...], to: TaskStatus, **fields: str
    ) -> bool:
        pairs = (x for pair in fields.items() for x in pair)
        # The prelude's second argument caps job event streams, which this script never writes.
        args = [self.keys.prefix, 0, task_id, ",".join(from_), to, *pairs]
        return bool(self._transition(args=args))

    def start(self, task_id: str, worker_id: str = "") -> bool:
        """Queued to running on ``worker_id``; False when it was not queued (expired, or
        already taken)."""
        return self._move(
            task_id, (TaskStatus.QUEUED,), TaskStatus.RUNNING, started_at=_now(), worker=worker_id
        )

    def fail_orphans(self, live_workers: set[str]) -> list[str]:
        """Fail every running record whose worker is not among ``live_workers`` (it died
        mid-run and nothing else would end it); the ids failed."""
        running = [text(i) or "" for i in self.redis.smembers(self.keys.checkpoint_tasks_running)]
        failed = []
        for task_id in running:
            worker = text(self.redis.hget(self.keys.checkpoint_task(task_id), "worker"))
            if worker is None:
                self.redis.srem(self.keys.checkpoint_tasks_running, task_id)
            elif worker not in live_workers and self.finish(
                task_id,
                error={
                    "code": "worker_lost",
                    "message": f"the worker running it ({worker}) stopped; ask again",
                    "status": 503,
                },
            ):
                failed.append(task_id)
        return failed

    def finish(
        self,
        task_id: str,
        *,
        result: Mapping[str, Any] | None = None,
        error: Mapping[str, Any] | None = None,
    ) -> bool:
        """Running (or queued) to succeeded with ``result``, or failed with ``error``;
        wakes whoever waits on it."""
        status = TaskStatus.FAILED if error is not None else TaskStatus.SUCCEEDED
        payload = {"error": dumps(dict(error))} if error is not None else {}
        if result is not None:
            payload["result"] = dumps(dict(result))
        from_ = (TaskStatus.QUEUED, TaskStatus.RUNNING)
        return self._move(task_id, from_, status, finished_at=_now(), **payload)

    def expire(self, task_id: str) -> bool:
        """Queued to expired (its deadline passed before a worker took it)."""
        return self._move(task_id, (TaskStatus.QUEUED,), TaskStatus.EXPIRED, finished_at=_now())

    def wait(self, task_id: str, timeout: float) -> CheckpointTask | None:
        """Block up to ``timeout`` seconds until the record is terminal; the record then,
        or None if it is not terminal yet."""
        deadline = time.monotonic() + timeout
        key = self.keys.checkpoint_task_done(task_id)
        while True:
            record = self.get(task_id)
            left = deadline - time.monotonic()
            if record is None or record.terminal or left <= 0:
                break
            # Short waits, so no single read outlasts the client's socket timeout.
            self.redis.blpop([key], timeout=max(min(left, WAIT_SLICE_S), 0.01))
        return record if record is not None and record.terminal else None

    def delete_for_job(self, job_id: str) -> None:
        """Remove every record of a deleted job."""
        for kind in ID_PREFIXES:
            index = self.keys.job_checkpoint_tasks(job_id, kind)
            ids = [text(i) or "" for i in self.redis.zrange(index, 0, -1)]
            pipe = self.redis.pipeline(transaction=True)
            for task_id in ids:
                pipe.delete(self.keys.checkpoint_task(task_id))
                pipe.delete(self.keys.checkpoint_task_done(task_id))
            pipe.delete(index)
            pipe.execute()
