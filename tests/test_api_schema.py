"""Property-based requests generated from the OpenAPI document: no response is a 5xx."""

from __future__ import annotations

import pytest
import redis
import schemathesis
from api_fixtures import ApiServer
from hypothesis import HealthCheck, given, settings

from thaw.store import WorkerRegistry

pytest_plugins = ("api_fixtures",)


EXAMPLES_PER_OPERATION = 25


def operations(api: ApiServer) -> list:
    schema = schemathesis.openapi.from_url(f"{api.url}/openapi.json")
    return [result.ok() for result in schema.get_all_operations()]


def test_every_operation_is_generated(api: ApiServer) -> None:
    labels = {op.label for op in operations(api)}
    assert "POST /v1/jobs" in labels
    assert "GET /v1/jobs/{job_id}/checkpoints/{name}/{file}" in labels
    assert len(labels) == 19


@pytest.mark.parametrize("index", range(19))
def test_no_server_errors(api: ApiServer, store: redis.Redis, index: int) -> None:
    WorkerRegistry(store).record_worker_heartbeat("schema-worker", ttl=600)
    operation = operations(api)[index]
    seen: list[int] = []

    @given(case=operation.as_strategy())
    @settings(
        max_examples=EXAMPLES_PER_OPERATION,
        deadline=None,
        suppress_health_check=list(HealthCheck),
        derandomize=True,
        database=None,
    )
    def check(case) -> None:
        response = case.call(base_url=api.url, timeout=30)
        seen.append(response.status_code)
        assert response.status_code < 500, (
            f"{case.method} {case.formatted_path} -> {response.status_code}: {response.text[:500]}"
        )
        if response.status_code >= 400:
            assert response.headers["content-type"] == ["application/problem+json"], response.text

    check()
    assert seen, operation.label
