"""Evaluations of a job's checkpoint on a dataset, computed on a worker."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Body, Response, status
from fastapi import Path as PathParam

from service.api.checkpoint_tasks import checked_checkpoint, listing, task_out, tenant_task
from service.api.deps import JobDep, SendTaskDep, SettingsDep, StoresDep, TenantDep
from service.api.openapi import V1_RESPONSES, problem_responses
from service.api.schemas import CheckpointTaskList, CheckpointTaskOut
from service.http.finite import finite
from service.http.problems import Problem
from thaw.inference.errors import check_classes
from thaw.inference.requests import EvaluationRequest
from thaw.store.checkpoint_tasks import TASK_ID

router = APIRouter(tags=["evaluations"], responses=V1_RESPONSES)

EXAMPLES = {
    "validation": {
        "summary": "The job's validation part",
        "value": {"checkpoint": "best", "dataset": {"split": "validation"}},
    },
    "upload": {
        "summary": "An uploaded test set",
        "value": {"checkpoint": "epoch-3", "dataset": {"id": "ds_0123456789abcdef01234567"}},
    },
}


@router.post(
    "/v1/jobs/{job_id}/evaluations",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=CheckpointTaskOut,
    summary="Evaluate a checkpoint",
    description="Queues the evaluation for a worker; `Location` is the evaluation to poll. "
    "A dataset with classes the checkpoint does not know is a 422 that names them.",
    responses=problem_responses(404, 422),
)
def create_evaluation(
    job: JobDep,
    body: Annotated[EvaluationRequest, Body(openapi_examples=EXAMPLES)],
    response: Response,
    settings: SettingsDep,
    stores: StoresDep,
    tenant: TenantDep,
    send: SendTaskDep,
) -> dict[str, Any]:
    folder, config = checked_checkpoint(settings, job, body.checkpoint)
    if body.dataset.id is not None:
        dataset = stores.datasets.get(body.dataset.id, tenant)
        if dataset is None:
            raise Problem(
                422,
                f"dataset.id: no dataset {body.dataset.id!r} (upload it with POST /v1/datasets)",
                code="invalid_dataset",
                title="Invalid request",
                errors=[{"loc": "dataset.id", "message": f"no dataset {body.dataset.id!r}",
                         "hint": "upload it with POST /v1/datasets", "closest": []}],
            )  # fmt: skip
        check_classes(dataset.classes, config["classes"])
    task = stores.tasks.create(
        "evaluation", tenant, job.id, folder.name, body.model_dump(exclude_none=True)
    )
    send("evaluation", task.id, None)
    response.headers["Location"] = f"/v1/evaluations/{task.id}"
    return task_out(task)


@router.get(
    "/v1/jobs/{job_id}/evaluations",
    response_model=CheckpointTaskList,
    summary="List a job's evaluations, newest first",
    responses=problem_responses(404),
)
def list_evaluations(job: JobDep, stores: StoresDep) -> dict[str, Any]:
    return finite(listing(stores, job, "evaluation"))


@router.get(
    "/v1/evaluations/{evaluation_id}",
    response_model=CheckpointTaskOut,
    summary="Read an evaluation",
    responses=problem_responses(404),
)
def get_evaluation(
    evaluation_id: Annotated[
        str, PathParam(json_schema_extra={"pattern": TASK_ID["evaluation"].pattern})
    ],
    stores: StoresDep,
    tenant: TenantDep,
) -> dict[str, Any]:
    return finite(task_out(tenant_task(stores, "evaluation", evaluation_id, tenant)))
