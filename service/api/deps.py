"""Request dependencies: settings, stores, the caller's tenant, the job in the path."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Body, Depends, Path, Request
from fastapi.exceptions import RequestValidationError
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import PlainValidator, ValidationError

from service.api.schemas import SPEC_EXAMPLES
from service.api.spec_pool import SpecPool
from service.api.stores import Stores
from service.auth.keys import ALL_SEEING, ApiKeys, Caller
from service.auth.throttle import FailureThrottle
from service.http.problems import Problem, not_found
from thaw.dispatch import Enqueue, SendTask
from thaw.job_ids import JOB_ID
from thaw.settings import Settings
from thaw.spec import JobSpec, validation_context
from thaw.store import Job

_bearer = HTTPBearer(auto_error=False, description="An API key from THAW_API_KEYS.")


def get_settings(request: Request) -> Settings:
    return request.app.state.settings


def get_stores(request: Request) -> Stores:
    return request.app.state.stores


def get_caller(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> Caller:
    """The caller of a valid key (401 without one); everyone sees everything without keys."""
    keys: ApiKeys = request.app.state.api_keys
    if not keys.enabled:
        return ALL_SEEING
    challenge = {"WWW-Authenticate": 'Bearer realm="thaw"'}
    if credentials is None:
        raise Problem(
            401,
            "missing API key; send 'Authorization: Bearer <key>'",
            code="unauthorized",
            headers=challenge,
        )
    caller = _checked_key(request, credentials.credentials)
    if caller is None:
        raise Problem(401, "invalid API key", code="unauthorized", headers=challenge)
    return caller


def get_tenant(caller: Annotated[Caller, Depends(get_caller)]) -> str:
    if caller.tenant is None:
        raise Problem(
            403,
            "an admin key (THAW_ADMIN_KEYS) reads /metrics, /v1/workers and /readyz only; "
            "use a tenant's key from THAW_API_KEYS for jobs, plans and datasets",
            code="admin_key_not_a_tenant",
        )
    return caller.tenant


def _checked_key(request: Request, key: str) -> Caller | None:
    """The key's caller. A valid key always passes; an invalid one counts against its
    address and its prefix, and once either is over the limit the answer is a 429."""
    caller = request.app.state.api_keys.caller_for(key)
    if caller is not None:
        return caller
    throttle: FailureThrottle = request.app.state.auth_failures
    settings: Settings = request.app.state.settings
    wait = throttle.failed(request.client.host if request.client else "unknown", key)
    if wait is not None:
        raise Problem(
            429,
            f"too many invalid API keys from this address or with this key's first "
            f"characters (THAW_AUTH_FAILURES_MAX={settings.auth_failures_max} in "
            f"THAW_AUTH_FAILURE_WINDOW_SECONDS={settings.auth_failure_window_seconds:g}); "
            f"retry in {wait} s with a valid key",
            code="too_many_auth_failures",
            headers={"Retry-After": str(wait)},
        )
    return None


def get_enqueue(request: Request) -> Enqueue:
    return request.app.state.enqueue


def get_send_task(request: Request) -> SendTask:
    return request.app.state.send_task


def get_known_caller(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> Caller | None:
    """The caller of a valid key, everyone without keys, else None; for public endpoints
    that show more to a known caller. An invalid key counts as a failure here too."""
    keys: ApiKeys = request.app.state.api_keys
    if not keys.enabled:
        return ALL_SEEING
    if credentials is None:
        return None
    return _checked_key(request, credentials.credentials)


def get_spec_pool(request: Request) -> SpecPool:
    return request.app.state.spec_pool


SettingsDep = Annotated[Settings, Depends(get_settings)]

# The body as parsed JSON, described in OpenAPI as a JobSpec; valid_spec validates it.
_RawSpec = Annotated[
    JobSpec,
    PlainValidator(lambda raw: raw, json_schema_input_type=JobSpec),
    Body(openapi_examples=SPEC_EXAMPLES),
]


def valid_spec(spec: _RawSpec, settings: SettingsDep) -> JobSpec:
    """The request's job spec validated against this app's limits (its settings)."""
    raw: Any = spec
    try:
        return JobSpec.model_validate(raw, context=validation_context(settings))
    except ValidationError as exc:
        errors = exc.errors(include_url=False)
        raise RequestValidationError([{**e, "loc": ("body", *e["loc"])} for e in errors]) from None


SpecDep = Annotated[JobSpec, Depends(valid_spec)]
StoresDep = Annotated[Stores, Depends(get_stores)]
TenantDep = Annotated[str, Depends(get_tenant)]
CallerDep = Annotated[Caller, Depends(get_caller)]
KnownCallerDep = Annotated[Caller | None, Depends(get_known_caller)]
EnqueueDep = Annotated[Enqueue, Depends(get_enqueue)]
SendTaskDep = Annotated[SendTask, Depends(get_send_task)]
SpecPoolDep = Annotated[SpecPool, Depends(get_spec_pool)]


def get_job(
    job_id: Annotated[
        str,
        Path(
            description="A job id such as job_0123456789abcdef01234567; any other form is a 404.",
            json_schema_extra={"pattern": JOB_ID.pattern},
        ),
    ],
    stores: StoresDep,
    tenant: TenantDep,
) -> Job:
    job = stores.jobs.get(job_id, tenant) if JOB_ID.match(job_id) else None
    if job is None:
        raise not_found("job", job_id)
    return job


JobDep = Annotated[Job, Depends(get_job)]
