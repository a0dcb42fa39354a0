"""Every error as RFC 9457 problem+json: ``type``, ``title``, ``status``, ``detail``, ``code``."""

from __future__ import annotations

import http
import logging
from collections.abc import Mapping
from typing import Any

import redis
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import ClientDisconnect
from starlette.routing import Match

from thaw.errors import InvalidInput, ThawError
from thaw.spec import JobSpec, closest_fields

MEDIA_TYPE = "application/problem+json"
TYPE_BASE = "urn:thaw:problem:"
_METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE")

log = logging.getLogger("thaw.api")


class Problem(Exception):
    """Raise from a route to answer with a problem document."""

    def __init__(
        self,
        status: int,
        detail: str,
        *,
        code: str | None = None,
        title: str | None = None,
        headers: Mapping[str, str] | None = None,
        **extra: Any,
    ):
        self.status = status
        self.detail = detail
        self.code = code or _default_code(status)
        self.title = title or http.HTTPStatus(status).phrase
        self.headers = dict(headers or {})
        self.extra = extra
        super().__init__(detail)


SHOWN_ID_CHARS = 64


def not_found(what: str, ident: str) -> Problem:
    shown = ident if len(ident) <= SHOWN_ID_CHARS else f"{ident[:SHOWN_ID_CHARS]}..."
    return Problem(404, f"no {what} {shown!r}", code=f"{what.replace(' ', '_')}_not_found")


def problem_response(problem: Problem) -> JSONResponse:
    body: dict[str, Any] = {
        "type": TYPE_BASE + problem.code,
        "title": problem.title,
        "status": problem.status,
        "detail": problem.detail,
        "code": problem.code,
        **problem.extra,
    }
    return JSONResponse(
        body, status_code=problem.status, headers=problem.headers, media_type=MEDIA_TYPE
    )


def _default_code(status: int) -> str:
    try:
        return http.HTTPStatus(status).phrase.lower().replace(" ", "_").replace("-", "_")
    except ValueError:
        return "error"


def thaw_problem(exc: ThawError) -> Problem:
    """Every ThawError carries its own status, code and extra members."""
    if exc.status >= 500:
        log.error("%s: %s", type(exc).__name__, exc)
    return Problem(
        exc.status,
        exc.detail,
        code=exc.code,
        title=exc.title,
        headers=exc.headers(),
        **exc.problem_fields(),
    )


NOT_UTF8_BODY = InvalidInput(
    [
        {
            "loc": "body",
            "message": "is not UTF-8 text",
            "hint": "send a valid JSON document",
            "closest": [],
        }
    ]
)


TOO_DEEP_BODY = InvalidInput(
    [
        {
            "loc": "body",
            "message": "nests arrays or objects too deeply to parse",
            "hint": "send a job spec as documented; none of its fields nests more than a "
            "few levels",
            "closest": [],
        }
    ]
)


def _takes_a_spec(request: Request) -> bool:
    """Whether the route's JSON body is a job spec, whose fields "did you mean" suggests."""
    body = getattr(request.scope.get("route"), "body_field", None)
    return body is not None and body.field_info.annotation is JobSpec


def _allowed_methods(request: Request) -> list[str]:
    allowed = []
    for method in _METHODS:
        scope = {**request.scope, "method": method}
        if any(route.matches(scope)[0] == Match.FULL for route in request.app.router.routes):
            allowed.append(method)
    return allowed


def install_problem_handlers(app: FastAPI) -> None:
    async def on_problem(_: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, Problem)
        return problem_response(exc)

    async def on_http(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, StarletteHTTPException)
        if exc.status_code == 400 and isinstance(exc.__cause__, UnicodeDecodeError):
            # FastAPI's answer to a JSON body that is not UTF-8; said as for any bad JSON.
            return problem_response(thaw_problem(NOT_UTF8_BODY))
        if exc.status_code == 400 and isinstance(exc.__cause__, RecursionError):
            return problem_response(thaw_problem(TOO_DEEP_BODY))
        detail = exc.detail if isinstance(exc.detail, str) else str(exc.detail)
        headers = dict(exc.headers or {})
        if exc.status_code == 404 and detail == "Not Found":
            detail = "no such resource; see /docs for the API's paths"
        elif exc.status_code == 405:
            allowed = _allowed_methods(request)
            headers["Allow"] = ", ".join([*allowed, "HEAD"] if "GET" in allowed else allowed)
            detail = f"{request.method} is not allowed here; use {' or '.join(allowed)}"
        return problem_response(Problem(exc.status_code, detail, headers=headers))

    async def on_validation(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, RequestValidationError)
        closest = closest_fields if _takes_a_spec(request) else None
        return problem_response(thaw_problem(InvalidInput.from_validation(exc.errors(), closest)))

    async def on_redis(_: Request, exc: Exception) -> JSONResponse:
        log.warning("redis unavailable: %s", exc)
        return problem_response(
            Problem(
                503,
                "the job store (Redis) is unreachable; retry shortly",
                code="store_unavailable",
                headers={"Retry-After": "5"},
            )
        )

    async def on_thaw(_: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, ThawError)
        return problem_response(thaw_problem(exc))

    async def on_disconnect(request: Request, _: Exception) -> Response:
        # Nobody is left to answer; a client that goes away is not the server's error.
        log.info("%s %s: the client went away mid-request", request.method, request.url.path)
        return Response(status_code=400)

    async def on_unexpected(_: Request, exc: Exception) -> JSONResponse:
        log.error("unhandled error", exc_info=exc)
        return problem_response(
            Problem(500, "the server failed to handle the request", code="internal_error")
        )

    app.add_exception_handler(Problem, on_problem)
    app.add_exception_handler(StarletteHTTPException, on_http)
    app.add_exception_handler(RequestValidationError, on_validation)
    app.add_exception_handler(redis.ConnectionError, on_redis)
    app.add_exception_handler(redis.TimeoutError, on_redis)
    app.add_exception_handler(ThawError, on_thaw)
    app.add_exception_handler(ClientDisconnect, on_disconnect)
    app.add_exception_handler(Exception, on_unexpected)
