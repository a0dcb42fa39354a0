"""Request dependencies: settings, stores, the caller's tenant, the job in the path."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Path, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from service.auth import DEFAULT_TENANT, ApiKeys, FailureThrottle
from service.problems import Problem, not_found
from service.spec_pool import SpecPool
from service.stores import Stores
from thaw.dispatch import Enqueue, SendTask
from thaw.settings import Settings
from thaw.store import Job
from thaw.store.jobs import JOB_ID

_bearer = HTTPBearer(auto_error=False, description="An API key from THAW_API_KEYS.")


def get_settings(request: Request) -> Settings:
    return request.app.state.settings


def get_stores(request: Request) -> Stores:
    return request.app.state.stores


def get_tenant(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> str:
    keys: ApiKeys = request.app.state.api_keys
    if not keys.enabled:
        return DEFAULT_TENANT
    challenge = {"WWW-Authenticate": 'Bearer realm="thaw"'}
    if credentials is None:
        raise Problem(
            401,
            "missing API key; send 'Authorization: Bearer <key>'",
            code="unauthorized",
            headers=challenge,
        )
    tenant = _checked_key(request, credentials.credentials)
    if tenant is None:
        raise Problem(401, "invalid API key", code="unauthorized", headers=challenge)
    return tenant


def _checked_key(request: Request, key: str) -> str | None:
    """The key's tenant; an address with too many failed keys gets a 429 before its key
    is even compared, and every invalid key counts against it."""
    throttle: FailureThrottle = request.app.state.auth_failures
    settings: Settings = request.app.state.settings
    client = request.client.host if request.client else "unknown"
    wait = throttle.retry_after(client)
    if wait is not None:
        raise Problem(
            429,
            f"too many invalid API keys from this address (THAW_AUTH_FAILURES_MAX="
            f"{settings.auth_failures_max} in THAW_AUTH_FAILURE_WINDOW_SECONDS="
            f"{settings.auth_failure_window_seconds:g}); retry in {wait} s with a valid key",
            code="too_many_auth_failures",
            headers={"Retry-After": str(wait)},
        )
    tenant = request.app.state.api_keys.tenant_for(key)
    if tenant is None:
        throttle.failed(client)
    return tenant


def get_enqueue(request: Request) -> Enqueue:
    return request.app.state.enqueue


def get_send_task(request: Request) -> SendTask:
    return request.app.state.send_task


def get_known_tenant(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> str | None:
    """The caller's tenant when keys are configured and it sent a valid one, else None;
    for public endpoints that show more to a known caller."""
    keys: ApiKeys = request.app.state.api_keys
    if not keys.enabled or credentials is None:
        return None
    return _checked_key(request, credentials.credentials)


def get_spec_pool(request: Request) -> SpecPool:
    return request.app.state.spec_pool


SettingsDep = Annotated[Settings, Depends(get_settings)]
StoresDep = Annotated[Stores, Depends(get_stores)]
TenantDep = Annotated[str, Depends(get_tenant)]
KnownTenantDep = Annotated[str | None, Depends(get_known_tenant)]
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
