"""JobStore against a real Redis: records, paging, idempotency, leases, transitions."""

from __future__ import annotations

import re
import threading
import time
from datetime import datetime

import pytest
import redis

from thaw.errors import ThawError
from thaw.store import (
    EventLog,
    IdempotencyConflict,
    InvalidCursor,
    Job,
    JobError,
    JobNotTerminal,
    JobStatus,
    JobStore,
)

SPEC = {"base_model": {"source": "torchvision", "name": "resnet18"}, "hyperparameters": {}}


@pytest.fixture
def store(redis_client: redis.Redis) -> JobStore:
    return JobStore(redis_client)


def make(store: JobStore, tenant: str = "acme", **kw: object) -> Job:
    job, created = store.create(tenant, SPEC, **kw)  # type: ignore[arg-type]
    assert created is True
    return job


def running(store: JobStore, worker: str = "w1", lease: float = 30.0, **kw: object) -> Job:
    job = make(store, **kw)
    claimed = store.claim(job.id, worker, lease)
    assert claimed is not None
    return claimed


def test_create_returns_a_queued_record_with_every_field(store: JobStore) -> None:
    job, created = store.create("acme", SPEC, name="first", max_attempts=2)

    assert created is True
    assert re.fullmatch(r"job_[0-9a-f]{24}", job.id)
    assert job.tenant == "acme"
    assert job.status is JobStatus.QUEUED
    assert job.spec == SPEC
    assert job.name == "first"
    assert (job.progress, job.metrics, job.trainable) == ({}, {}, {})
    assert (job.attempts, job.max_attempts) == (0, 2)
    assert job.error is None
    assert job.cancel_requested is False
    assert job.worker is None
    assert job.started_at is None and job.finished_at is None and job.lease_expires_at is None
    assert job.created_at == job.updated_at
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", job.created_at)
    parsed = datetime.fromisoformat(job.created_at.replace("Z", "+00:00"))
    assert abs(parsed.timestamp() - job.created_ts) < 0.001
    assert abs(job.created_ts - time.time()) < 5
    assert store.get(job.id) == job


def test_to_dict_is_json_ready(store: JobStore) -> None:
    job = make(store, name="n")
    d = job.to_dict()
    assert d["status"] == "queued"
    assert d["error"] is None
    assert d["created_at"] == job.created_at
    assert set(d) == {
        "id", "tenant", "name", "status", "spec", "progress", "metrics", "trainable",
        "stopped_early", "attempts", "max_attempts", "error", "cancel_requested", "worker",
        "lease_expires_at", "created_at", "started_at", "finished_at", "updated_at",
    }  # fmt: skip


def test_get_hides_other_tenants_and_missing_jobs(store: JobStore) -> None:
    job = make(store, tenant="acme")
    assert store.get(job.id, tenant="acme") == job
    assert store.get(job.id, tenant="globex") is None
    assert store.get("job_000000000000000000000000") is None


def test_list_pages_newest_first_with_cursor(store: JobStore) -> None:
    ids = [make(store).id for _ in range(7)]
    assert ids == sorted(ids)

    page1, more1 = store.list("acme", limit=3)
    page2, more2 = store.list("acme", limit=3, after=page1[-1].id)
    page3, more3 = store.list("acme", limit=3, after=page2[-1].id)

    assert [j.id for j in page1] == ids[::-1][0:3]
    assert [j.id for j in page2] == ids[::-1][3:6]
    assert [j.id for j in page3] == ids[::-1][6:7]
    assert (more1, more2, more3) == (True, True, False)


def test_list_exact_page_has_no_more(store: JobStore) -> None:
    ids = [make(store).id for _ in range(4)]
    page, more = store.list("acme", limit=4)
    assert [j.id for j in page] == ids[::-1]
    assert more is False


def test_list_cursor_survives_deleting_the_cursor_job(store: JobStore) -> None:
    ids = [make(store).id for _ in range(4)]
    store.request_cancel(ids[2])
    assert store.delete(ids[2]) is True
    page, more = store.list("acme", limit=10, after=ids[2])
    assert [j.id for j in page] == [ids[1], ids[0]]
    assert more is False


def test_list_filters_by_status_and_tenant(store: JobStore) -> None:
    a = make(store, tenant="acme")
    b = make(store, tenant="acme")
    c = make(store, tenant="acme")
    other = make(store, tenant="globex")
    store.claim(b.id, "w1", 30)
    store.request_cancel(c.id)

    def ids(status: str | None, tenant: str = "acme") -> list[str]:
        return [j.id for j in store.list(tenant, status=status)[0]]

    assert ids(None) == [c.id, b.id, a.id]
    assert ids("queued") == [a.id]
    assert ids("running") == [b.id]
    assert ids("cancelled") == [c.id]
    assert ids("succeeded") == []
    assert ids(None, "globex") == [other.id]
    assert ids("running", "globex") == []
    assert store.ids_by_status("queued") == [other.id, a.id]

    assert store.finish(b.id, "w1", "succeeded") is True
    assert ids("running") == []
    assert ids("succeeded") == [b.id]


