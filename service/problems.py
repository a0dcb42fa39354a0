"""Every error as RFC 9457 problem+json: ``type``, ``title``, ``status``, ``detail``, ``code``."""

from __future__ import annotations

import http
import logging
import re
from collections.abc import Mapping, Sequence
from typing import Any

import redis
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match

from thaw.checkpoints import CheckpointNotFound, CorruptCheckpoint, InvalidCheckpointName
from thaw.data import DatasetError
from thaw.errors import SelectorError, SpecError, ThawError, format_loc
from thaw.freezing.status import EpochOutOfRange
from thaw.store import IdempotencyConflict, InvalidCursor, JobNotTerminal
from thaw.uploads import UploadRejected, UploadTooLarge

MEDIA_TYPE = "application/problem+json"
TYPE_BASE = "urn:thaw:problem:"
_UNION_TAGS = frozenset({"event", "gradual", "fine_tune"})
_CLASS_TAG = re.compile(r"^[A-Z]\w*$|\[")
_METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE")
_VALUE_ERROR = re.compile(r"^(Value|Assertion) error, ")

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


def clean_loc(loc: Sequence[str | int]) -> list[str | int]:
    """A pydantic location without the request part and union tags: ``freeze.rules[0].match``."""
    parts = list(loc)
    if parts and parts[0] in ("body", "query", "path", "header"):
        parts = parts[1:]
    out: list[str | int] = []
    for part in parts:
        if isinstance(part, str) and _CLASS_TAG.search(part):
            continue
        if (
            isinstance(part, str)
            and part in _UNION_TAGS
            and len(out) >= 2
            and isinstance(out[-1], int)
            and out[-2] == "schedule"
        ):
            continue
        out.append(part)
    return out


def _hint(error: Mapping[str, Any]) -> str | None:
    kind = error.get("type", "")
    if kind == "extra_forbidden":
        return "remove this field; it is not part of the job spec"
    if kind == "missing":
        return "add this field"
    if kind == "json_invalid":
        return "send a valid JSON document"
    return None


def validation_errors(errors: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    out = []
    for error in errors:
        message = _VALUE_ERROR.sub("", str(error.get("msg", "invalid value")))
        out.append(
            {
                "loc": format_loc(clean_loc(error.get("loc", ()))),
                "message": message,
                "hint": _hint(error),
                "closest": [],
            }
        )
    return out


def _summary(errors: list[dict[str, Any]]) -> str:
    first = errors[0]
    where = first["loc"] or "request body"
    text = f"{where}: {first['message']}"
    if first.get("hint"):
        text += f" ({first['hint']})"
    if len(errors) > 1:
        text += f"; and {len(errors) - 1} more error(s), see 'errors'"
    return text


def invalid(errors: list[dict[str, Any]], code: str = "invalid_request") -> Problem:
    return Problem(422, _summary(errors), code=code, title="Invalid request", errors=errors)


def spec_problem(exc: SpecError) -> Problem:
    closest = list(exc.closest) if isinstance(exc, SelectorError) else []
    error = {"loc": exc.path, "message": exc.message, "hint": exc.hint, "closest": closest}
    return invalid([error], code=exc.code)


def _thaw_problem(exc: ThawError) -> Problem:
    match exc:
        case SpecError():
            return spec_problem(exc)
        case UploadTooLarge():
            return Problem(413, str(exc), code=exc.code, limit=exc.limit)
        case UploadRejected():
            return Problem(422, exc.message, code=exc.code)
        case DatasetError():
            extra = {"member": exc.path} if exc.path else {}
            if exc.lines:
                extra["lines"] = list(exc.lines)
            return Problem(422, exc.message, code=exc.code, title="Invalid dataset", **extra)
        case IdempotencyConflict():
            return Problem(422, exc.message, code=exc.code, job_id=exc.job_id)
        case JobNotTerminal():
            return Problem(409, exc.message, code=exc.code, job_status=exc.status)
        case InvalidCursor():
            return Problem(422, exc.message, code=exc.code)
        case InvalidCheckpointName():
            return Problem(400, str(exc), code=exc.code)
        case CheckpointNotFound():
            return Problem(404, str(exc), code=exc.code)
        case EpochOutOfRange():
            return Problem(404, str(exc), code=exc.code)
        case CorruptCheckpoint():
            log.error("corrupt checkpoint: %s", exc)
            return Problem(500, "a stored checkpoint is unreadable", code=exc.code)
    code = getattr(exc, "code", "invalid_request")
    return Problem(400, str(exc), code=code)


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
        detail = exc.detail if isinstance(exc.detail, str) else str(exc.detail)
        headers = dict(exc.headers or {})
        if exc.status_code == 404 and detail == "Not Found":
            detail = "no such resource; see /docs for the API's paths"
        elif exc.status_code == 405:
            allowed = _allowed_methods(request)
            headers["Allow"] = ", ".join(allowed)
            detail = f"{request.method} is not allowed here; use {' or '.join(allowed)}"
        return problem_response(Problem(exc.status_code, detail, headers=headers))

    async def on_validation(_: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, RequestValidationError)
        return problem_response(invalid(validation_errors(exc.errors())))

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
        return problem_response(_thaw_problem(exc))

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
    app.add_exception_handler(Exception, on_unexpected)
