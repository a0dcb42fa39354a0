"""Liveness, readiness, Redis outages and problem+json for routing errors."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest
import redis
from api_fixtures import ApiServer, ApiServers, free_port, job_body, problem

from thaw.store import WorkerRegistry

pytestmark = pytest.mark.in_process


@pytest.fixture(scope="module")
def down_server(api_servers: ApiServers) -> Iterator[ApiServer]:
    """An API whose Redis URL points at a port nothing listens on."""
    with api_servers.in_process(redis_url=f"redis://127.0.0.1:{free_port()}/0") as server:
        yield server


def test_healthz(http: httpx.Client) -> None:
    response = http.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


def test_readyz_needs_a_live_worker(http: httpx.Client, store: redis.Redis) -> None:
    err = problem(http.get("/readyz"), 503)
    assert err["code"] == "no_workers"
    assert err["detail"] == "no live worker heartbeat; start one with 'thaw worker'"
    assert err["workers"] == 0
    WorkerRegistry(store).record_worker_heartbeat("w-1", ttl=30)
    ready = http.get("/readyz")
    assert ready.status_code == 200
    # Without keys (loopback only) the caller sees what an admin key would.
    assert ready.json() == {"status": "ok", "redis": True, "workers": 1, "worker_ids": ["w-1"]}
    WorkerRegistry(store).remove_worker("w-1")
    problem(http.get("/readyz"), 503)


def test_redis_down_is_503_not_500(down_server: ApiServer) -> None:
    with down_server.client() as client:
        assert client.get("/healthz").status_code == 200
        err = problem(client.get("/readyz"), 503)
        assert err["code"] == "store_unavailable"
        for response in (
            client.get("/v1/jobs"),
            client.post("/v1/jobs", json=job_body()),
            client.get("/v1/datasets"),
            client.get("/v1/jobs/job_0123456789abcdef01234567"),
        ):
            err = problem(response, 503)
            assert err["detail"] == "the job store (Redis) is unreachable; retry shortly"
            assert response.headers["retry-after"] == "5"


def test_unknown_path_and_method_are_problems(http: httpx.Client) -> None:
    err = problem(http.get("/v1/nothing"), 404)
    assert err["detail"] == "no such resource; see /docs for the API's paths"
    response = http.put("/v1/jobs")
    err = problem(response, 405)
    assert response.headers["allow"] == "GET, POST, HEAD"
    assert err["detail"] == "PUT is not allowed here; use GET or POST"


def test_openapi_documents_every_endpoint_with_an_example(http: httpx.Client) -> None:
    schema = http.get("/openapi.json").json()
    expected = {
        ("post", "/v1/datasets"), ("get", "/v1/datasets"), ("get", "/v1/datasets/{dataset_id}"),
        ("delete", "/v1/datasets/{dataset_id}"), ("get", "/v1/models"),
        ("get", "/v1/models/layers"), ("post", "/v1/plans"), ("post", "/v1/jobs"),
        ("get", "/v1/jobs"), ("get", "/v1/jobs/{job_id}"), ("post", "/v1/jobs/{job_id}/cancel"),
        ("delete", "/v1/jobs/{job_id}"), ("get", "/v1/jobs/{job_id}/events"),
        ("get", "/v1/jobs/{job_id}/layers"), ("get", "/v1/jobs/{job_id}/checkpoints"),
        ("get", "/v1/jobs/{job_id}/checkpoints/{name}/{file}"), ("get", "/healthz"),
        ("get", "/readyz"), ("get", "/v1/workers"),
    }  # fmt: skip
    found = {(m, p) for p, ops in schema["paths"].items() for m in ops}
    assert expected <= found
    body = schema["paths"]["/v1/jobs"]["post"]["requestBody"]["content"]["application/json"]
    example = body["examples"]["resnet18"]["value"]
    assert example["base_model"]["name"] == "resnet18"
    assert example["freeze"]["rules"][0] == {"match": "layer4", "trainable": True}
    upload = schema["paths"]["/v1/datasets"]["post"]["requestBody"]["content"]
    assert "multipart/form-data" in upload
