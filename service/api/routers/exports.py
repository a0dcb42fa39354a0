"""ONNX exports of a job's checkpoint, produced and checked on a worker, and their files."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Body, Response, status
from fastapi import Path as PathParam
from fastapi.responses import FileResponse

from service.api.checkpoint_tasks import checked_checkpoint, listing, task_out, tenant_task
from service.api.deps import JobDep, SendTaskDep, SettingsDep, StoresDep, TenantDep
from service.api.openapi import V1_RESPONSES, problem_responses
from service.api.schemas import CheckpointTaskList, CheckpointTaskOut
from service.http.finite import finite
from service.http.problems import Problem
from thaw.inference.requests import ExportRequest
from thaw.inference.tasks import task_dir
from thaw.store.checkpoint_tasks import TASK_ID

router = APIRouter(tags=["exports"], responses=V1_RESPONSES)

ExportId = Annotated[str, PathParam(json_schema_extra={"pattern": TASK_ID["export"].pattern})]


@router.post(
    "/v1/jobs/{job_id}/exports",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=CheckpointTaskOut,
    summary="Export a checkpoint to ONNX",
    description="Queues the export for a worker, which checks it in onnxruntime against "
    "PyTorch (`result.max_abs_diff`); `Location` is the export to poll.",
    responses=problem_responses(404, 422),
)
def create_export(
    job: JobDep,
    body: Annotated[ExportRequest, Body(examples=[{"checkpoint": "best", "format": "onnx"}])],
    response: Response,
    settings: SettingsDep,
    stores: StoresDep,
    tenant: TenantDep,
    send: SendTaskDep,
) -> dict[str, Any]:
    folder, _ = checked_checkpoint(settings, job, body.checkpoint)
    task = stores.tasks.create("export", tenant, job.id, folder.name, body.model_dump())
    send("export", task.id, None)
    response.headers["Location"] = f"/v1/exports/{task.id}"
    return task_out(task)


@router.get(
    "/v1/jobs/{job_id}/exports",
    response_model=CheckpointTaskList,
    summary="List a job's exports, newest first",
    responses=problem_responses(404),
)
def list_exports(job: JobDep, stores: StoresDep) -> dict[str, Any]:
    return finite(listing(stores, job, "export"))


@router.get(
    "/v1/exports/{export_id}",
    response_model=CheckpointTaskOut,
    summary="Read an export",
    responses=problem_responses(404),
)
def get_export(export_id: ExportId, stores: StoresDep, tenant: TenantDep) -> dict[str, Any]:
    return finite(task_out(tenant_task(stores, "export", export_id, tenant)))


@router.get(
    "/v1/exports/{export_id}/files/{file}",
    summary="Download an export's file",
    description="A file the export lists (`model.onnx`, `config.json`, ...). The ETag is its "
    "sha256; Range and If-Range work as for any static file.",
    response_class=Response,
    responses={
        200: {"content": {"application/octet-stream": {}}},
        **problem_responses(404, e409="The export has not succeeded."),
    },
)
def download_export_file(
    export_id: ExportId,
    file: Annotated[str, PathParam(max_length=100)],
    settings: SettingsDep,
    stores: StoresDep,
    tenant: TenantDep,
) -> Response:
    task = tenant_task(stores, "export", export_id, tenant)
    if task.status != "succeeded" or not task.result:
        raise Problem(409, f"export {task.id} is {task.status}", code="export_not_ready")
    listed = {f["name"]: f for f in task.result.get("files", [])}
    if file not in listed:
        raise Problem(
            404,
            f"export {task.id} has no file {file!r}; files: {', '.join(listed)}",
            code="file_not_found",
        )
    path = task_dir(settings, task) / file
    if path.is_symlink() or not path.is_file():
        raise Problem(404, f"file {file!r} of export {task.id} is missing", code="file_not_found")
    media = "application/json" if file.endswith(".json") else "application/octet-stream"
    return FileResponse(
        path,
        media_type=media,
        filename=file,
        headers={"Cache-Control": "private, no-cache", "ETag": f'"{listed[file]["sha256"]}"'},
    )
