"""Issue 8.3 and 9.5: event streams hold no thread, are capped per tenant, and a stream that
loses Redis ends cleanly so the client's reconnect with Last-Event-ID continues exactly."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path

import httpx
import pytest
import redis
from api_fixtures import KEYS, ApiServer, ApiServers, job_body, problem
from redis_server import RedisServer
from support import parse_sse

from thaw.store import EventLog, JobStore

STREAMS = 500
PROBES = 200
SSE = {"Accept": "text/event-stream"}


@pytest.fixture(scope="module")
def roomy(api_servers: ApiServers) -> Iterator[ApiServer]:
    """An API server that allows 600 streams per tenant, with a long keepalive."""
    env = {"THAW_SSE_MAX_STREAMS_PER_TENANT": "600", "THAW_SSE_KEEPALIVE_SECONDS": "30"}
    with api_servers.serving(env) as server:
        yield server


def _p99(samples: list[float]) -> float:
    ordered = sorted(samples)
    return ordered[int(len(ordered) * 0.99) - 1]


def test_500_open_streams_leave_health_and_job_reads_fast(roomy: ApiServer) -> None:
    roomy.reset()
    with roomy.client() as client:
        job_id = client.post("/v1/jobs", json=job_body()).json()["id"]
    opened = threading.Event()
    done = threading.Event()
    failures: list[str] = []

    async def hold_streams() -> None:
        limits = httpx.Limits(max_connections=STREAMS + 10, max_keepalive_connections=0)
        async with httpx.AsyncClient(base_url=roomy.url, limits=limits, timeout=60) as client:
            ready = 0

            async def one() -> None:
                nonlocal ready
                async with client.stream("GET", f"/v1/jobs/{job_id}/events", headers=SSE) as r:
                    if r.status_code != 200:
                        failures.append(f"{r.status_code}: {await r.aread()!r}")
                        ready += 1
                        return
                    async for _ in r.aiter_text():
                        break  # the retry frame and the first status event
                    ready += 1
                    if ready == STREAMS:
                        opened.set()
                    while not done.is_set():
                        await asyncio.sleep(0.05)

            await asyncio.gather(*(one() for _ in range(STREAMS)))

    holder = threading.Thread(target=lambda: asyncio.run(hold_streams()))
    holder.start()
    try:
        assert opened.wait(120), f"streams did not open; failures: {failures[:3]}"
        health: list[float] = []
        reads: list[float] = []
        with roomy.client() as client:
            for _ in range(PROBES):
                started = time.perf_counter()
                assert client.get("/healthz").status_code == 200
                health.append(time.perf_counter() - started)
                started = time.perf_counter()
                assert client.get(f"/v1/jobs/{job_id}").status_code == 200
                reads.append(time.perf_counter() - started)
    finally:
        done.set()
        holder.join(60)
    assert failures == []
    assert _p99(health) < 0.1, f"/healthz p99 {_p99(health) * 1000:.1f} ms"
    assert _p99(reads) < 0.1, f"GET job p99 {_p99(reads) * 1000:.1f} ms"


def test_streams_beyond_the_tenant_cap_get_429(keyed: ApiServer) -> None:
    cap = 50  # THAW_SSE_MAX_STREAMS_PER_TENANT's default
    with keyed.client(KEYS["alice"]) as alice, keyed.client(KEYS["bob"]) as bob:
        job_id = alice.post("/v1/jobs", json=job_body()).json()["id"]
        bob_job = bob.post("/v1/jobs", json=job_body()).json()["id"]
        with httpx.Client(
            base_url=keyed.url,
            headers={"Authorization": f"Bearer {KEYS['alice']}", **SSE},
            limits=httpx.Limits(max_connections=cap + 5),
            timeout=30,
        ) as streams:
            held = ExitStack()
            try:
                opened = [
                    held.enter_context(streams.stream("GET", f"/v1/jobs/{job_id}/events"))
                    for _ in range(cap)
                ]
                assert {r.status_code for r in opened} == {200}
                over = alice.get(f"/v1/jobs/{job_id}/events", headers=SSE)
                err = problem(over, 429)
                assert err["code"] == "too_many_streams"
                assert over.headers["Retry-After"] == "5"
                assert "THAW_SSE_MAX_STREAMS_PER_TENANT" in err["detail"]
                assert alice.get(f"/v1/jobs/{job_id}/events").status_code == 200  # JSON page
                bob.post(f"/v1/jobs/{bob_job}/cancel").raise_for_status()
                assert bob.get(f"/v1/jobs/{bob_job}/events", headers=SSE).status_code == 200
            finally:
                held.close()
        alice.post(f"/v1/jobs/{job_id}/cancel").raise_for_status()
        deadline = time.monotonic() + 30
        while True:  # closed streams give their slots back
            response = alice.get(f"/v1/jobs/{job_id}/events", headers=SSE)
            if response.status_code == 200 or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        assert response.status_code == 200, response.text


def test_stream_that_loses_redis_ends_cleanly_and_resumes_without_gap(tmp_path: Path) -> None:
    data = tmp_path / "redis"
    first = RedisServer(data_dir=data).start()
    port = first.port
    server = ApiServer(first.url, tmp_path / "api").start()
    second: RedisServer | None = None
    try:
        store = redis.Redis.from_url(first.url, decode_responses=True)
        with server.client() as client:
            job_id = client.post("/v1/jobs", json=job_body()).json()["id"]
        log = EventLog(store)
        for n in range(3):
            log.append(job_id, "log", {"n": n})
        received: list[dict[str, str]] = []
        with (
            server.client() as client,
            client.stream("GET", f"/v1/jobs/{job_id}/events", headers=SSE) as response,
        ):
            text = ""
            for chunk in response.iter_text():
                text += chunk
                if text.count("event: log") == 3:
                    store.close()
                    first.stop()  # Redis goes away mid-response
            received = parse_sse(text)
        sent = [f for f in received if "event" in f]
        assert [f["event"] for f in sent] == ["status", "log", "log", "log"]
        assert any("reconnect with Last-Event-ID" in f.get("comment", "") for f in received)

        second = RedisServer(data_dir=data, port=port).start()
        store = redis.Redis.from_url(second.url, decode_responses=True)
        EventLog(store).append(job_id, "log", {"n": 3})
        JobStore(store).request_cancel(job_id)
        with server.client() as client:
            again = client.get(
                f"/v1/jobs/{job_id}/events", headers={**SSE, "Last-Event-ID": sent[-1]["id"]}
            )
        resumed = [f for f in parse_sse(again.text) if "event" in f]
        assert [json.loads(f["data"])["data"] for f in resumed] == [
            {"n": 3},
            {"status": "cancelled", "attempts": 0},
        ]
        ids = [f["id"] for f in sent + resumed]
        assert len(set(ids)) == len(ids)
        store.close()
        log_text = server.log()
        assert "Traceback" not in log_text
        assert "unhandled" not in log_text.lower()
    finally:
        server.stop()
        if second is not None:
            second.stop()
        first.stop()