def test_list_rejects_a_malformed_cursor_and_status(store: JobStore) -> None:
    with pytest.raises(InvalidCursor) as info:
        store.list("acme", after="nope")
    assert isinstance(info.value, ThawError)
    assert info.value.code == "invalid_cursor"
    with pytest.raises(ValueError):
        store.list("acme", status="paused")


def test_idempotency_same_body_returns_the_first_job(store: JobStore) -> None:
    first, created1 = store.create("acme", SPEC, idempotency_key="k1", body_hash="h1")
    again, created2 = store.create("acme", SPEC, idempotency_key="k1", body_hash="h1")
    assert (created1, created2) == (True, False)
    assert again.id == first.id
    assert len(store.list("acme")[0]) == 1


def test_idempotency_other_body_conflicts(store: JobStore) -> None:
    first, _ = store.create("acme", SPEC, idempotency_key="k1", body_hash="h1")
    with pytest.raises(IdempotencyConflict) as info:
        store.create("acme", SPEC, idempotency_key="k1", body_hash="h2")
    assert info.value.job_id == first.id
    assert info.value.code == "idempotency_conflict"
    assert len(store.list("acme")[0]) == 1


def test_idempotency_default_hash_and_tenant_scope(store: JobStore) -> None:
    first, _ = store.create("acme", SPEC, idempotency_key="k")
    reordered = dict(reversed(list(SPEC.items())))
    again, created = store.create("acme", reordered, idempotency_key="k")
    assert (again.id, created) == (first.id, False)
    with pytest.raises(IdempotencyConflict):
        store.create("acme", {"other": 1}, idempotency_key="k")
    theirs, created_theirs = store.create("globex", SPEC, idempotency_key="k")
    assert created_theirs is True
    assert theirs.id != first.id


def test_idempotency_key_of_a_deleted_job_creates_anew(store: JobStore) -> None:
    first, _ = store.create("acme", SPEC, idempotency_key="k", body_hash="h")
    store.request_cancel(first.id)
    store.delete(first.id)
    second, created = store.create("acme", SPEC, idempotency_key="k", body_hash="h")
    assert created is True
    assert second.id != first.id


