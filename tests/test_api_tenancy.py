"""Two API processes on one Redis agree on the failed-key throttle and the stream caps;
a valid key is never refused for others' failures; X-Forwarded-For counts only behind
THAW_TRUSTED_PROXIES; /metrics, /v1/workers and /readyz show a tenant only its own jobs'
data, an admin key everything, no key only ready or not. All on 127.0.0.1."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import ExitStack

import httpx
import pytest
import redis
from api_fixtures import KEYS, ApiServer, ApiServers, job_body, problem
from support import metric_samples

from thaw.store import WorkerRegistry

FAILURES = 3
ADMIN_KEY = "admin-key-5555555555"
SSE = {"Accept": "text/event-stream"}
ENV = {
    "THAW_API_KEYS": ",".join(f"{t}:{k}" for t, k in KEYS.items()),
    "THAW_ADMIN_KEYS": ADMIN_KEY,
    "THAW_AUTH_FAILURES_MAX": str(FAILURES),
    "THAW_AUTH_FAILURE_WINDOW_SECONDS": "60",
    "THAW_SSE_MAX_STREAMS_PER_TENANT": "2",
}


@pytest.fixture(scope="module")
def pair(api_servers: ApiServers) -> Iterator[tuple[ApiServer, ApiServer]]:
    """Two API processes behind a proxy on 127.0.0.1, sharing one Redis database."""
    env = {**ENV, "THAW_TRUSTED_PROXIES": "127.0.0.1"}
    with (
        api_servers.serving(env) as a,
        api_servers.serving(env, redis_url=a.redis_url) as b,
    ):
        yield a, b


@pytest.fixture
def two(pair: tuple[ApiServer, ApiServer]) -> tuple[ApiServer, ApiServer]:
    pair[0].reset()
    return pair


def _from(server: ApiServer, key: str, address: str | None = None) -> httpx.Client:
    return server.client(key, headers={"X-Forwarded-For": address} if address else None)


def test_invalid_keys_limit_their_address_on_every_process_never_a_valid_key(two) -> None:
    a, b = two
    for i in range(FAILURES):
        with _from(a if i % 2 else b, f"{i:08d}-wrong", "10.0.0.1") as wrong:
            assert problem(wrong.get("/v1/jobs"), 401)["detail"] == "invalid API key"
    with _from(b, "99999999-wrong", "10.0.0.1") as wrong:
        refused = wrong.get("/v1/jobs")
    err = problem(refused, 429)
    assert err["code"] == "too_many_auth_failures"
    wait = int(refused.headers["Retry-After"])
    assert 1 <= wait <= 60
    assert err["detail"] == (
        "too many invalid API keys from this address or with this key's first characters "
        f"(THAW_AUTH_FAILURES_MAX={FAILURES} in THAW_AUTH_FAILURE_WINDOW_SECONDS=60); "
        f"retry in {wait} s with a valid key"
    )
    for server in (a, b):  # the same address, a valid key: never refused
        with _from(server, KEYS["alice"], "10.0.0.1") as alice:
            assert alice.get("/v1/jobs").status_code == 200
    with _from(a, "88888888-wrong", "10.0.0.2") as elsewhere:  # another address: its own count
        problem(elsewhere.get("/v1/jobs"), 401)


def test_invalid_keys_sharing_a_prefix_are_limited_from_any_address(two) -> None:
    a, _ = two
    near = KEYS["bob"][:8]
    for i in range(FAILURES):
        with _from(a, f"{near}guess{i}", f"10.0.1.{i}") as guess:
            problem(guess.get("/v1/jobs"), 401)
    with _from(a, f"{near}guess-last", "10.0.1.200") as guess:
        assert problem(guess.get("/v1/jobs"), 429)["code"] == "too_many_auth_failures"
    with _from(a, KEYS["bob"], "10.0.1.200") as bob:
        assert bob.get("/v1/jobs").status_code == 200


def test_x_forwarded_for_is_ignored_without_trusted_proxies(api_servers: ApiServers) -> None:
    with api_servers.serving(ENV) as direct:
        direct.reset()
        for i in range(FAILURES):
            with _from(direct, f"{i:08d}-wrong", f"10.0.2.{i}") as wrong:
                problem(wrong.get("/v1/jobs"), 401)
        with _from(direct, "77777777-wrong", "10.0.2.99") as wrong:  # all from 127.0.0.1
            problem(wrong.get("/v1/jobs"), 429)
        with _from(direct, KEYS["alice"], "10.0.2.99") as alice:
            assert alice.get("/v1/jobs").status_code == 200


def test_the_stream_cap_counts_streams_on_every_process(two) -> None:
    a, b = two
    with a.client(KEYS["alice"]) as alice:
        job_id = alice.post("/v1/jobs", json=job_body()).json()["id"]
    url = f"/v1/jobs/{job_id}/events"
    with ExitStack() as held:
        for server in (a, b):
            client = held.enter_context(server.client(KEYS["alice"], headers=SSE))
            assert held.enter_context(client.stream("GET", url)).status_code == 200
        for server in (a, b):
            with server.client(KEYS["alice"]) as alice:
                err = problem(alice.get(url, headers=SSE), 429)
                assert err["code"] == "too_many_streams"
        with b.client(KEYS["bob"]) as bob:  # another tenant's count is its own
            bob_job = bob.post("/v1/jobs", json=job_body()).json()["id"]
            bob.post(f"/v1/jobs/{bob_job}/cancel").raise_for_status()
            assert bob.get(f"/v1/jobs/{bob_job}/events", headers=SSE).status_code == 200
    with b.client(KEYS["alice"]) as alice:
        alice.post(f"/v1/jobs/{job_id}/cancel").raise_for_status()
        deadline = time.monotonic() + 30
        while (reopened := alice.get(url, headers=SSE)).status_code == 429:
            assert time.monotonic() < deadline, "closed streams did not give their slots back"
            time.sleep(0.2)
        assert reopened.status_code == 200


def _heartbeat(store: redis.Redis, worker: str, job: dict[str, str] | None) -> None:
    info = {"name": worker, "host": f"host-{worker}", "pid": 4242, "job": job}
    WorkerRegistry(store).record_worker_heartbeat(
        worker, ttl=60, info={**info, "samples_per_s": 12.5, "jobs_done": 1}
    )


def test_metrics_workers_and_readyz_show_a_tenant_only_its_own(two) -> None:
    a, _ = two
    anonymous = a.client()
    err = problem(anonymous.get("/readyz"), 503)
    assert err["code"] == "not_ready"
    assert set(err) == {"type", "title", "status", "detail", "code"}
    alice, bob, admin = (a.client(k) for k in (KEYS["alice"], KEYS["bob"], ADMIN_KEY))
    jobs = {name: c.post("/v1/jobs", json=job_body()).json()["id"] for name, c in
            (("alice", alice), ("bob", bob))}  # fmt: skip
    store = redis.Redis.from_url(a.redis_url, decode_responses=True)
    try:
        for tenant in ("alice", "bob"):
            _heartbeat(store, f"w-{tenant}", {"id": jobs[tenant], "tenant": tenant})
        _heartbeat(store, "w-idle", None)
    finally:
        store.close()

    assert anonymous.get("/readyz").json() == {"status": "ok"}
    assert alice.get("/readyz").json() == {"status": "ok", "redis": True, "workers": 3}
    assert admin.get("/readyz").json()["worker_ids"] == ["w-alice", "w-bob", "w-idle"]

    rows = alice.get("/v1/workers").json()["data"]
    assert [(r["id"], r["host"], r["job"]) for r in rows] == [
        ("w-alice", "host-w-alice", jobs["alice"])
    ]
    everyone = admin.get("/v1/workers").json()["data"]
    assert [(r["id"], r["job"]) for r in everyone] == [
        ("w-alice", jobs["alice"]),
        ("w-bob", jobs["bob"]),
        ("w-idle", None),
    ]

    own = metric_samples(alice)
    assert own[("thaw_jobs", frozenset({("status", "queued")}))] == 1
    workers = {dict(labels)["worker"] for name, labels in own if name.startswith("thaw_worker_")}
    assert workers == {"w-alice"}
    names = {name for name, _ in own}
    assert not names & {"thaw_queue_depth", "thaw_workers_live", "thaw_http_requests_total"}
    cluster = metric_samples(admin)
    assert cluster[("thaw_jobs", frozenset({("status", "queued")}))] == 2
    assert cluster[("thaw_workers_live", frozenset())] == 3
    assert "thaw_http_requests_total" in {name for name, _ in cluster}

    err = problem(admin.get("/v1/jobs"), 403)
    assert err["code"] == "admin_key_not_a_tenant"
    for client in (anonymous, alice, bob, admin):
        client.close()
