"""Fencing tokens, hand-back and re-dispatch in the job store (real Redis)."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest
import redis
from redis_server import RedisServer

from thaw.store import EventLog, JobStore
from thaw.store.redis_server import free_port


@pytest.fixture
def store(redis_client: redis.Redis) -> JobStore:
    return JobStore(redis_client)


def _lapse(store: JobStore, job_id: str, expired_at: str) -> None:
    """The job's lease ended at ``expired_at``, with Redis up for far longer than a lease."""
    store.redis.hset(store.keys.job(job_id), "lease_expires_at", expired_at)
    store.redis.hset(store.keys.redis_boot, "since", "1")


def _job(store: JobStore):
    job, _ = store.create("acme", {"name": "x"}, max_attempts=2)
    return job


def test_each_claim_gets_a_new_token_and_a_stale_token_of_the_same_worker_writes_nothing(
    store: JobStore, redis_client: redis.Redis
) -> None:
    job = _job(store)
    first = store.claim(job.id, "w1", 0.1)
    assert first is not None and first.token == 1
    time.sleep(0.15)
    second = store.claim(job.id, "w1", 30)  # the same worker id claims again
    assert second is not None and second.token == 2

    assert store.update_progress(job.id, "w1", {"step": 9}, token=1) is False
    assert store.heartbeat(job.id, "w1", 30, token=1) is False
    assert store.holder_event(job.id, "w1", 1, "log", {"message": "stale"}) is None
    assert store.holder_set(job.id, "w1", 1, ":layers", "epoch:1", {"stale": True}) is False
    assert store.check(job.id, "w1", 1).state == "lost"
    assert store.finish(job.id, "w1", "succeeded", token=1) is False
    assert store.get(job.id).progress == {}
    assert store.load_layer_status(job.id) == {}

    assert store.update_progress(job.id, "w1", {"step": 3}, token=2) is True
    assert store.holder_event(job.id, "w1", 2, "log", {"message": "fresh"}) is not None
    assert store.check(job.id, "w1", 2).state == "held"
    assert store.finish(job.id, "w1", "succeeded", token=2) is True
    events = EventLog(redis_client).read(job.id)
    assert [(e.type, e.token) for e in events if e.type == "log"] == [("log", 2)]
    assert store.get(job.id).progress == {"step": 3}


def test_check_reports_cancel_and_an_expired_lease_that_is_still_ours(store: JobStore) -> None:
    job = _job(store)
    claimed = store.claim(job.id, "w1", 0.1)
    time.sleep(0.15)
    assert store.check(job.id, "w1", claimed.token).state == "expired"
    assert store.heartbeat(job.id, "w1", 30, token=claimed.token) is True
    store.request_cancel(job.id)
    check = store.check(job.id, "w1", claimed.token)
    assert (check.state, check.cancel_requested) == ("held", True)


def test_a_released_job_is_queued_again_and_its_next_claim_costs_no_attempt(
    store: JobStore,
) -> None:
    job = _job(store)
    claimed = store.claim(job.id, "w1", 30)
    assert store.release(job.id, "w2", claimed.token) == "not_holder"
    assert store.release(job.id, "w1", claimed.token) == "released"
    queued = store.get(job.id)
    assert (queued.status, queued.attempts, queued.worker) == ("queued", 1, None)
    assert store.ids_by_status("queued") == [job.id]
    again = store.claim(job.id, "w2", 30)
    assert (again.status, again.attempts, again.token) == ("running", 1, 2)
    assert store.release(job.id, "w1", claimed.token) == "not_holder"
    # a death after a hand-over is still charged: max_attempts=2 allows one more claim
    _lapse(store, job.id, "1")
    assert store.claim(job.id, "w3", 30).attempts == 2


def test_one_redispatch_per_period_across_concurrent_sweepers(store: JobStore) -> None:
    job = _job(store)
    assert store.redispatch(job.id, 30) is False  # just created: its message is young
    granted: list[bool] = []
    barrier = threading.Barrier(8)

    def sweep() -> None:
        barrier.wait()
        granted.append(store.redispatch(job.id, 0.05))

    time.sleep(0.06)
    threads = [threading.Thread(target=sweep) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(granted) == [False] * 7 + [True]

    claimed = store.claim(job.id, "w1", 30)
    assert store.redispatch(job.id, 0.0) is False  # running under a live lease
    seconds, micros = store.redis.time()
    _lapse(store, job.id, f"{seconds + micros / 1e6 - 0.001:.6f}")  # after the last dispatch
    assert store.redispatch(job.id, 3600) is True  # expired: once at once...
    assert store.redispatch(job.id, 3600) is False  # ...then once per period
    store.finish(job.id, "w1", "succeeded", token=claimed.token)
    assert store.redispatch(job.id, 0.0) is False


def test_a_lease_that_lapsed_in_a_redis_outage_is_its_holders_for_one_more_lease(
    tmp_path: Path,
) -> None:
    """Repeated outages longer than the lease: each time Redis answers again, the live
    holder keeps the job (no re-dispatch, no claim) and renews; a holder that stays
    silent a whole lease after Redis is back loses it as usual."""
    lease = 1.0
    server = RedisServer(data_dir=tmp_path / "redis", port=free_port()).start()
    client = redis.Redis.from_url(server.url, decode_responses=True)
    try:
        store = JobStore(client)
        job = _job(store)
        held = store.claim(job.id, "w1", lease)
        for _ in range(3):
            server.stop()  # Redis writes its append-only file and exits
            time.sleep(lease + 0.5)  # every lease lapses meanwhile
            server.start()
            assert store.expired_leases() == [job.id]
            assert store.redispatch(job.id, 0.0) is False
            assert store.claim(job.id, "w2", lease) is None
            assert store.heartbeat(job.id, "w1", lease, token=held.token) is True
            assert store.check(job.id, "w1", held.token).state == "held"
        time.sleep(lease + 0.2)  # the holder stays silent a whole lease with Redis up
        assert store.redispatch(job.id, 0.0) is True
        taken = store.claim(job.id, "w2", lease)
        assert (taken.worker, taken.token, taken.attempts) == ("w2", 2, 2)
    finally:
        client.close()
        server.stop()
