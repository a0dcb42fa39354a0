"""EventLog and WorkerRegistry against a real Redis."""

from __future__ import annotations

import re
import time

import pytest
import redis

from thaw.store import Event, EventLog, InvalidCursor, WorkerRegistry

JOB = "job_0123456789abcdef01234567"


@pytest.fixture
def log(redis_client: redis.Redis) -> EventLog:
    return EventLog(redis_client)


def test_append_and_read_in_order(log: EventLog) -> None:
    first = log.append(JOB, "phase", {"phase": 0, "epoch": 1})
    second = log.append(JOB, "metrics", {"loss": 0.25}, level="info")
    third = log.append(JOB, "log", {"message": "slow disk"}, level="warning")

    events = log.read(JOB)
    assert [e.id for e in events] == [first, second, third]
    assert [e.type for e in events] == ["phase", "metrics", "log"]
    assert [e.level for e in events] == ["info", "info", "warning"]
    assert events[1].data == {"loss": 0.25}
    assert re.fullmatch(r"\d+-\d+", first)
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", events[0].time)
    assert events[2].to_dict() == {
        "id": third,
        "type": "log",
        "level": "warning",
        "time": events[2].time,
        "data": {"message": "slow disk"},
    }


def test_read_after_and_limit(log: EventLog) -> None:
    ids = [log.append(JOB, "progress", {"step": i}) for i in range(5)]
    assert [e.id for e in log.read(JOB, limit=2)] == ids[:2]
    assert [e.id for e in log.read(JOB, after=ids[1], limit=2)] == ids[2:4]
    assert [e.data["step"] for e in log.read(JOB, after=ids[3])] == [4]
    assert log.read(JOB, after=ids[4]) == []
    assert log.read("job_ffffffffffffffffffffffff") == []
    assert log.last_id(JOB) == ids[4]
    assert log.last_id("job_ffffffffffffffffffffffff") is None


def test_rejects_unknown_type_level_and_cursor(log: EventLog) -> None:
    with pytest.raises(ValueError, match="unknown event type"):
        log.append(JOB, "gossip", {})
    with pytest.raises(ValueError, match="unknown event level"):
        log.append(JOB, "log", {}, level="loud")
    with pytest.raises(InvalidCursor):
        log.read(JOB, after="x; FLUSHALL")
    with pytest.raises(InvalidCursor):
        log.read(JOB, after="abc")
    assert log.read(JOB) == []


def test_read_with_a_bytes_client(redis_url: str, redis_client: redis.Redis) -> None:
    raw = redis.Redis.from_url(redis_url)
    try:
        log = EventLog(raw)
        eid = log.append(JOB, "log", {"message": "bytes"})
        events = log.read(JOB)
        assert events == EventLog(redis_client).read(JOB)
        assert [(e.id, e.data) for e in events] == [(eid, {"message": "bytes"})]
        assert isinstance(events[0], Event)
    finally:
        raw.close()


def test_stream_is_capped(redis_client: redis.Redis) -> None:
    log = EventLog(redis_client, maxlen=100)
    for i in range(1000):
        log.append(JOB, "progress", {"step": i})
    length = redis_client.xlen(f"thaw:job:{JOB}:events")
    assert 100 <= length < 1000
    assert log.read(JOB, after=log.read(JOB, limit=length)[-2].id)[0].data == {"step": 999}


def test_worker_heartbeats_expire(redis_client: redis.Redis) -> None:
    workers = WorkerRegistry(redis_client)
    assert workers.live_workers() == []
    workers.record_worker_heartbeat("w-b", ttl=30, info={"host": "gpu1"})
    workers.record_worker_heartbeat("w-a", ttl=0.2)
    assert workers.live_workers() == ["w-a", "w-b"]
    assert dict(workers.live())["w-b"] == {"host": "gpu1"}

    time.sleep(0.3)
    assert workers.live_workers() == ["w-b"]
    assert redis_client.exists(workers.keys.worker("w-a")) == 0

    workers.record_worker_heartbeat("w-a", ttl=30)
    assert workers.live_workers() == ["w-a", "w-b"]
    workers.remove_worker("w-b")
    assert workers.live_workers() == ["w-a"]
