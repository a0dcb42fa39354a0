"""Jobs: submit, list, read, cancel, delete, and the per-layer trainable status."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Header, Query, Response, status

from service.api.deps import (
    EnqueueDep,
    JobDep,
    SettingsDep,
    SpecDep,
    SpecPoolDep,
    StoresDep,
    TenantDep,
)
from service.api.openapi import V1_RESPONSES, problem_responses
from service.api.schemas import (
    JobList,
    JobOut,
    LayerEpochOut,
    LayerStatusOut,
)
from service.http.finite import finite
from service.http.paging import paging
from service.http.problems import Problem, not_found
from thaw.freezing.layer_rows import layer_status
from thaw.job_ids import JOB_ID
from thaw.job_status import JobStatus
from thaw.run_files import remove_job_files
from thaw.store import Job
from thaw.submit import submit_job

router = APIRouter(prefix="/v1/jobs", tags=["jobs"], responses=V1_RESPONSES)

JobPageDep = paging(JOB_ID.pattern, "job_0123456789abcdef01234567", 28)


def job_out(job: Job) -> JobOut:
    body = finite(job.to_dict())
    for private in ("tenant", "lease_expires_at"):
        body.pop(private, None)
    base = f"/v1/jobs/{job.id}"
    body["links"] = {
        "self": base,
        "events": f"{base}/events",
        "layers": f"{base}/layers",
        "checkpoints": f"{base}/checkpoints",
        "evaluations": f"{base}/evaluations",
        "predictions": f"{base}/predictions",
        "exports": f"{base}/exports",
        "cancel": f"{base}/cancel",
        "metrics": f"{base}/metrics",
        "tensorboard": f"{base}/tensorboard",
    }
    return JobOut.model_validate(body)


@router.post(
    "",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=JobOut,
    summary="Submit a job",
    responses={
        200: {"model": JobOut, "description": "A repeat of an earlier Idempotency-Key request."},
        **problem_responses(
            413,
            422,
            e429="Too many queued jobs for this key (THAW_MAX_QUEUED_JOBS_PER_TENANT).",
            e503="The job store is unreachable, or resolving the spec took longer than "
            "THAW_PLAN_TIMEOUT_SECONDS (`spec_timeout`).",
        ),
    },
)
async def create_job(
    spec: SpecDep,
    response: Response,
    settings: SettingsDep,
    stores: StoresDep,
    tenant: TenantDep,
    enqueue: EnqueueDep,
    pool: SpecPoolDep,
    idempotency_key: Annotated[
        str | None,
        Header(
            min_length=1,
            max_length=255,
            description="Repeat a submit safely: the same key and body return the same job.",
        ),
    ] = None,
) -> JobOut:
    submission = await pool.run(
        submit_job,
        spec,
        tenant=tenant,
        settings=settings,
        jobs=stores.jobs,
        datasets=stores.datasets,
        idempotency_key=idempotency_key,
        enqueue=enqueue,
    )
    if not submission.created:
        response.status_code = status.HTTP_200_OK
    response.headers["Location"] = f"/v1/jobs/{submission.job.id}"
    return job_out(submission.job)


@router.get(
    "",
    response_model=JobList,
    summary="List jobs, newest first",
    responses=problem_responses(422),
)
def list_jobs(
    stores: StoresDep,
    tenant: TenantDep,
    page: JobPageDep,
    status_: Annotated[JobStatus | None, Query(alias="status")] = None,
) -> JobList:
    jobs, has_more = stores.jobs.list(tenant, status=status_, limit=page.limit, after=page.after)
    return JobList(data=[job_out(j) for j in jobs], has_more=has_more)


@router.get(
    "/{job_id}", response_model=JobOut, summary="Read a job", responses=problem_responses(404)
)
def get_job(job: JobDep) -> JobOut:
    return job_out(job)


@router.post(
    "/{job_id}/cancel",
    response_model=JobOut,
    summary="Cancel a job",
    description="A queued job is cancelled at once; a running one stops at its next step "
    "and keeps its last checkpoint; a finished job is returned as it is.",
    responses=problem_responses(404),
)
def cancel_job(job: JobDep, stores: StoresDep, tenant: TenantDep) -> JobOut:
    cancelled = stores.jobs.request_cancel(job.id, tenant)
    if cancelled is None:
        raise not_found("job", job.id)
    return job_out(cancelled)


@router.delete(
    "/{job_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    summary="Delete a finished job and its artifacts",
    responses=problem_responses(404, e409="The job is queued or running."),
)
def delete_job(
    job: JobDep, stores: StoresDep, tenant: TenantDep, settings: SettingsDep
) -> Response:
    if not stores.jobs.delete(job.id, tenant):
        raise not_found("job", job.id)
    stores.tasks.delete_for_job(job.id)
    remove_job_files(settings, job.id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.get(
    "/{job_id}/layers",
    response_model=LayerStatusOut | LayerEpochOut,
    response_model_exclude_unset=True,
    summary="Per-layer trainable status",
    description="Every epoch as recorded by the worker from the live model (`source: "
    "recorded`), else as planned. With `?epoch=N` one epoch's entry (`LayerEpochOut`).",
    responses=problem_responses(404, 422),
)
def get_layers(
    job: JobDep,
    stores: StoresDep,
    epoch: Annotated[int | None, Query(ge=1, le=10_000)] = None,
    detail: Annotated[
        Literal["params"] | None, Query(description="`params` adds each layer's parameters.")
    ] = None,
) -> LayerStatusOut | LayerEpochOut:
    stored = stores.jobs.load_layer_status(job.id)
    if not stored:
        raise Problem(404, f"job {job.id} has no layer status yet", code="layers_not_found")
    status_ = layer_status(stored, epoch=epoch, detail=detail == "params")
    shape = LayerEpochOut if epoch is not None else LayerStatusOut
    return shape.model_validate(status_)
