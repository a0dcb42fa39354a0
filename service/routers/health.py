"""Liveness and readiness."""

from __future__ import annotations

from typing import Any

import redis
from fastapi import APIRouter

from service.deps import KnownTenantDep, StoresDep
from service.openapi import problem_responses
from service.problems import Problem
from service.schemas import HealthOut

router = APIRouter(tags=["health"])


@router.get("/healthz", response_model=HealthOut, response_model_exclude_none=True)
async def healthz() -> dict[str, Any]:
    return {"status": "ok"}


@router.get(
    "/readyz",
    response_model=HealthOut,
    response_model_exclude_none=True,
    summary="Ready when Redis answers and a worker heartbeat is live",
    description="Counts the live workers; their ids (host and pid) only with a valid API key.",
    responses=problem_responses(
        e503="Redis is unreachable (`store_unavailable`) or no worker heartbeats (`no_workers`)."
    ),
)
def readyz(stores: StoresDep, known: KnownTenantDep) -> dict[str, Any]:
    try:
        stores.client.ping()
        workers = stores.workers.live_workers()
    except redis.RedisError as exc:
        raise Problem(
            503, f"Redis is unreachable: {exc}", code="store_unavailable", redis=False
        ) from exc
    if not workers:
        raise Problem(
            503,
            "no live worker heartbeat; start one with 'thaw worker'",
            code="no_workers",
            redis=True,
            workers=0,
        )
    ready: dict[str, Any] = {"status": "ok", "redis": True, "workers": len(workers)}
    if known is not None:
        ready["worker_ids"] = workers
    return ready
