"""A whole service sends signed webhooks: one delivery for a succeeded job, one for a
cancelled one, to a loopback receiver (allowed by the setting), recorded per delivery.
The succeeded job's metrics export and TensorBoard archive match its event stream."""

from __future__ import annotations

import csv
import io
import tarfile
import time
from collections.abc import Iterator

import pytest
from api_fixtures import ApiServer, ApiServers
from webhook_receiver import receiver
from worker_fixtures import Stack, digits_spec, write_base_weights, write_digits

pytestmark = pytest.mark.slow

ALLOW = {"THAW_WEBHOOKS_ALLOW_PRIVATE": "true", "THAW_WEBHOOK_POLL_SECONDS": "0.1"}


@pytest.fixture
def service(stack: Stack, api_servers: ApiServers) -> Iterator[ApiServer]:
    write_base_weights(stack.root / "models")
    write_digits(stack.root / "datasets", per_class=20)
    stack.extra_env.update(ALLOW)
    stack.start_worker("w")
    env = {**ALLOW, "THAW_PROGRESS_INTERVAL_SECONDS": "0"}
    with api_servers.serving(env, redis_url=stack.redis_url, root=stack.root) as api:
        yield api


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
    service: ApiServer, tmp_path
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

        _check_exports(http, done["id"], tmp_path)


def _check_exports(http, job_id: str, tmp_path) -> None:
    """CSV rows equal the stored events; TensorBoard's files hold the same scalars."""
    events: list[dict] = []
    while True:
        params = {"limit": 100, **({"after": events[-1]["id"]} if events else {})}
        page = http.get(f"/v1/jobs/{job_id}/events", params=params).json()["data"]
        events.extend(page)
        if len(page) < 100:
            break
    steps = [e["data"] for e in events if e["type"] == "progress" and "loss" in e["data"]]
    epochs = [e["data"] for e in events if e["type"] == "metrics"]
    assert steps and epochs

    answer = http.get(f"/v1/jobs/{job_id}/metrics", params={"format": "csv"})
    assert answer.status_code == 200
    assert answer.headers["content-type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(answer.text)))
    step_rows = [r for r in rows if r["kind"] == "step"]
    assert [(int(r["step"]), float(r["loss"])) for r in step_rows] == [
        (s["step"], s["loss"]) for s in steps
    ]
    assert [float(r["lr_group_0"]) for r in step_rows] == [s["lr"][0] for s in steps]
    epoch_rows = [r for r in rows if r["kind"] == "epoch"]
    assert [
        (int(r["epoch"]), float(r["val_loss"]), float(r["val_accuracy"])) for r in epoch_rows
    ] == [(m["epoch"], m["val_loss"], m["val_accuracy"]) for m in epochs]
    trainable = http.get(f"/v1/jobs/{job_id}").json()["trainable"]["trainable_params"]
    assert int(epoch_rows[-1]["trainable_params"]) == trainable
    exported = http.get(f"/v1/jobs/{job_id}/metrics").json()
    assert [(s["step"], s["loss"]) for s in exported["steps"]] == [
        (s["step"], s["loss"]) for s in steps
    ]

    archive = http.get(f"/v1/jobs/{job_id}/tensorboard")
    assert archive.status_code == 200
    assert archive.headers["content-type"] == "application/gzip"
    with tarfile.open(fileobj=io.BytesIO(archive.content), mode="r:gz") as tar:
        names = tar.getnames()
        assert names and all(n.startswith(f"{job_id}/events.out.tfevents.") for n in names)
        tar.extractall(tmp_path / "tb", filter="data")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    board = EventAccumulator(str(tmp_path / "tb" / job_id))
    board.Reload()
    assert [(e.step, e.value) for e in board.Scalars("train/loss")] == [
        (s["step"], pytest.approx(s["loss"], rel=1e-6)) for s in steps
    ]
    assert [(e.step, e.value) for e in board.Scalars("val/accuracy")] == [
        (m["epoch"], pytest.approx(m["val_accuracy"], rel=1e-6)) for m in epochs
    ]
