"""What the evaluation, prediction and export routes share: the checked checkpoint, the
record's public shape, the tenant's record by id, and one router per kind that lists a job's
records and reads one (each kind's module adds its own create route)."""

from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Response
from fastapi import Path as PathParam

from service.api.deps import JobDep, StoresDep, TenantDep
from service.api.openapi import V1_RESPONSES, problem_responses
from service.api.schemas import CheckpointTaskList, CheckpointTaskOut
from service.api.stores import Stores
from service.http.finite import finite
from service.http.problems import Problem, not_found
from thaw.checkpoints import CheckpointError, read_config
from thaw.checkpoints.lookup import checkpoint_copy, checkpoint_names
from thaw.dispatch import SendTask
from thaw.settings import Settings
from thaw.store import Job
from thaw.store.checkpoint_tasks import TASK_ID, CheckpointTask, TaskKind

ROUTES = {"evaluation": "evaluations", "prediction": "predictions", "export": "exports"}


def checked_checkpoint(settings: Settings, job: Job, name: str) -> tuple[Path, dict[str, Any]]:
    """The folder of the job's checkpoint ``name`` and its rebuild record; a 422 naming
    ``checkpoint`` and the job's checkpoints when there is none by that name. With an
    object store the name is resolved through its index and the checkpoint read through."""
    try:
        folder = checkpoint_copy(settings, job.id, name)
        return folder, read_config(folder)
    except CheckpointError as exc:
        names = checkpoint_names(settings, job.id)
        has = ", ".join(names) if names else "none yet"
        message = f"job {job.id} has no checkpoint {name!r}"
        hint = f"use best, last or one of: {has}"
        raise Problem(
            422,
            f"checkpoint: {message} ({hint})",
            code="invalid_checkpoint",
            title="Invalid request",
            errors=[{"loc": "checkpoint", "message": message, "hint": hint, "closest": names}],
        ) from exc


def task_out(task: CheckpointTask) -> CheckpointTaskOut:
    body = task.public_dict()
    self_url = f"/v1/{ROUTES[task.kind]}/{task.id}"
    body["links"] = {"self": self_url, "job": f"/v1/jobs/{task.job_id}"}
    if task.kind == "export" and task.result:
        for f in task.result.get("files", []):
            body["links"][f["name"]] = f"{self_url}/files/{f['name']}"
    return CheckpointTaskOut.model_validate(finite(body))


def tenant_task(stores: Stores, kind: TaskKind, task_id: str, tenant: str) -> CheckpointTask:
    task = stores.tasks.get(task_id, tenant) if TASK_ID[kind].match(task_id) else None
    if task is None or task.kind != kind:
        raise not_found(kind, task_id)
    return task


def queued(
    stores: Stores,
    send: SendTask,
    response: Response,
    *,
    kind: TaskKind,
    tenant: str,
    job: Job,
    folder: Path,
    request: dict[str, Any],
) -> CheckpointTaskOut:
    """A new record of ``kind`` on the checkpoint in ``folder``, sent to the workers;
    ``Location`` is the record to poll."""
    task = stores.tasks.create(kind, tenant, job.id, folder.name, request)
    send(kind, task.id, None)
    response.headers["Location"] = f"/v1/{ROUTES[kind]}/{task.id}"
    return task_out(task)


def task_id_param(kind: TaskKind) -> Any:
    """The ``{<kind>_id}`` path parameter: a record id of this kind; any other form is a 404."""
    return Annotated[
        str, PathParam(alias=f"{kind}_id", json_schema_extra={"pattern": TASK_ID[kind].pattern})
    ]


def task_router(kind: TaskKind) -> APIRouter:
    """``GET /v1/jobs/{job_id}/<kinds>`` and ``GET /v1/<kinds>/{<kind>_id}`` for one kind."""
    plural = ROUTES[kind]
    router = APIRouter(tags=[plural], responses=V1_RESPONSES)
    task_id = task_id_param(kind)

    @router.get(
        f"/v1/jobs/{{job_id}}/{plural}",
        name=f"list_{plural}",
        response_model=CheckpointTaskList,
        summary=f"List a job's {plural}, newest first",
        responses=problem_responses(404),
    )
    def list_tasks(job: JobDep, stores: StoresDep) -> CheckpointTaskList:
        return CheckpointTaskList(data=[task_out(t) for t in stores.tasks.list(job.id, kind)])

    @router.get(
        f"/v1/{plural}/{{{kind}_id}}",
        name=f"get_{kind}",
        response_model=CheckpointTaskOut,
        summary=f"Read {'an' if kind[0] in 'aeiou' else 'a'} {kind}",
        responses=problem_responses(404),
    )
    def get_task(task_id: task_id, stores: StoresDep, tenant: TenantDep) -> CheckpointTaskOut:
        return task_out(tenant_task(stores, kind, task_id, tenant))

    return router
