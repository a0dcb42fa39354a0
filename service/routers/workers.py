"""The live training workers, from their heartbeats."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from service.deps import StoresDep, TenantDep
from service.openapi import V1_RESPONSES
from service.schemas import WorkerList

router = APIRouter(prefix="/v1", tags=["workers"], responses=V1_RESPONSES)


def worker_view(worker_id: str, info: dict[str, Any], tenant: str) -> dict[str, Any]:
    """One heartbeat as the API shows it: the job only to its own tenant."""
    job = info.get("job") or None
    return {
        "id": worker_id,
        "name": info.get("name"),
        "host": info.get("host"),
        "pid": info.get("pid"),
        "gpu": info.get("gpu"),
        "device": info.get("device"),
        "torch": info.get("torch"),
        "cuda": info.get("cuda"),
        "busy": job is not None,
        "job": job["id"] if job and job.get("tenant") == tenant else None,
        "jobs_done": int(info.get("jobs_done") or 0),
        "samples_per_s": info.get("samples_per_s"),
        "step_time_s": info.get("step_time_s"),
        "memory": info.get("memory") or {},
        "started_at": info.get("started_at"),
        "heartbeat_at": info.get("heartbeat_at"),
    }


@router.get(
    "/workers",
    response_model=WorkerList,
    summary="Live workers: host, device, pin, the caller's job they run, speed and memory",
)
def list_workers(stores: StoresDep, tenant: TenantDep) -> dict[str, Any]:
    live = stores.workers.live()
    return {"data": [worker_view(i, info, tenant) for i, info in live], "has_more": False}
