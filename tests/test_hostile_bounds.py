"""Per-tenant dataset quotas, unfinished multipart bodies, stalled uploads and key guessing,
each against a live API on 127.0.0.1."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator

import httpx
import pytest
import redis
from api_fixtures import KEYS, ApiServer, ApiServers, files_under, problem
from support import assert_nothing_stored

MAX_DATASETS = 2
MAX_BYTES = 4000
AUTH_FAILURES = 5
BOUNDARY = "thawboundary"


@pytest.fixture(scope="module")
def bounded_server(api_servers: ApiServers) -> Iterator[ApiServer]:
    """Two tenants with small dataset quotas."""
    env = {
        "THAW_API_KEYS": ",".join(f"{t}:{k}" for t, k in KEYS.items()),
        "THAW_MAX_DATASETS_PER_TENANT": str(MAX_DATASETS),
        "THAW_MAX_DATASET_BYTES_PER_TENANT": str(MAX_BYTES),
        "THAW_UPLOAD_READ_TIMEOUT_SECONDS": "1",
        "THAW_AUTH_FAILURES_MAX": str(AUTH_FAILURES),
        "THAW_AUTH_FAILURE_WINDOW_SECONDS": "2",
    }
    with api_servers.serving(env) as server:
        yield server


@pytest.fixture
def bounded(bounded_server: ApiServer) -> Iterator[ApiServer]:
    bounded_server.reset()
    yield bounded_server


@pytest.fixture
def rstore(bounded: ApiServer) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(bounded.redis_url, decode_responses=True)
    try:
        yield client
    finally:
        client.close()


def csv_of(size: int, fill: str = "x") -> bytes:
    """A valid text,label csv of exactly ``size`` bytes; ``fill`` makes files of one size
    differ (an identical upload answers the dataset already stored)."""
    head = "text,label\n" + "".join(f"row {i},{'pos' if i % 2 else 'neg'}\n" for i in range(4))
    filler = fill * (size - len(head) - len(",pos\n"))
    return (head + filler + ",pos\n").encode()


def upload(http: httpx.Client, content: bytes, name: str = "d.csv") -> httpx.Response:
    return http.post("/v1/datasets", files={"file": (name, content)})


def stored_ids(api: ApiServer, store: redis.Redis, tenant: str) -> list[str]:
    ids = sorted(store.zrange(f"thaw:datasets:by-tenant:{tenant}", 0, -1))
    on_disk = sorted(p for p in files_under(api.uploads_dir) if "/" not in p)
    assert [p for p in on_disk if p.startswith("ds_")] == sorted(
        store.zrange("thaw:datasets:by-tenant:alice", 0, -1)
        + store.zrange("thaw:datasets:by-tenant:bob", 0, -1)
    )
    return ids


def test_dataset_count_quota_is_a_429_and_stores_nothing(
    bounded: ApiServer, rstore: redis.Redis
) -> None:
    with bounded.client(KEYS["alice"]) as alice, bounded.client(KEYS["bob"]) as bob:
        first = upload(alice, csv_of(200, "a"))
        assert first.status_code == 201, first.text
        assert upload(alice, csv_of(200, "b")).status_code == 201
        refused = upload(alice, csv_of(200, "c"))
        err = problem(refused, 429)
        assert err["code"] == "dataset_quota_exceeded"
        assert refused.headers["Retry-After"] == "60"
        assert err["detail"] == (
            "this key has 2 datasets, the most allowed (THAW_MAX_DATASETS_PER_TENANT=2); "
            "delete some before uploading more"
        )
        assert len(stored_ids(bounded, rstore, "alice")) == 2
        assert upload(bob, csv_of(200, "d")).status_code == 201
        assert alice.delete(f"/v1/datasets/{first.json()['id']}").status_code == 204
        assert upload(alice, csv_of(200, "e")).status_code == 201
        assert len(stored_ids(bounded, rstore, "alice")) == 2


def test_dataset_bytes_quota_is_a_429_and_stores_nothing(
    bounded: ApiServer, rstore: redis.Redis
) -> None:
    with bounded.client(KEYS["bob"]) as bob:
        assert upload(bob, csv_of(3000)).status_code == 201
        refused = upload(bob, csv_of(1500))
        err = problem(refused, 429)
        assert refused.headers["Retry-After"] == "60"
        assert err["detail"] == (
            "this key's datasets hold 3000 bytes; this upload of 1500 bytes would pass "
            "THAW_MAX_DATASET_BYTES_PER_TENANT=4000; delete datasets or upload a smaller one"
        )
        assert len(stored_ids(bounded, rstore, "bob")) == 1
        assert files_under(bounded.uploads_dir / ".incoming") == []
        assert upload(bob, csv_of(1000)).status_code == 201  # exactly at the quota
        assert len(stored_ids(bounded, rstore, "bob")) == 2


def _multipart_head(content: bytes) -> bytes:
    return (
        f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="file"; filename="d.csv"\r\n'
        "Content-Type: text/csv\r\n\r\n"
    ).encode() + content


def test_multipart_without_its_closing_boundary_is_refused(
    bounded: ApiServer, rstore: redis.Redis
) -> None:
    body = _multipart_head(csv_of(200))
    with bounded.client(KEYS["alice"]) as alice:
        for ending in (b"", b"\r\n", f"\r\n--{BOUNDARY}".encode()):
            response = alice.post(
                "/v1/datasets",
                content=body + ending,
                headers={"content-type": f"multipart/form-data; boundary={BOUNDARY}"},
            )
            err = problem(response, 422)
            assert err["code"] == "invalid_upload"
            assert err["detail"] == (
                "the multipart body ends before its closing boundary; send the whole body, "
                f"ending with --{BOUNDARY}--"
            )
        assert_nothing_stored(bounded, rstore)
        whole = body + f"\r\n--{BOUNDARY}--\r\n".encode()
        stored = alice.post(
            "/v1/datasets",
            content=whole,
            headers={"content-type": f"multipart/form-data; boundary={BOUNDARY}"},
        )
        assert stored.status_code == 201, stored.text


def test_an_upload_that_stops_sending_gets_408_and_stores_nothing(
    bounded: ApiServer, rstore: redis.Redis
) -> None:
    part = _multipart_head(csv_of(200))
    head = (
        "POST /v1/datasets HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        f"Authorization: Bearer {KEYS['alice']}\r\n"
        f"Content-Type: multipart/form-data; boundary={BOUNDARY}\r\n"
        f"Content-Length: {len(part) + 100_000}\r\n\r\n"
    ).encode()
    with socket.create_connection(("127.0.0.1", bounded.port), timeout=30) as sock:
        sock.sendall(head + part)  # then nothing more
        reply = b""
        while b"\r\n\r\n" not in reply:
            chunk = sock.recv(65536)
            assert chunk, reply
            reply += chunk
    status_line, _, rest = reply.partition(b"\r\n")
    assert status_line == b"HTTP/1.1 408 Request Timeout"
    assert b"application/problem+json" in rest
    assert_nothing_stored(bounded, rstore)
    assert files_under(bounded.uploads_dir / ".incoming") == []


def test_failed_keys_are_throttled_per_address(bounded: ApiServer) -> None:
    with bounded.client("wrong-key") as wrong, bounded.client(KEYS["bob"]) as bob:
        for _ in range(AUTH_FAILURES - 2):
            assert problem(wrong.get("/v1/jobs"), 401)["detail"] == "invalid API key"
        assert wrong.get("/readyz").status_code in (200, 503)  # a key guess here counts too
        problem(wrong.get("/v1/jobs"), 401)  # the fifth failure
        refused = wrong.get("/v1/jobs")
        err = problem(refused, 429)
        assert err["code"] == "too_many_auth_failures"
        wait = int(refused.headers["Retry-After"])
        assert 1 <= wait <= 2
        assert err["detail"] == (
            "too many invalid API keys from this address or with this key's first characters "
            "(THAW_AUTH_FAILURES_MAX=5 in THAW_AUTH_FAILURE_WINDOW_SECONDS=2); "
            f"retry in {wait} s with a valid key"
        )
        assert bob.get("/v1/jobs").status_code == 200  # a valid key is never refused
        time.sleep(wait)
        problem(wrong.get("/v1/jobs"), 401)
