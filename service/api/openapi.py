"""The OpenAPI document: problem+json responses per route, and what the running server adds.

Routes declare their error responses with ``problem_responses(...)``. ``install_openapi``
then makes the document describe this server as configured: with API keys, every /v1
operation requires a bearer key and may answer 401 (and 429 to repeated bad keys);
without keys, no operation declares security; list limits show THAW_PAGE_SIZE_MAX.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI

from service.api.schemas import ProblemOut
from service.http.problems import MEDIA_TYPE
from thaw.settings import Settings

PROBLEM_SCHEMA = "ProblemOut"
BEARER_SCHEME = "HTTPBearer"
V1_PREFIX = "/v1/"
# Operations that work without a key and show more with one.
OPTIONAL_AUTH = frozenset({("get", "/readyz")})

DESCRIPTIONS: dict[int, str] = {
    400: "A malformed request.",
    401: "A missing or unknown API key (`Authorization: Bearer <key>`).",
    404: "No such resource for this key.",
    408: "The upload stopped sending before it was complete; nothing was stored.",
    409: "The resource is in a state that does not allow this.",
    413: "The body is over its size limit.",
    415: "The body's media type is not accepted here.",
    416: "The range is outside the file.",
    422: "Invalid input; `errors` names each field and the fix.",
    429: "Over a limit for this key; `Retry-After` says when to retry.",
    503: "The job store (Redis) is unreachable; `Retry-After` says when to retry.",
}


def problem_response(status: int, description: str | None = None) -> dict[str, Any]:
    return {
        "description": description or DESCRIPTIONS[status],
        "content": {MEDIA_TYPE: {"schema": {"$ref": f"#/components/schemas/{PROBLEM_SCHEMA}"}}},
    }


def problem_responses(*statuses: int, **described: str) -> dict[int | str, dict[str, Any]]:
    """``responses=`` for a route: each status with the problem+json schema; a keyword
    ``e429="..."`` gives that status its own description."""
    responses: dict[int | str, dict[str, Any]] = {s: problem_response(s) for s in statuses}
    for key, description in described.items():
        status = int(key.removeprefix("e"))
        responses[status] = problem_response(status, description)
    return responses


# Every /v1 route reads the job store.
V1_RESPONSES = problem_responses(503)


def install_openapi(app: FastAPI, settings: Settings, *, keys_enabled: bool) -> None:
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = generate()
            _add_problem_schemas(schema)
            _validation_errors_as_problems(schema)
            _apply_auth(schema, keys_enabled)
            _apply_settings(schema, settings)
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


def _add_problem_schemas(schema: dict[str, Any]) -> None:
    ref = "#/components/schemas/{model}"
    problem = ProblemOut.model_json_schema(ref_template=ref)
    components = schema.setdefault("components", {}).setdefault("schemas", {})
    components.update(problem.pop("$defs", {}))
    components[PROBLEM_SCHEMA] = problem


def _validation_errors_as_problems(schema: dict[str, Any]) -> None:
    """FastAPI documents its own 422 body for routes with parameters; the API answers
    every validation error as problem+json instead."""
    for _, _, operation in _operations(schema):
        if "422" in operation["responses"]:
            operation["responses"]["422"] = problem_response(422)
    for name in ("HTTPValidationError", "ValidationError"):
        schema["components"]["schemas"].pop(name, None)


def _operations(schema: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    return [
        (method, path, operation)
        for path, item in schema.get("paths", {}).items()
        for method, operation in item.items()
    ]


def _apply_auth(schema: dict[str, Any], keys_enabled: bool) -> None:
    for method, path, operation in _operations(schema):
        if not keys_enabled:
            operation.pop("security", None)
        elif (method, path) in OPTIONAL_AUTH:
            operation["security"] = [{}, {BEARER_SCHEME: []}]
        elif path.startswith(V1_PREFIX):
            operation["security"] = [{BEARER_SCHEME: []}]
            responses = operation["responses"]
            responses["401"] = problem_response(401)
            responses.setdefault(
                "429", problem_response(429, DESCRIPTIONS[429] + " Also after repeated bad keys.")
            )
    if not keys_enabled:
        schema.get("components", {}).pop("securitySchemes", None)


def _apply_settings(schema: dict[str, Any], settings: Settings) -> None:
    for _, _, operation in _operations(schema):
        for parameter in operation.get("parameters", []):
            if parameter["in"] == "query" and parameter["name"] == "limit":
                _schema_of(parameter)["maximum"] = settings.page_size_max


def _schema_of(parameter: dict[str, Any]) -> dict[str, Any]:
    """The integer branch of a parameter schema (``anyOf`` of integer and null, or plain)."""
    schema = parameter["schema"]
    for branch in schema.get("anyOf", []):
        if branch.get("type") == "integer":
            return branch
    return schema
