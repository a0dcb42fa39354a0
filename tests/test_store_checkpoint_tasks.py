"""The store of evaluations, predictions and exports: tenancy, listing, and the status moves
a worker and a waiting API make on a real Redis."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import redis

from thaw.store.checkpoint_tasks import TASK_ID, CheckpointTaskStore
from thaw.store.keys import Keys

JOB = "job_0123456789abcdef01234567"


def test_records_belong_to_their_tenant_and_list_newest_first(redis_client: redis.Redis) -> None:
    store = CheckpointTaskStore(redis_client)
    first = store.create("evaluation", "alice", JOB, "epoch-2", {"checkpoint": "best"})
    second = store.create("evaluation", "alice", JOB, "epoch-3", {"checkpoint": "last"})
    export = store.create("export", "alice", JOB, "epoch-3", {"format": "onnx"})
    assert TASK_ID["evaluation"].match(first.id) and TASK_ID["export"].match(export.id)
    assert store.get(first.id, "bob") is None
    assert store.get(first.id, "alice") == first
    assert [t.id for t in store.list(JOB, "evaluation")] == [second.id, first.id]
    assert [t.id for t in store.list(JOB, "export")] == [export.id]
    assert first.status == "queued" and first.request == {"checkpoint": "best"}

    store.delete_for_job(JOB)
    assert store.list(JOB, "evaluation") == [] and store.get(export.id) is None


def test_a_record_runs_once_and_ends_once(redis_client: redis.Redis) -> None:
    store = CheckpointTaskStore(redis_client)
    task = store.create("evaluation", "alice", JOB, "epoch-1", {})
    assert store.start(task.id) is True
    assert store.start(task.id) is False
    assert store.expire(task.id) is False
    assert store.finish(task.id, result={"accuracy": 0.5}) is True
    assert store.finish(task.id, error={"code": "late"}) is False
    done = store.get(task.id)
    assert done is not None
    assert (done.status, done.result, done.error) == ("succeeded", {"accuracy": 0.5}, None)
    assert done.started_at and done.finished_at


def test_an_expired_prediction_is_never_started(redis_client: redis.Redis) -> None:
    store = CheckpointTaskStore(redis_client)
    task = store.create("prediction", "alice", JOB, "epoch-1", {"texts": ["x"]})
    assert store.wait(task.id, 0.05) is None
    assert store.expire(task.id) is True
    assert store.start(task.id) is False
    record = store.get(task.id)
    assert record is not None and record.status == "expired"


def test_wait_returns_when_a_worker_finishes(redis_client: redis.Redis) -> None:
    store = CheckpointTaskStore(redis_client)
    task = store.create("prediction", "alice", JOB, "epoch-1", {"texts": ["x"]})
    started = threading.Event()

    def worker() -> None:
        started.wait()
        store.start(task.id)
        store.finish(task.id, error={"code": "undecodable_image", "status": 422})

    thread = threading.Thread(target=worker)
    thread.start()
    started.set()
    done = store.wait(task.id, 30)
    thread.join()
    assert done is not None
    assert done.status == "failed" and done.error == {"code": "undecodable_image", "status": 422}


def test_a_record_whose_worker_died_is_failed_once(redis_client: redis.Redis) -> None:
    store = CheckpointTaskStore(redis_client)
    orphan = store.create("evaluation", "alice", JOB, "epoch-1", {})
    alive = store.create("export", "alice", JOB, "epoch-1", {})
    done = store.create("evaluation", "alice", JOB, "epoch-1", {})
    assert store.start(orphan.id, "w-dead") and store.start(alive.id, "w-live")
    assert store.start(done.id, "w-dead") and store.finish(done.id, result={})

    assert store.fail_orphans({"w-live"}) == [orphan.id]
    assert store.fail_orphans({"w-live"}) == []
    failed = store.get(orphan.id)
    assert failed is not None and failed.status == "failed"
    assert failed.error is not None and failed.error["code"] == "worker_lost"
    kept = store.get(alive.id)
    assert kept is not None and kept.status == "running"
    assert store.get(done.id).status == "succeeded"  # type: ignore[union-attr]


def _commands_during(client: redis.Redis, action: Callable[[], object]) -> list[dict[str, Any]]:
    """Every command Redis ran on this client's database while ``action`` ran."""
    db = client.connection_pool.connection_kwargs.get("db", 0)
    seen = []
    with client.monitor() as monitor:
        action()
        client.echo("end-of-action")
        while (command := monitor.next_command())["command"] != "ECHO end-of-action":
            if command["db"] == db:
                seen.append(command)
    return seen


def test_a_finished_evaluation_reaches_the_webhook_feed_inside_its_transition(
    redis_client: redis.Redis,
) -> None:
    store = CheckpointTaskStore(redis_client)
    keys = Keys()
    redis_client.sadd(keys.webhooks_by_tenant("alice"), "wh_1")
    task = store.create("evaluation", "alice", JOB, "epoch-1", {})
    assert store.start(task.id, "w1")

    commands = _commands_during(redis_client, lambda: store.finish(task.id, result={"a": 1}))

    writes = [c for c in commands if c["command"].split()[0] in {"HSET", "XADD", "RPUSH"}]
    assert [c["command"].split()[:2] for c in writes] == [
        ["HSET", keys.checkpoint_task(task.id)],
        ["RPUSH", keys.checkpoint_task_done(task.id)],
        ["XADD", keys.webhook_feed],
    ]
    assert {c["client_type"] for c in writes} == {"lua"}, "every write is inside one script"
    [(_, entry)] = redis_client.xrange(keys.webhook_feed)
    assert entry == {"task": task.id, "kind": "evaluation", "job": JOB, "tenant": "alice",
                     "data": '{"status":"succeeded"}'}  # fmt: skip


def test_only_finished_evaluations_and_exports_of_a_webhook_tenant_reach_the_feed(
    redis_client: redis.Redis,
) -> None:
    store = CheckpointTaskStore(redis_client)
    keys = Keys()
    redis_client.sadd(keys.webhooks_by_tenant("alice"), "wh_1")
    prediction = store.create("prediction", "alice", JOB, "epoch-1", {})
    expired = store.create("export", "alice", JOB, "epoch-1", {})
    unheard = store.create("export", "bob", JOB, "epoch-1", {})
    failed = store.create("export", "alice", JOB, "epoch-1", {})
    assert store.finish(prediction.id, result={}) and store.expire(expired.id)
    assert store.finish(unheard.id, result={})
    assert store.finish(failed.id, error={"code": "boom"})
    assert store.finish(failed.id, result={}) is False
    entries = [fields for _, fields in redis_client.xrange(keys.webhook_feed)]
    assert [(e["task"], e["data"]) for e in entries] == [(failed.id, '{"status":"failed"}')]
