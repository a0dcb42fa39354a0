"""The live training workers, from their heartbeats."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from service.api.deps import CallerDep, StoresDep
from service.api.openapi import V1_RESPONSES
from service.api.schemas import WorkerList, WorkerOut
from service.auth.keys import Caller

router = APIRouter(prefix="/v1", tags=["workers"], responses=V1_RESPONSES)


def runs_for(info: dict[str, Any], caller: Caller) -> bool:
    """Whether ``caller`` may see this worker: an admin sees every one, a tenant only those
    running one of its jobs."""
    job = info.get("job") or None
    return caller.admin or bool(job and job.get("tenant") == caller.tenant)


def worker_view(worker_id: str, info: dict[str, Any], caller: Caller) -> dict[str, Any]:
    """One heartbeat as the API shows it: the job to its own tenant or an admin."""
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
        "job": job["id"] if job and (caller.admin or job.get("tenant") == caller.tenant) else None,
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
    summary="Live workers running the caller's jobs: host, device, pin, job, speed and memory",
    description="A tenant sees only the workers that run one of its jobs; an admin key "
    "(THAW_ADMIN_KEYS) sees every worker.",
)
def list_workers(stores: StoresDep, caller: CallerDep) -> WorkerList:
    live = [(i, info) for i, info in stores.workers.live() if runs_for(info, caller)]
    return WorkerList(data=[WorkerOut.model_validate(worker_view(i, info, caller))
                            for i, info in live])  # fmt: skip
