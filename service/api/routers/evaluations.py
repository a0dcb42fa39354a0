"""Evaluations of a job's checkpoint on a dataset, computed on a worker."""

from __future__ import annotations

from typing import Annotated

from fastapi import Body, Response, status

from service.api.checkpoint_tasks import checked_checkpoint, queued, task_router
from service.api.deps import JobDep, SendTaskDep, SettingsDep, StoresDep, TenantDep
from service.api.openapi import problem_responses
from service.api.schemas import CheckpointTaskOut
from service.http.problems import Problem
from thaw.inference.errors import check_classes
from thaw.inference.requests import EvaluationRequest

router = task_router("evaluation")

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
) -> CheckpointTaskOut:
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
    request = body.model_dump(exclude_none=True)
    return queued(stores, send, response, kind="evaluation", tenant=tenant, job=job,
                  folder=folder, request=request)  # fmt: skip
