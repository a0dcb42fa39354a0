"""Schemathesis against a live API (real uvicorn and Redis, 127.0.0.1 only): every check,
schema-valid and schema-violating requests, with API keys off and on.

Bounded and deterministic: a fixed number of derandomized examples per operation and mode.
No worker runs, so a submitted job stays queued and nothing trains.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import redis
import schemathesis
from api_fixtures import KEYS, ApiServer, job_body, problem
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis.checks import CHECKS, load_all_checks
from schemathesis.config import SchemathesisConfig
from schemathesis.generation import GenerationMode

from thaw.store import WorkerRegistry

EXAMPLES = 60

OPERATIONS = (
    "GET /healthz",
    "GET /readyz",
    "GET /v1/models",
    "GET /v1/models/layers",
    "POST /v1/plans",
    "POST /v1/datasets",
    "GET /v1/datasets",
    "GET /v1/datasets/{dataset_id}",
    "DELETE /v1/datasets/{dataset_id}",
    "GET /v1/datasets/{dataset_id}/classes",
    "POST /v1/jobs",
    "GET /v1/jobs",
    "GET /v1/jobs/{job_id}",
    "DELETE /v1/jobs/{job_id}",
    "POST /v1/jobs/{job_id}/cancel",
    "GET /v1/jobs/{job_id}/layers",
    "GET /v1/jobs/{job_id}/events",
    "GET /v1/jobs/{job_id}/checkpoints",
    "GET /v1/jobs/{job_id}/checkpoints/{name}/{file}",
    "GET /v1/jobs/{job_id}/checkpoints/{name}/adapter/{file}",
    "GET /v1/workers",
    "POST /v1/jobs/{job_id}/evaluations",
    "GET /v1/jobs/{job_id}/evaluations",
    "GET /v1/evaluations/{evaluation_id}",
    "POST /v1/jobs/{job_id}/predictions",
    "GET /v1/jobs/{job_id}/predictions",
    "GET /v1/predictions/{prediction_id}",
    "POST /v1/jobs/{job_id}/exports",
    "GET /v1/jobs/{job_id}/exports",
    "GET /v1/exports/{export_id}",
    "GET /v1/exports/{export_id}/files/{file}",
    "GET /v1/jobs/{job_id}/metrics",
    "GET /v1/jobs/{job_id}/tensorboard",
    "POST /v1/webhooks",
    "GET /v1/webhooks",
    "GET /v1/webhooks/{webhook_id}",
    "DELETE /v1/webhooks/{webhook_id}",
    "GET /v1/webhooks/{webhook_id}/deliveries",
)

# positive_data_acceptance expects a 2xx for every schema-valid request. These operations
# also check what no schema can say: that a model, job, dataset or selector exists, or that
# an upload's bytes are a readable dataset; such a request is refused with a 422 naming the
# field, which is the documented answer, not a failure.
# So does an event cursor with a part above 2**64 - 1: the description says so, a pattern
# cannot; and a webhook URL whose host does not resolve to a public address.
SEMANTIC_422 = (
    "GET /v1/models/layers",
    "POST /v1/plans",
    "POST /v1/jobs",
    "POST /v1/datasets",
    "GET /v1/jobs/{job_id}/events",
    # A job without that checkpoint, a dataset id that is not stored.
    "POST /v1/jobs/{job_id}/evaluations",
    "POST /v1/jobs/{job_id}/predictions",
    "POST /v1/jobs/{job_id}/exports",
    "POST /v1/webhooks",
)
ACCEPTED = ["2xx", "3xx", "401", "403", "404", "409", "422", "429"]


def fuzz_config() -> SchemathesisConfig:
    return SchemathesisConfig.from_dict(
        {
            "operations": [
                {
                    "include-name": label,
                    "checks": {"positive_data_acceptance": {"expected-statuses": ACCEPTED}},
                }
                for label in SEMANTIC_422
            ]
        }
    )


def all_checks() -> list[Any]:
    """Every registered response check: the `--checks all` of the command line."""
    load_all_checks()
    return [check for check in CHECKS.get_all() if not isinstance(check, type)]


def load_schema(server: ApiServer) -> Any:
    return schemathesis.openapi.from_url(f"{server.url}/openapi.json", config=fuzz_config())


def operation_named(server: ApiServer, label: str) -> Any:
    for result in load_schema(server).get_all_operations():
        operation = result.ok()
        if operation.label == label:
            return operation
    raise AssertionError(f"{label} is not in the OpenAPI document")


@pytest.fixture
def live(api: ApiServer, store: redis.Redis) -> Iterator[ApiServer]:
    WorkerRegistry(store).record_worker_heartbeat("fuzz-worker", ttl=600)
    yield api


@pytest.fixture
def live_keyed(keyed: ApiServer) -> Iterator[ApiServer]:
    client = redis.Redis.from_url(keyed.redis_url, decode_responses=True)
    try:
        WorkerRegistry(client).record_worker_heartbeat("fuzz-worker", ttl=600)
    finally:
        client.close()
    yield keyed


def fuzz(
    server: ApiServer,
    label: str,
    mode: GenerationMode,
    key: str | None,
    path_parameters: dict[str, str] | None = None,
    fixed_headers: dict[str, str] | None = None,
) -> list[str]:
    """Run ``EXAMPLES`` cases of one operation; the failures, one report each."""
    operation = operation_named(server, label)
    auth = {"Authorization": f"Bearer {key}"} if key else {}
    headers = {**auth, **(fixed_headers or {})} or None
    checks = all_checks()
    failures: list[str] = []
    strategy = operation.as_strategy(
        generation_mode=mode, headers=headers, path_parameters=path_parameters
    )

    @given(case=strategy)
    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        suppress_health_check=list(HealthCheck),
        derandomize=True,
        database=None,
    )
    def run(case: Any) -> None:
        try:
            case.call_and_validate(base_url=server.url, headers=headers, checks=checks, timeout=30)
        except BaseExceptionGroup as group:
            failures.append(str(group))

    try:
        run()
    except Unsatisfiable:
        # Nothing in the operation can violate its schema (no parameters and no body).
        assert mode is GenerationMode.NEGATIVE, label
    return failures


def test_every_operation_is_fuzzed(api: ApiServer) -> None:
    labels = [result.ok().label for result in load_schema(api).get_all_operations()]
    assert sorted(labels) == sorted(OPERATIONS)


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE])
@pytest.mark.parametrize("label", OPERATIONS)
def test_fuzz_without_keys(live: ApiServer, label: str, mode: GenerationMode) -> None:
    failures = fuzz(live, label, mode, key=None)
    assert not failures, "\n\n".join(failures[:3])


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE])
@pytest.mark.parametrize("label", OPERATIONS)
def test_fuzz_with_keys(live_keyed: ApiServer, label: str, mode: GenerationMode) -> None:
    failures = fuzz(live_keyed, label, mode, key=KEYS["alice"])
    assert not failures, "\n\n".join(failures[:3])


JOB_OPERATIONS = [label for label in OPERATIONS if "{job_id}" in label]


@pytest.mark.parametrize("label", JOB_OPERATIONS)
def test_fuzz_an_existing_job(live: ApiServer, http: httpx.Client, label: str) -> None:
    """Generated ids never name a job; this one does, so real bodies meet their schemas."""
    job_id = http.post("/v1/jobs", json=job_body()).json()["id"]
    # A live stream of a job that stays queued would never end.
    json_only = {"Accept": "application/json"} if label.endswith("/events") else None
    failures = fuzz(live, label, GenerationMode.POSITIVE, None, {"job_id": job_id}, json_only)
    assert not failures, "\n\n".join(failures[:3])


# Regressions found by the fuzz run.


@pytest.mark.parametrize("cursor", ["١٢-0", "12\n", "12-0\n"])
def test_event_cursors_of_non_ascii_digits_or_a_newline_are_422(
    http: httpx.Client, cursor: str
) -> None:
    job_id = http.post("/v1/jobs", json=job_body()).json()["id"]
    err = problem(http.get(f"/v1/jobs/{job_id}/events", params={"after": cursor}), 422)
    assert err["code"] == "invalid_cursor"
    assert err["detail"] == (
        f"invalid cursor {cursor!r}: expected an event id such as 1700000000000-0"
    )


@pytest.mark.parametrize("path", ["/v1/plans", "/v1/jobs"])
def test_a_json_body_that_is_not_utf8_is_422_naming_the_body(http: httpx.Client, path: str) -> None:
    response = http.post(path, content=b"\xff\xfe{", headers={"Content-Type": "application/json"})
    err = problem(response, 422)
    assert err["code"] == "invalid_request"
    assert err["errors"] == [
        {
            "loc": "body",
            "message": "is not UTF-8 text",
            "hint": "send a valid JSON document",
            "closest": [],
        }
    ]