def test_idempotency_racing_creates_make_one_job(store: JobStore) -> None:
    results: list[tuple[str, bool]] = []
    barrier = threading.Barrier(8)

    def submit() -> None:
        barrier.wait()
        job, created = store.create("acme", SPEC, idempotency_key="race", body_hash="h")
        results.append((job.id, created))

    threads = [threading.Thread(target=submit) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len({job_id for job_id, _ in results}) == 1
    assert sorted(created for _, created in results) == [False] * 7 + [True]


def test_claim_starts_a_queued_job(store: JobStore) -> None:
    job = make(store)
    claimed = store.claim(job.id, "w1", 30)
    assert claimed is not None
    assert claimed.status is JobStatus.RUNNING
    assert claimed.attempts == 1
    assert claimed.worker == "w1"
    assert claimed.started_at is not None
    assert claimed.lease_expires_ts is not None
    assert 29 < claimed.lease_expires_ts - claimed.updated_ts <= 30.001
    assert store.expired_leases() == []
    assert store.expired_leases(now=claimed.lease_expires_ts + 1) == [job.id]


def test_claim_race_has_exactly_one_winner(store: JobStore) -> None:
    job = make(store)
    barrier = threading.Barrier(10)
    winners: list[str] = []

    def claimer(worker: str) -> None:
        barrier.wait()
        if store.claim(job.id, worker, 30) is not None:
            winners.append(worker)

    threads = [threading.Thread(target=claimer, args=(f"w{i}",)) for i in range(10)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(winners) == 1
    final = store.get(job.id)
    assert final is not None
    assert (final.worker, final.attempts) == (winners[0], 1)


def test_live_lease_blocks_a_second_claim(store: JobStore) -> None:
    job = running(store, "w1")
    assert store.claim(job.id, "w2", 30) is None
    assert store.claim(job.id, "w1", 30) is None
    current = store.get(job.id)
    assert current is not None
    assert (current.worker, current.attempts) == ("w1", 1)


def test_expired_lease_is_reclaimed_with_one_more_attempt(store: JobStore) -> None:
    job = running(store, "w1", lease=0.2, max_attempts=3)
    time.sleep(0.3)
    assert store.expired_leases() == [job.id]

    resumed = store.claim(job.id, "w2", 30)
    assert resumed is not None
    assert (resumed.status, resumed.worker, resumed.attempts) == (JobStatus.RUNNING, "w2", 2)
    assert resumed.started_at == job.started_at
    assert store.expired_leases() == []
    assert store.heartbeat(job.id, "w1", 30) is False
    assert store.finish(job.id, "w1", "succeeded") is False
    assert store.update_progress(job.id, "w1", {"epoch": 9}) is False
    assert store.finish(job.id, "w2", "succeeded") is True


def test_heartbeat_extends_only_the_holders_lease(store: JobStore) -> None:
    job = running(store, "w1", lease=0.3)
    assert store.heartbeat(job.id, "w2", 30) is False
    assert store.heartbeat(job.id, "w1", 30) is True
    time.sleep(0.4)
    assert store.claim(job.id, "w2", 30) is None
    assert store.expired_leases() == []
    current = store.get(job.id)
    assert current is not None and current.lease_expires_ts is not None
    assert current.lease_expires_ts > time.time() + 25


def test_heartbeat_on_queued_or_missing_job_fails(store: JobStore) -> None:
    job = make(store)
    assert store.heartbeat(job.id, "w1", 30) is False
    assert store.heartbeat("job_000000000000000000000000", "w1", 30) is False


def test_max_attempts_exceeded_fails_the_job(store: JobStore, redis_client: redis.Redis) -> None:
    job = running(store, "w1", lease=0.1, max_attempts=2)
    time.sleep(0.15)
    assert store.claim(job.id, "w2", 0.1) is not None
    time.sleep(0.15)

    assert store.claim(job.id, "w3", 30) is None

    failed = store.get(job.id)
    assert failed is not None
    assert failed.status is JobStatus.FAILED
    assert failed.attempts == 2
    assert failed.error is not None
    assert failed.error.code == "max_attempts"
    assert failed.error.message.startswith("gave up after 2 attempts (max_attempts=2)")
    assert failed.worker is None and failed.lease_expires_at is None
    assert failed.finished_at is not None
    assert store.expired_leases() == []
    assert [j.id for j in store.list("acme", status="failed")[0]] == [job.id]
    assert store.list("acme", status="running")[0] == []


def test_finish_by_holder_and_terminal_states_are_final(store: JobStore) -> None:
    job = running(store, "w1")
    assert store.finish(job.id, "w2", "succeeded") is False
    error = JobError("oom", "CUDA out of memory")
    assert store.finish(job.id, "w1", "failed", error) is True

    done = store.get(job.id)
    assert done is not None
    assert done.status is JobStatus.FAILED
    assert done.error == error
    assert done.worker is None
    assert done.finished_at is not None

    assert store.finish(job.id, "w1", "succeeded") is False
    assert store.claim(job.id, "w1", 30) is None
    assert store.heartbeat(job.id, "w1", 30) is False
    assert store.update_progress(job.id, "w1", {"epoch": 2}) is False
    after_cancel = store.request_cancel(job.id)
    assert after_cancel is not None
    assert after_cancel.status is JobStatus.FAILED
    assert after_cancel.cancel_requested is False
    assert store.get(job.id) == done


def test_finish_refuses_a_non_terminal_status(store: JobStore) -> None:
    job = running(store, "w1")
    with pytest.raises(ValueError):
        store.finish(job.id, "w1", "queued")


def test_cancel_queued_job_is_immediate(store: JobStore) -> None:
    job = make(store)
    cancelled = store.request_cancel(job.id)
    assert cancelled is not None
    assert cancelled.status is JobStatus.CANCELLED
    assert cancelled.finished_at is not None
    assert store.claim(job.id, "w1", 30) is None
    assert store.list("acme", status="queued")[0] == []
    assert [j.id for j in store.list("acme", status="cancelled")[0]] == [job.id]


def test_cancel_running_job_sets_the_flag(store: JobStore) -> None:
    job = running(store, "w1")
    assert store.get(job.id).cancel_requested is False
    flagged = store.request_cancel(job.id)
    assert flagged is not None
    assert (flagged.status, flagged.cancel_requested) == (JobStatus.RUNNING, True)
    assert store.get(job.id).cancel_requested is True
    assert store.finish(job.id, "w1", "cancelled") is True
    final = store.get(job.id)
    assert final is not None and final.status is JobStatus.CANCELLED


def test_cancel_respects_tenant_and_missing(store: JobStore) -> None:
    job = make(store, tenant="acme")
    assert store.request_cancel(job.id, tenant="globex") is None
    current = store.get(job.id)
    assert current is not None and current.status is JobStatus.QUEUED
    assert store.request_cancel("job_000000000000000000000000") is None


def test_expired_lease_with_cancel_requested_ends_cancelled(store: JobStore) -> None:
    job = running(store, "w1", lease=0.1)
    store.request_cancel(job.id)
    time.sleep(0.15)
    assert store.claim(job.id, "w2", 30) is None
    final = store.get(job.id)
    assert final is not None
    assert (final.status, final.attempts) == (JobStatus.CANCELLED, 1)


def test_progress_metrics_and_trainable(store: JobStore) -> None:
    job = running(store, "w1")
    assert store.update_progress(job.id, "w2", {"epoch": 1}) is False
    assert store.update_progress(job.id, "w1", {"epoch": 1, "step": 10}, {"loss": 0.5})
    assert store.update_progress(job.id, "w1", {"epoch": 1, "step": 20})
    assert store.set_trainable(job.id, {"trainable_params": 10, "total_params": 100})
    assert store.set_trainable("job_000000000000000000000000", {"x": 1}) is False

    current = store.get(job.id)
    assert current is not None
    assert current.progress == {"epoch": 1, "step": 20}
    assert current.metrics == {"loss": 0.5}
    assert current.trainable == {"trainable_params": 10, "total_params": 100}


def test_layer_status_round_trip(store: JobStore, redis_client: redis.Redis) -> None:
    job = make(store)
    layers1 = {"epoch": 1, "layers": [{"name": "fc", "trainable": True}]}
    layers3 = {"epoch": 3, "layers": [{"name": "fc", "trainable": "partial"}]}
    assert store.save_layer_status(job.id, "epoch:1", layers1) is True
    assert store.save_layer_status(job.id, "epoch:3", layers3) is True
    assert store.load_layer_status(job.id) == {"epoch:1": layers1, "epoch:3": layers3}
    missing = "job_000000000000000000000000"
    assert store.save_layer_status(missing, "epoch:1", layers1) is False
    assert store.load_layer_status(missing) == {}
    assert redis_client.exists(f"thaw:job:{missing}:layers") == 0


def test_delete_only_terminal_and_removes_everything(
    store: JobStore, redis_client: redis.Redis
) -> None:
    keep = make(store)
    job = running(store, "w1")
    store.save_layer_status(job.id, "epoch:1", {"layers": []})
    EventLog(redis_client).append(job.id, "log", {"message": "hi"})

    with pytest.raises(JobNotTerminal) as info:
        store.delete(job.id)
    assert info.value.job_status == "running"
    with pytest.raises(JobNotTerminal):
        store.delete(keep.id)

    store.finish(job.id, "w1", "succeeded")
    assert store.delete(job.id, tenant="globex") is False
    assert store.delete(job.id) is True
    assert store.delete(job.id) is False

    assert store.get(job.id) is None
    leftover = [k for k in redis_client.keys("*") if job.id in k]
    assert leftover == []
    for key in redis_client.keys("thaw:jobs:*"):
        if redis_client.type(key) == "zset":
            assert redis_client.zscore(key, job.id) is None
    assert [j.id for j in store.list("acme")[0]] == [keep.id]


def test_transitions_append_status_events(store: JobStore, redis_client: redis.Redis) -> None:
    job = running(store, "w1", lease=0.1)
    time.sleep(0.15)
    store.claim(job.id, "w2", 30)
    store.request_cancel(job.id)
    store.finish(job.id, "w2", "cancelled")

    events = EventLog(redis_client).read(job.id)
    assert [e.type for e in events] == ["status"] * 5
    assert [e.data for e in events] == [
        {"status": "queued", "attempts": 0},
        {"status": "running", "attempts": 1, "worker": "w1", "token": 1, "resumed": False},
        {"status": "running", "attempts": 2, "worker": "w2", "token": 2, "resumed": True},
        {"status": "running", "attempts": 2, "cancel_requested": True},
        {"status": "cancelled", "attempts": 2},
    ]
    assert [e.token for e in events] == [0, 1, 2, 2, 2]


def test_prefix_isolates_stores(redis_client: redis.Redis) -> None:
    a = JobStore(redis_client, prefix="one")
    b = JobStore(redis_client, prefix="two")
    job, _ = a.create("acme", SPEC)
    assert b.get(job.id) is None
    assert b.list("acme") == ([], False)
    assert redis_client.exists(f"one:job:{job.id}") == 1


def test_works_with_a_bytes_client(redis_url: str, redis_client: redis.Redis) -> None:
    raw = redis.Redis.from_url(redis_url)
    try:
        store = JobStore(raw)
        job, _ = store.create("acme", SPEC, name="b")
        claimed = store.claim(job.id, "w1", 30)
        assert claimed is not None and claimed.worker == "w1"
        assert [j.name for j in store.list("acme")[0]] == ["b"]
        assert store.expired_leases(now=time.time() + 60) == [job.id]
    finally:
        raw.close()
