"""GET /v1/jobs/{id}/events: JSON pages and a live SSE stream that ends when the job does."""

from __future__ import annotations

import json
import threading
import time

import httpx
import redis
from api_fixtures import ApiServer, problem
from support import new_job, parse_sse

from thaw.store import EventLog, JobStore


def test_json_pages_after_a_cursor(http: httpx.Client, store: redis.Redis) -> None:
    job_id = new_job(http)
    log = EventLog(store)
    for i in range(4):
        log.append(job_id, "progress", {"step": i})
    first = http.get(f"/v1/jobs/{job_id}/events", params={"limit": 3}).json()
    assert [e["type"] for e in first["data"]] == ["status", "progress", "progress"]
    assert first["data"][0]["data"]["status"] == "queued"
    assert first["has_more"] is True
    rest = http.get(
        f"/v1/jobs/{job_id}/events", params={"after": first["data"][-1]["id"], "limit": 3}
    ).json()
    assert [e["data"]["step"] for e in rest["data"]] == [2, 3]
    assert rest["has_more"] is False
    err = problem(http.get(f"/v1/jobs/{job_id}/events", params={"after": "x"}), 422)
    assert err["detail"] == "invalid cursor 'x': expected an event id such as 1700000000000-0"


def test_sse_replays_streams_live_and_ends_when_terminal(
    api: ApiServer, store: redis.Redis
) -> None:

    with api.client() as client:
        job_id = new_job(client)
    jobs, log = JobStore(store), EventLog(store)
    jobs.claim(job_id, "w1", 60)
    log.append(job_id, "log", {"message": "before"})

    def finish_later() -> None:
        time.sleep(1.2)
        log.append(job_id, "metrics", {"epoch": 1, "val_loss": 0.5})
        jobs.finish(job_id, "w1", "succeeded")

    worker = threading.Thread(target=finish_later)
    worker.start()
    started = time.monotonic()
    with (
        api.client() as client,
        client.stream(
            "GET", f"/v1/jobs/{job_id}/events", headers={"Accept": "text/event-stream"}
        ) as response,
    ):
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        text = "".join(response.iter_text())
    worker.join()
    assert time.monotonic() - started < 10
    frames = parse_sse(text)
    events = [f for f in frames if "event" in f]
    assert [f["event"] for f in events] == ["status", "status", "log", "metrics", "status"]
    statuses = [json.loads(f["data"])["data"]["status"] for f in events if f["event"] == "status"]
    assert statuses == ["queued", "running", "succeeded"]
    assert all(json.loads(f["data"])["id"] == f["id"] for f in events)
    assert any(f.get("comment") == ": keepalive" for f in frames)


def test_sse_resumes_from_last_event_id(http: httpx.Client, store: redis.Redis) -> None:
    job_id = new_job(http)
    log = EventLog(store)
    first = log.append(job_id, "log", {"n": 1})
    log.append(job_id, "log", {"n": 2})
    http.post(f"/v1/jobs/{job_id}/cancel").raise_for_status()
    response = http.get(
        f"/v1/jobs/{job_id}/events",
        headers={"Accept": "text/event-stream", "Last-Event-ID": first},
    )
    events = [f for f in parse_sse(response.text) if "event" in f]
    assert [json.loads(f["data"])["data"] for f in events] == [
        {"n": 2},
        {"status": "cancelled", "attempts": 0},
    ]
    by_query = http.get(
        f"/v1/jobs/{job_id}/events",
        params={"after": first},
        headers={"Accept": "text/event-stream"},
    )
    assert [f["event"] for f in parse_sse(by_query.text) if "event" in f] == ["log", "status"]
