"""ONNX exports of a job's checkpoint, produced and checked on a worker, and their files."""

from __future__ import annotations

from typing import Annotated

from fastapi import Body, Response, status
from fastapi import Path as PathParam
from fastapi.responses import FileResponse, RedirectResponse

from service.api.checkpoint_tasks import (
    checked_checkpoint,
    queued,
    task_id_param,
    task_router,
    tenant_task,
)
from service.api.deps import JobDep, SendTaskDep, SettingsDep, StoresDep, TenantDep
from service.api.openapi import problem_responses
from service.api.schemas import CheckpointTaskOut
from service.http.problems import Problem
from thaw.inference.requests import ExportRequest
from thaw.inference.task_files import export_file, export_url
from thaw.job_status import TaskStatus

router = task_router("export")

ExportId = task_id_param("export")


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
) -> CheckpointTaskOut:
    folder, _ = checked_checkpoint(settings, job, body.checkpoint)
    return queued(stores, send, response, kind="export", tenant=tenant, job=job,
                  folder=folder, request=body.model_dump())  # fmt: skip


@router.get(
    "/v1/exports/{export_id}/files/{file}",
    summary="Download an export's file",
    description="A file the export lists (`model.onnx`, `config.json`, ...). The ETag is its "
    "sha256; Range and If-Range work as for any static file. With an object store the file "
    "is served from it (302 to a presigned URL with THAW_ARTIFACTS_PRESIGN_SECONDS).",
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
    if task.status != TaskStatus.SUCCEEDED or not task.result:
        raise Problem(409, f"export {task.id} is {task.status}", code="export_not_ready")
    listed = {f["name"]: f for f in task.result.get("files", [])}
    if file not in listed:
        raise Problem(
            404,
            f"export {task.id} has no file {file!r}; files: {', '.join(listed)}",
            code="file_not_found",
        )
    etag = f'"{listed[file]["sha256"]}"'
    if settings.artifacts_presign_seconds:
        url = export_url(settings, task, file, settings.artifacts_presign_seconds)
        if url is not None:
            return RedirectResponse(url, status.HTTP_302_FOUND, headers={"ETag": etag})
    path = export_file(settings, task, file)
    if path.is_symlink() or not path.is_file():
        raise Problem(404, f"file {file!r} of export {task.id} is missing", code="file_not_found")
    media = "application/json" if file.endswith(".json") else "application/octet-stream"
    return FileResponse(
        path,
        media_type=media,
        filename=file,
        headers={"Cache-Control": "private, no-cache", "ETag": etag},
    )
