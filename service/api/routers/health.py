"""Liveness and readiness."""

from __future__ import annotations

import redis
from fastapi import APIRouter

from service.api.deps import KnownCallerDep, SettingsDep, StoresDep
from service.api.openapi import problem_responses
from service.api.schemas import HealthOut
from service.http.problems import Problem
from thaw.artifacts import ArtifactStoreError, check_store

router = APIRouter(tags=["health"])


@router.get("/healthz", response_model=HealthOut, response_model_exclude_none=True)
async def healthz() -> HealthOut:
    return HealthOut(status="ok")


@router.get(
    "/readyz",
    response_model=HealthOut,
    response_model_exclude_none=True,
    summary="Ready when Redis answers and a worker heartbeat is live",
    description="Without a key, only ready (200) or not (503). With a tenant's key, the "
    "reason and the number of live workers; with an admin key (THAW_ADMIN_KEYS) also their "
    "ids (host and pid).",
    responses=problem_responses(
        e503="Not ready (`not_ready` without a key): Redis is unreachable "
        "(`store_unavailable`), the artifact store refuses the credentials, lacks the bucket "
        "or does not answer (`artifact_store_credentials`, `artifact_store_bucket_missing`, "
        "`artifact_store_unreachable`), or no worker heartbeats (`no_workers`)."
    ),
)
def readyz(stores: StoresDep, known: KnownCallerDep, settings: SettingsDep) -> HealthOut:
    try:
        stores.client.ping()
        workers = stores.workers.live_workers()
    except redis.RedisError as exc:
        if known is None:
            raise _NOT_READY from exc
        raise Problem(
            503, f"Redis is unreachable: {exc}", code="store_unavailable", redis=False
        ) from exc
    try:
        check_store(settings)
    except ArtifactStoreError as exc:
        if known is None:
            raise _NOT_READY from exc
        raise Problem(503, str(exc), code=exc.code, redis=True) from exc
    if not workers:
        if known is None:
            raise _NOT_READY
        raise Problem(
            503,
            "no live worker heartbeat; start one with 'thaw worker'",
            code="no_workers",
            redis=True,
            workers=0,
        )
    if known is None:
        return HealthOut(status="ok")
    worker_ids = workers if known.admin else None
    return HealthOut(status="ok", redis=True, workers=len(workers), worker_ids=worker_ids)


_NOT_READY = Problem(
    503, "not ready; send an API key for the reason", code="not_ready", headers={"Retry-After": "5"}
)
