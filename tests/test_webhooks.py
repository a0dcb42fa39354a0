"""Webhook deliveries from a real Redis to a loopback receiver: signatures, retries with
backoff, a killed dispatcher, and the private-address guard."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import redis
from webhook_receiver import receiver

from thaw.settings import Settings
from thaw.store import JobStore
from thaw.store.checkpoint_tasks import CheckpointTaskStore
from thaw.webhooks import WebhookStore
from thaw.webhooks.address import resolve_target
from thaw.webhooks.dispatcher import Dispatcher
from thaw.webhooks.errors import WebhookUrlRefused

ROOT = Path(__file__).resolve().parent.parent
SPEC = {"base_model": {"source": "torchvision", "name": "resnet18"}}


def _settings(redis_url: str, **overrides: object) -> Settings:
    values: dict[str, object] = {
        "redis_url": redis_url,
        "webhooks_allow_private": True,
        "webhook_backoff_seconds": 0.05,
        "webhook_backoff_max_seconds": 0.2,
        "webhook_timeout_seconds": 5.0,
        **overrides,
    }
    return Settings(**values)


def _tick_until(dispatcher: Dispatcher, done, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not done():
        assert time.monotonic() < deadline, "the dispatcher did not get there"
        dispatcher.tick()
        time.sleep(0.02)


def _status(hooks: WebhookStore, webhook_id: str) -> str | None:
    records, _ = hooks.deliveries(webhook_id, 1)
    return records[0].status if records else None


def test_receiver_answering_500_twice_gets_the_event_on_the_third_try_signed_alike(
    redis_url: str, redis_client: redis.Redis
):
    hooks = WebhookStore(redis_client)
    with receiver([500, 500]) as rx:
        hook = hooks.create("default", rx.url, ["job.queued"], "ci", 20)
        job, _ = JobStore(redis_client).create("default", SPEC, name="retry-me")
        dispatcher = Dispatcher(redis_client, _settings(redis_url))
        _tick_until(dispatcher, lambda: len(rx.received) >= 3)

        got = rx.wait_for(3)
        assert len({r.id for r in got}) == 1
        for request in got:
            body = request.verified(hook.secret)
            assert body["type"] == "job.queued"
            assert body["data"]["id"] == job.id
            assert body["data"]["name"] == "retry-me"
        [delivery], has_more = hooks.deliveries(hook.id, 10)
        assert not has_more
        assert delivery.id == got[0].id
        assert delivery.status == "succeeded"
        assert delivery.attempts == 3
        assert [t["status_code"] for t in delivery.tries] == [500, 500, 200]
        dispatcher.tick()
        assert len(rx.received) == 3


def test_a_delivery_stops_after_the_last_allowed_try(redis_url: str, redis_client):
    hooks = WebhookStore(redis_client)
    with receiver([503] * 10) as rx:
        hook = hooks.create("default", rx.url, ["job.queued"], "", 20)
        JobStore(redis_client).create("default", SPEC)
        dispatcher = Dispatcher(redis_client, _settings(redis_url, webhook_max_attempts=2))
        _tick_until(dispatcher, lambda: _status(hooks, hook.id) == "failed")
        [delivery], _ = hooks.deliveries(hook.id, 10)
        assert delivery.status == "failed"
        assert delivery.attempts == 2
        assert delivery.error == "the receiver answered 503"
        assert len(rx.received) == 2


def test_a_redirect_is_not_followed_and_counts_as_a_failed_try(redis_url: str, redis_client):
    hooks = WebhookStore(redis_client)
    with receiver([307]) as rx:
        hook = hooks.create("default", rx.url, ["job.queued"], "", 20)
        JobStore(redis_client).create("default", SPEC)
        dispatcher = Dispatcher(redis_client, _settings(redis_url, webhook_max_attempts=1))
        _tick_until(dispatcher, lambda: _status(hooks, hook.id) == "failed")
        [delivery], _ = hooks.deliveries(hook.id, 10)
        assert (delivery.response_status, delivery.error) == (307, "the receiver answered 307")
        assert len(rx.received) == 1


def test_only_subscribed_events_of_the_owning_tenant_are_sent(redis_url: str, redis_client):
    hooks = WebhookStore(redis_client)
    jobs = JobStore(redis_client)
    with receiver() as rx:
        hook = hooks.create("alice", rx.url, ["job.cancelled"], "", 20)
        queued, _ = jobs.create("alice", SPEC)
        jobs.create("bob", SPEC)
        jobs.request_cancel(queued.id, "alice")
        dispatcher = Dispatcher(redis_client, _settings(redis_url))
        _tick_until(dispatcher, lambda: len(rx.received) >= 1)
        dispatcher.tick()
        [request] = rx.received
        body = request.verified(hook.secret)
        assert (body["type"], body["data"]["id"], body["data"]["status"]) == (
            "job.cancelled",
            queued.id,
            "cancelled",
        )


def test_a_finished_evaluation_and_export_are_sent_and_a_prediction_is_not(
    redis_url: str, redis_client
):
    hooks = WebhookStore(redis_client)
    tasks = CheckpointTaskStore(redis_client)
    job, _ = JobStore(redis_client).create("default", SPEC)
    with receiver() as rx:
        hook = hooks.create("default", rx.url, ["evaluation.succeeded", "export.failed"], "", 20)
        evaluation = tasks.create("evaluation", "default", job.id, "best", {})
        tasks.start(evaluation.id)
        tasks.finish(evaluation.id, result={"accuracy": 0.75, "confusion_matrix": [[3, 1]]})
        export = tasks.create("export", "default", job.id, "last", {})
        tasks.finish(export.id, error={"code": "export_mismatch", "message": "too far"})
        prediction = tasks.create("prediction", "default", job.id, "best", {})
        tasks.finish(prediction.id, result={"predictions": []})
        dispatcher = Dispatcher(redis_client, _settings(redis_url))
        _tick_until(dispatcher, lambda: len(rx.received) >= 2)
        dispatcher.tick()
        bodies = [r.verified(hook.secret) for r in rx.received]
    assert [(b["type"], b["data"]["id"]) for b in bodies] == [
        ("evaluation.succeeded", evaluation.id),
        ("export.failed", export.id),
    ]
    assert bodies[0]["data"]["result"] == {"accuracy": 0.75}
    assert bodies[0]["data"]["job_id"] == job.id
    assert bodies[1]["data"]["error"]["code"] == "export_mismatch"
    records, _ = hooks.deliveries(hook.id, 10)
    assert {d.id for d in records} == {r.id for r in rx.received}


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:9/x",
        "http://localhost/x",
        "http://[::1]/x",
        "http://10.1.2.3/x",
        "http://169.254.169.254/latest/meta-data",
        "http://[::ffff:127.0.0.1]/x",
        "http://0.0.0.0/x",
    ],
)
def test_non_public_addresses_are_refused_unless_allowed(url: str):
    with pytest.raises(WebhookUrlRefused, match="not a public address"):
        resolve_target(url, allow_private=False)
    assert resolve_target(url, allow_private=True).url.host


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("ftp://example.com/x", "http:// or https://"),
        ("https://user:pw@example.com/", "credentials"),
        ("http:///nohost", "no host"),
    ],
)
def test_malformed_urls_are_refused(url: str, reason: str):
    with pytest.raises(WebhookUrlRefused, match=reason):
        resolve_target(url, allow_private=True)


def test_the_dispatcher_checks_the_address_again_when_it_sends(redis_url: str, redis_client):
    hooks = WebhookStore(redis_client)
    with receiver() as rx:
        hook = hooks.create("default", rx.url, ["job.queued"], "", 20)
        JobStore(redis_client).create("default", SPEC)
        strict = _settings(redis_url, webhooks_allow_private=False, webhook_max_attempts=1)
        dispatcher = Dispatcher(redis_client, strict)
        _tick_until(dispatcher, lambda: _status(hooks, hook.id) == "failed")
        [delivery], _ = hooks.deliveries(hook.id, 10)
        assert "not a public address" in delivery.error
        assert rx.received == []


def _dispatcher_process(redis_url: str, log: Path) -> subprocess.Popen[bytes]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("THAW_")}
    env.update(
        {
            "PYTHONPATH": str(ROOT),
            "THAW_REDIS_URL": redis_url,
            "THAW_WEBHOOKS_ALLOW_PRIVATE": "true",
            "THAW_WEBHOOK_LEASE_SECONDS": "1",
            "THAW_WEBHOOK_POLL_SECONDS": "0.05",
            "THAW_WEBHOOK_TIMEOUT_SECONDS": "60",
        }
    )
    with open(log, "ab") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "thaw.webhooks.dispatcher"],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )


def test_a_dispatcher_killed_mid_delivery_loses_nothing_and_repeats_only_the_same_id(
    redis_url: str, redis_client, tmp_path: Path
):
    hooks = WebhookStore(redis_client)
    jobs = JobStore(redis_client)
    log = tmp_path / "dispatchers.log"
    with receiver() as rx:
        rx.hold = threading.Event()
        hook = hooks.create("default", rx.url, ["job.queued"], "", 20)
        first_job, _ = jobs.create("default", SPEC)
        first = _dispatcher_process(redis_url, log)
        try:
            [held] = rx.wait_for(1)
            second_job, _ = jobs.create("default", SPEC)  # while the only dispatcher is stuck
            first.send_signal(signal.SIGKILL)
            first.wait(timeout=10)
        finally:
            if first.poll() is None:
                first.kill()
        rx.hold.set()
        second = _dispatcher_process(redis_url, log)
        try:
            rx.wait_for(3)
            deadline = time.monotonic() + 30
            while True:
                records, _ = hooks.deliveries(hook.id, 10)
                if all(d.status == "succeeded" for d in records) and len(records) == 2:
                    break
                assert time.monotonic() < deadline, (records, log.read_text())
                time.sleep(0.05)
        finally:
            second.terminate()
            second.wait(timeout=10)
    ids = [r.id for r in rx.received]
    by_job = {json.loads(r.body)["data"]["id"]: r.id for r in rx.received}
    assert set(by_job) == {first_job.id, second_job.id}
    assert ids.count(held.id) == 2 and held.id == by_job[first_job.id]
    assert ids.count(by_job[second_job.id]) == 1
    attempts = {d.job_id: d.attempts for d in records}
    assert attempts == {first_job.id: 2, second_job.id: 1}
