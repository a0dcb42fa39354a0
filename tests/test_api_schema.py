"""The OpenAPI document says what the API answers: problem+json errors, auth as configured,
the formats and limits it enforces, and a 200 shape for every form of /layers."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
import schemathesis
from api_fixtures import ApiServer, ApiServers, job_body
from schemathesis.config import SchemathesisConfig
from schemathesis.specs.openapi.checks import response_schema_conformance

PROBLEM_CONTENT = {
    "application/problem+json": {"schema": {"$ref": "#/components/schemas/ProblemOut"}}
}
JOB_ID = "^job_[0-9a-f]{24}$"
DATASET_ID = "^ds_[0-9a-f]{6,64}$"
EVENT_ID = "^[0-9]{1,20}(-[0-9]{1,20})?$"


def document(server: ApiServer) -> dict[str, Any]:
    with server.client() as client:
        response = client.get("/openapi.json")
    response.raise_for_status()
    return response.json()


def operations(doc: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {
        f"{method.upper()} {path}": operation
        for path, item in doc["paths"].items()
        for method, operation in item.items()
    }


def statuses(operation: dict[str, Any]) -> set[int]:
    return {int(code) for code in operation["responses"]}


def parameter(operation: dict[str, Any], name: str) -> dict[str, Any]:
    return next(p for p in operation["parameters"] if p["name"] == name)


def test_every_error_response_is_problem_json_with_the_problem_model(api: ApiServer) -> None:
    doc = document(api)
    problem = doc["components"]["schemas"]["ProblemOut"]
    assert set(problem["required"]) == {"type", "title", "status", "detail", "code"}
    assert problem["properties"]["errors"]["anyOf"][0]["items"] == {
        "$ref": "#/components/schemas/FieldError"
    }
    assert "FieldError" in doc["components"]["schemas"]
    assert "HTTPValidationError" not in doc["components"]["schemas"]
    errors = 0
    for label, operation in operations(doc).items():
        for code, response in operation["responses"].items():
            if int(code) >= 400:
                errors += 1
                assert response["content"] == PROBLEM_CONTENT, (label, code)
                assert response["description"], (label, code)
    assert errors > 50


def test_each_operation_declares_the_errors_it_can_give(api: ApiServer) -> None:
    ops = operations(document(api))
    assert statuses(ops["GET /healthz"]) == {200}
    assert statuses(ops["GET /readyz"]) == {200, 503}
    expected = {
        "GET /v1/models": {200, 503},
        "GET /v1/models/layers": {200, 422, 503},
        "POST /v1/plans": {200, 413, 422, 503},
        "POST /v1/datasets": {200, 201, 408, 413, 415, 422, 429, 503},
        "GET /v1/datasets": {200, 422, 503},
        "GET /v1/datasets/{dataset_id}": {200, 404, 422, 503},
        "DELETE /v1/datasets/{dataset_id}": {204, 404, 422, 503},
        "POST /v1/jobs": {200, 202, 413, 422, 429, 503},
        "GET /v1/jobs": {200, 422, 503},
        "GET /v1/jobs/{job_id}": {200, 404, 422, 503},
        "DELETE /v1/jobs/{job_id}": {204, 404, 409, 422, 503},
        "POST /v1/jobs/{job_id}/cancel": {200, 404, 422, 503},
        "GET /v1/jobs/{job_id}/layers": {200, 404, 422, 503},
        "GET /v1/jobs/{job_id}/events": {200, 404, 422, 429, 503},
        "GET /v1/jobs/{job_id}/checkpoints": {200, 404, 422, 503},
        "GET /v1/jobs/{job_id}/checkpoints/{name}/{file}": {200, 206, 302, 304, 400, 404, 416}
        | {422, 503},
        "GET /v1/workers": {200, 503},
    }
    for label, codes in expected.items():
        assert statuses(ops[label]) == codes, label
    spec_timeout = ops["POST /v1/plans"]["responses"]["503"]["description"]
    assert "THAW_PLAN_TIMEOUT_SECONDS" in spec_timeout


def test_without_keys_no_operation_asks_for_auth(api: ApiServer) -> None:
    doc = document(api)
    assert "securitySchemes" not in doc["components"]
    for label, operation in operations(doc).items():
        assert "security" not in operation, label
        assert 401 not in statuses(operation), label


def test_with_keys_every_v1_operation_requires_a_bearer_key(keyed: ApiServer) -> None:
    doc = document(keyed)
    assert doc["components"]["securitySchemes"]["HTTPBearer"]["scheme"] == "bearer"
    ops = operations(doc)
    v1 = [label for label in ops if label.split()[1].startswith("/v1/")]
    assert len(v1) == 36
    for label in v1:
        assert ops[label]["security"] == [{"HTTPBearer": []}], label
        assert {401, 429} <= statuses(ops[label]), label
        assert ops[label]["responses"]["401"]["content"] == PROBLEM_CONTENT
    assert ops["GET /readyz"]["security"] == [{}, {"HTTPBearer": []}]
    assert "security" not in ops["GET /healthz"]


def test_parameters_carry_the_formats_and_limits_the_api_enforces(api: ApiServer) -> None:
    ops = operations(document(api))
    for label, pattern, longest in (
        ("GET /v1/jobs", JOB_ID, 28),
        ("GET /v1/datasets", DATASET_ID, 67),
        ("GET /v1/jobs/{job_id}/events", EVENT_ID, 41),
    ):
        after = parameter(ops[label], "after")["schema"]
        assert after["pattern"] == pattern, label
        assert after["anyOf"][0]["maxLength"] == longest, label
        limit = parameter(ops[label], "limit")["schema"]["anyOf"][0]
        assert (limit["minimum"], limit["maximum"]) == (1, 100), label
    for label, operation in ops.items():
        if "{job_id}" in label:
            assert parameter(operation, "job_id")["schema"]["pattern"] == JOB_ID, label
        if "{dataset_id}" in label:
            assert parameter(operation, "dataset_id")["schema"]["pattern"] == DATASET_ID, label
    download = ops["GET /v1/jobs/{job_id}/checkpoints/{name}/{file}"]
    name = parameter(download, "name")["schema"]["pattern"]
    assert name == "^(best|last|epoch-(0|[1-9][0-9]{0,8}))$"
    assert "\\x2f" not in parameter(download, "file")["schema"]["pattern"]
    epoch = parameter(ops["GET /v1/jobs/{job_id}/layers"], "epoch")["schema"]["anyOf"][0]
    assert (epoch["minimum"], epoch["maximum"]) == (1, 10_000)
    idempotency = parameter(ops["POST /v1/jobs"], "idempotency-key")["schema"]["anyOf"][0]
    assert (idempotency["minLength"], idempotency["maxLength"]) == (1, 255)
    name = parameter(ops["GET /v1/models/layers"], "name")["schema"]
    assert (name["maxLength"], name["pattern"]) == (300, "^[^\\x00-\\x1f\\x7f]+$")


def test_the_page_limit_follows_the_setting(api_servers: ApiServers) -> None:
    with api_servers.in_process({"THAW_PAGE_SIZE_MAX": "7"}) as server:
        limit = parameter(operations(document(server))["GET /v1/jobs"], "limit")["schema"]
        assert limit["anyOf"][0]["maximum"] == 7


@pytest.mark.parametrize(
    "query",
    [{}, {"epoch": 2}, {"epoch": 2, "detail": "params"}, {"detail": "params"}],
    ids=["all", "epoch", "epoch-params", "all-params"],
)
def test_layers_answer_a_shape_their_schema_declares(
    api: ApiServer, http: httpx.Client, query: dict[str, Any]
) -> None:
    job_id = http.post("/v1/jobs", json=job_body()).json()["id"]
    schema = schemathesis.openapi.from_url(
        f"{api.url}/openapi.json", config=SchemathesisConfig.from_dict({})
    )
    operation = schema["/v1/jobs/{job_id}/layers"]["GET"]
    case = operation.Case(path_parameters={"job_id": job_id}, query=query)
    response = case.call_and_validate(base_url=api.url, checks=[response_schema_conformance])
    assert response.status_code == 200
    body = response.json()
    if "epoch" in query:
        assert (body["epoch"], body["source"]) == (2, "planned")
    else:
        assert [e["epoch"] for e in body["epochs"]] == [1, 2, 3]


def test_an_epoch_entry_is_not_the_all_epochs_shape(api: ApiServer) -> None:
    """The ?epoch=N form has its own model, so a client can tell the two apart."""
    schemas = document(api)["components"]["schemas"]
    entry = schemas["LayerEpochOut"]
    assert {"epoch", "phase", "layers", "source"} <= set(entry["required"])
    assert entry["properties"]["source"]["enum"] == ["recorded", "planned"]
    assert {"groups", "epochs", "warnings"} <= set(schemas["LayerStatusOut"]["required"])
