"""The job store: records, indexes, leases and per-layer status, with atomic transitions."""

from __future__ import annotations

import hashlib
import json
import secrets
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import redis

from thaw.job_ids import JOB_ID
from thaw.job_status import TERMINAL_STATUSES, JobStatus
from thaw.store import job_scripts
from thaw.store.codec import decoded, dumps, loads, pairs, text
from thaw.store.errors import IdempotencyConflict, InvalidCursor, JobNotTerminal, StoreError
from thaw.store.events import check_event
from thaw.store.job_record import Job, JobError
from thaw.store.keys import Keys

DEFAULT_EVENTS_MAXLEN = 10_000
DEFAULT_IDEMPOTENCY_TTL_S = 24 * 3600


@dataclass(frozen=True, slots=True)
class LeaseCheck:
    """``state``: ``held``; ``expired`` (still ours, renew it); ``lost`` (another claim
    holds the job, or it ended)."""

    state: str
    cancel_requested: bool


def _tok(token: int | None) -> str:
    return "" if token is None else str(int(token))


def body_hash_of(spec: Mapping[str, Any], name: str | None = None) -> str:
    """A stable hash of a submitted body (key order ignored), for Idempotency-Key checks."""
    canonical = json.dumps({"name": name, "spec": spec}, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


class JobStore:
    def __init__(
        self,
        client: redis.Redis,
        prefix: str = "thaw",
        *,
        events_maxlen: int = DEFAULT_EVENTS_MAXLEN,
        idempotency_ttl_s: int = DEFAULT_IDEMPOTENCY_TTL_S,
    ):
        self.redis = client
        self.keys = Keys(prefix)
        self.events_maxlen = events_maxlen
        self.idempotency_ttl_s = idempotency_ttl_s
        self._create = client.register_script(job_scripts.CREATE)
        self._claim = client.register_script(job_scripts.CLAIM)
        self._heartbeat = client.register_script(job_scripts.HEARTBEAT)
        self._finish = client.register_script(job_scripts.FINISH)
        self._cancel = client.register_script(job_scripts.REQUEST_CANCEL)
        self._progress = client.register_script(job_scripts.UPDATE_PROGRESS)
        self._set_if_exists = client.register_script(job_scripts.SET_IF_EXISTS)
        self._delete = client.register_script(job_scripts.DELETE)
        self._holder_event = client.register_script(job_scripts.HOLDER_EVENT)
        self._holder_set = client.register_script(job_scripts.HOLDER_SET)
        self._check = client.register_script(job_scripts.CHECK)
        self._release = client.register_script(job_scripts.RELEASE)
        self._redispatch = client.register_script(job_scripts.REDISPATCH)

    def _run(self, script: Any, *args: str | int | float) -> Any:
        return script(args=[self.keys.prefix, self.events_maxlen, *args])

    @staticmethod
    def _job_from_reply(reply: Sequence[Any]) -> tuple[str, Job | None]:
        code = text(reply[0]) or ""
        fields = pairs(reply[1:])
        return code, Job.from_hash(fields) if fields else None

    def create(
        self,
        tenant: str,
        spec: Mapping[str, Any],
        name: str | None = None,
        max_attempts: int = 3,
        idempotency_key: str | None = None,
        body_hash: str | None = None,
    ) -> tuple[Job, bool]:
        """Queue a new job; with an idempotency key, a repeat of the same body returns the
        first job and ``False``, a different body raises ``IdempotencyConflict``."""
        if max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")
        if idempotency_key is not None and body_hash is None:
            body_hash = body_hash_of(spec, name)
        idem = self.keys.idempotency(tenant, idempotency_key) if idempotency_key else ""
        reply = self._run(
            self._create,
            tenant,
            secrets.token_hex(4),
            idem,
            body_hash or "",
            self.idempotency_ttl_s,
            name or "",
            dumps(dict(spec)),
            max_attempts,
        )
        code = text(reply[0])
        if code == "conflict":
            raise IdempotencyConflict(idempotency_key or "", text(reply[1]) or "")
        _, job = self._job_from_reply(reply)
        if job is None:
            raise StoreError(f"job creation returned no record ({code})")
        return job, code == "created"

    def get(self, job_id: str, tenant: str | None = None) -> Job | None:
        """The job, or ``None`` when it does not exist or belongs to another tenant."""
        fields = decoded(self.redis.hgetall(self.keys.job(job_id)))
        if not fields or "status" not in fields:
            return None
        if tenant is not None and fields.get("tenant") != tenant:
            return None
        return Job.from_hash(fields)

    def list(
        self,
        tenant: str,
        status: JobStatus | str | None = None,
        limit: int = 20,
        after: str | None = None,
    ) -> tuple[list[Job], bool]:
        """A page of the tenant's jobs, newest first, and whether more follow.

        ``after`` is the last id of the previous page; it need not still exist."""
        if limit < 1:
            raise ValueError("limit must be at least 1")
        if after is not None and not JOB_ID.match(after):
            raise InvalidCursor(after, "a job id such as job_0123456789abcdef01234567")
        index = (
            self.keys.jobs_by_tenant_status(tenant, JobStatus(status).value)
            if status is not None
            else self.keys.jobs_by_tenant(tenant)
        )
        upper = f"({after}" if after else "+"
        ids = [text(i) or "" for i in self.redis.zrevrangebylex(index, upper, "-", 0, limit + 1)]
        has_more = len(ids) > limit
        jobs = self._load_many(ids[:limit])
        return jobs, has_more

    def _load_many(self, ids: Sequence[str]) -> list[Job]:
        pipe = self.redis.pipeline(transaction=False)
        for job_id in ids:
            pipe.hgetall(self.keys.job(job_id))
        out = []
        for raw in pipe.execute():
            fields = decoded(raw)
            if "status" in fields:
                out.append(Job.from_hash(fields))
        return out

    def count(self, tenant: str, status: JobStatus | str) -> int:
        """How many of the tenant's jobs are in ``status``."""
        return int(
            self.redis.zcard(self.keys.jobs_by_tenant_status(tenant, JobStatus(status).value))
        )

    def ids_by_status(self, status: JobStatus | str) -> list[str]:
        """Every job id in a status, all tenants, newest first."""
        index = self.keys.jobs_by_status(JobStatus(status).value)
        return [text(i) or "" for i in self.redis.zrevrangebylex(index, "+", "-")]

    def claim(self, job_id: str, worker_id: str, lease_seconds: float) -> Job | None:
        """Take a queued job, or a running one whose lease expired, for ``worker_id``.

        Returns the running job (attempts counted) or ``None`` when it is held by a live
        lease (or by one that lapsed less than a lease after Redis started answering),
        terminal, missing, or out of attempts (then it is marked failed with error code
        ``max_attempts``). A running job with an expired lease and a pending cancel
        request becomes cancelled instead of resuming."""
        if lease_seconds <= 0:
            raise ValueError("lease_seconds must be positive")
        code, job = self._job_from_reply(self._run(self._claim, job_id, worker_id, lease_seconds))
        return job if code == "claimed" else None

    def heartbeat(
        self, job_id: str, worker_id: str, lease_seconds: float, token: int | None = None
    ) -> bool:
        """Extend the lease; ``False`` when ``worker_id`` (with the claim's ``token``, when
        given) no longer holds the job."""
        return bool(self._run(self._heartbeat, job_id, worker_id, lease_seconds, _tok(token)))

    def check(self, job_id: str, worker_id: str, token: int) -> LeaseCheck:
        """Whether the claim ``token`` of ``worker_id`` still holds the job, and whether a
        cancel was requested: one round trip, made before each optimizer step."""
        state, cancel = self._run(self._check, job_id, worker_id, _tok(token))
        return LeaseCheck(text(state) or "lost", text(cancel) == "1")

    def release(self, job_id: str, worker_id: str, token: int) -> str:
        """Hand a running job back to the queue without charging an attempt (a worker that
        shuts down after saving a resume point). ``released``, ``cancelled`` (a cancel was
        pending) or ``not_holder``."""
        return text(self._run(self._release, job_id, worker_id, _tok(token))[0]) or ""

    def redispatch(self, job_id: str, period_s: float) -> bool:
        """Take the right to send ``job_id`` to the queue again: a queued job last sent
        ``period_s`` ago or more, or a running one whose lease expired and that was not
        sent since (then once per period), once Redis has answered for a whole lease since
        it (re)started: a lease that lapsed in an outage is its holder's to renew first.
        Exactly one caller per period gets ``True``."""
        return bool(self._run(self._redispatch, job_id, period_s))

    def holder_event(
        self,
        job_id: str,
        worker_id: str,
        token: int,
        type: str,
        data: Mapping[str, Any],
        level: str = "info",
    ) -> str | None:
        """Append an event as the holder of claim ``token``; ``None`` when it is stale."""
        check_event(type, level)
        reply = self._run(
            self._holder_event, job_id, worker_id, _tok(token), type, level, dumps(dict(data))
        )
        return text(reply) or None

    def holder_set(
        self, job_id: str, worker_id: str, token: int, suffix: str, field: str, value: Any
    ) -> bool:
        """Set ``field`` of the job's hash (``suffix`` ``""``) or of ``:layers`` as the holder."""
        if suffix not in ("", ":layers"):
            raise ValueError(f"unknown job hash suffix {suffix!r}")
        return bool(
            self._run(self._holder_set, job_id, worker_id, _tok(token), suffix, field, dumps(value))
        )

    def finish(
        self,
        job_id: str,
        worker_id: str,
        status: JobStatus | str,
        error: JobError | Mapping[str, str] | None = None,
        token: int | None = None,
    ) -> bool:
        """Move the holder's running job to a terminal status; ``False`` if not the holder."""
        final = JobStatus(status)
        if final not in TERMINAL_STATUSES:
            raise ValueError(f"finish needs a terminal status, not {final.value}")
        if isinstance(error, JobError):
            error = error.to_dict()
        err = dumps({"code": error["code"], "message": error["message"]}) if error else ""
        code = text(self._run(self._finish, job_id, worker_id, final.value, err, _tok(token))[0])
        return code == "finished"

    def request_cancel(self, job_id: str, tenant: str | None = None) -> Job | None:
        """Cancel a queued job at once, flag a running one; terminal jobs stay as they are.
        ``None`` when the job does not exist (or belongs to another tenant)."""
        code, job = self._job_from_reply(self._run(self._cancel, job_id, tenant or ""))
        return job if code == "ok" else None

    def update_progress(
        self,
        job_id: str,
        worker_id: str,
        progress: Mapping[str, Any],
        metrics: Mapping[str, Any] | None = None,
        token: int | None = None,
    ) -> bool:
        """Replace progress (and the latest metrics); only the holder may."""
        metrics_json = dumps(dict(metrics)) if metrics is not None else ""
        progress_json = dumps(dict(progress))
        return bool(
            self._run(self._progress, job_id, worker_id, progress_json, metrics_json, _tok(token))
        )

    def set_trainable(self, job_id: str, summary: Mapping[str, Any]) -> bool:
        return bool(self._run(self._set_if_exists, job_id, "", "trainable", dumps(dict(summary))))

    def save_layer_status(self, job_id: str, key: str, status: Mapping[str, Any]) -> bool:
        """Record one per-layer status blob (``key`` such as ``epoch:3``) for the job."""
        return bool(self._run(self._set_if_exists, job_id, ":layers", key, dumps(dict(status))))

    def load_layer_status(self, job_id: str) -> dict[str, Any]:
        raw = decoded(self.redis.hgetall(self.keys.job_layers(job_id)))
        return {key: loads(value) for key, value in raw.items()}

    def expired_leases(self, now: float | None = None) -> list[str]:
        """Running job ids whose lease ended at or before ``now`` (default: Redis time)."""
        if now is None:
            seconds, micros = self.redis.time()
            now = seconds + micros / 1_000_000
        return [text(i) or "" for i in self.redis.zrangebyscore(self.keys.leases, "-inf", now)]

    def delete(self, job_id: str, tenant: str | None = None) -> bool:
        """Remove a terminal job with its layers, events and index entries.

        ``False`` when it does not exist; ``JobNotTerminal`` while queued or running."""
        reply = self._run(self._delete, job_id, tenant or "")
        code = text(reply[0])
        if code == "not_terminal":
            raise JobNotTerminal(job_id, text(reply[1]) or "")
        return code == "deleted"
