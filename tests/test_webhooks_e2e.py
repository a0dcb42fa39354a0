"""A whole service sends signed webhooks: one delivery for a succeeded job, one for a
cancelled one, to a loopback receiver (allowed by the setting), recorded per delivery."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
from api_fixtures import ApiServer
from webhook_receiver import receiver
from worker_fixtures import Stack, digits_spec, write_base_weights, write_digits

pytestmark = pytest.mark.slow

ALLOW = {"THAW_WEBHOOKS_ALLOW_PRIVATE": "true", "THAW_WEBHOOK_POLL_SECONDS": "0.1"}


@pytest.fixture
def service(stack: Stack) -> Iterator[ApiServer]:
    write_base_weights(stack.root / "models")
    write_digits(stack.root / "datasets", per_class=20)
    stack.extra_env.update(ALLOW)
    stack.start_worker("w")
    api = ApiServer(
        stack.redis_url, stack.root, env={**ALLOW, "THAW_PROGRESS_INTERVAL_SECONDS": "0"}
    )
    api.start()
    try:
        yield api
    finally:
        api.stop()


def _wait_job(http, job_id: str, status: str) -> dict:
    deadline = time.monotonic() + 180
    while True:
        job = http.get(f"/v1/jobs/{job_id}").json()
        if job["status"] in ("succeeded", "failed", "cancelled"):
            assert job["status"] == status, job
            return job
        assert time.monotonic() < deadline, job
        time.sleep(0.1)


def _settled_deliveries(http, webhook_id: str, count: int) -> list[dict]:
    deadline = time.monotonic() + 60
    while True:
        found = http.get(f"/v1/webhooks/{webhook_id}/deliveries").json()["data"]
        if len(found) >= count and all(d["status"] != "pending" for d in found):
            return found
        assert time.monotonic() < deadline, found
        time.sleep(0.1)


def test_a_succeeded_and_a_cancelled_job_each_reach_the_receiver_once_signed(
    service: ApiServer,
):
    with receiver() as rx, service.client() as http:
        created = http.post(
            "/v1/webhooks",
            json={"url": rx.url, "events": ["job.succeeded", "job.cancelled"]},
        )
        assert created.status_code == 201, created.text
        hook = created.json()

        done = http.post("/v1/jobs", json=digits_spec(epochs=1)).json()
        # One worker: the second job waits (or has just started) and is cancelled.
        stopped = http.post("/v1/jobs", json=digits_spec(epochs=3)).json()
        http.post(f"/v1/jobs/{stopped['id']}/cancel")
        _wait_job(http, stopped["id"], "cancelled")
        _wait_job(http, done["id"], "succeeded")

        records = _settled_deliveries(http, hook["id"], 2)
        got = rx.wait_for(2)
        assert len(got) == 2
        bodies = {r.id: r.verified(hook["secret"]) for r in got}
        kinds = sorted((b["type"], b["data"]["id"]) for b in bodies.values())
        assert kinds == sorted([("job.succeeded", done["id"]), ("job.cancelled", stopped["id"])])
        succeeded = next(b for b in bodies.values() if b["type"] == "job.succeeded")
        assert succeeded["data"]["metrics"]["val_accuracy"] >= 0
        assert {d["id"] for d in records} == set(bodies)
        assert [(d["status"], d["attempts"], d["response_status"]) for d in records] == [
            ("succeeded", 1, 200)
        ] * 2
