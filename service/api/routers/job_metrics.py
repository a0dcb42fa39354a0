"""A job's curves for other tools: metrics as JSON or CSV, TensorBoard files as .tar.gz."""

from __future__ import annotations

import os
import tarfile
import tempfile
from typing import Annotated, Literal

from fastapi import APIRouter, Query, Response
from fastapi.responses import FileResponse, JSONResponse
from starlette.background import BackgroundTask

from service.api.deps import JobDep, SettingsDep, StoresDep
from service.api.openapi import V1_RESPONSES, problem_responses
from service.http.finite import finite
from service.http.problems import Problem
from thaw.metrics_export import collect, read_all, to_csv
from thaw.training.tensorboard import TENSORBOARD_DIR

router = APIRouter(prefix="/v1/jobs", tags=["jobs"], responses=V1_RESPONSES)


@router.get(
    "/{job_id}/metrics",
    summary="The job's curves as JSON or CSV",
    description="From the stored events: per reported step the loss and the lr of each "
    "optimizer group, per epoch the validation metrics with the phase and trainable "
    "counts, and each thaw. CSV: one row per step, epoch and thaw, `kind` saying which.",
    responses={
        200: {
            "content": {"application/json": {}, "text/csv": {}},
            "description": "The export.",
        },
        **problem_responses(404, 422),
    },
)
def get_metrics(
    job: JobDep,
    stores: StoresDep,
    format: Annotated[Literal["json", "csv"], Query(description="json or csv")] = "json",
) -> Response:
    export = collect(read_all(stores.events, job.id), stores.jobs.load_layer_status(job.id))
    if format == "csv":
        return Response(
            to_csv(export),
            media_type="text/csv; charset=utf-8",
            headers={"Content-Disposition": f'attachment; filename="{job.id}-metrics.csv"'},
        )
    return JSONResponse(finite(export.to_dict(job.id)))


@router.get(
    "/{job_id}/tensorboard",
    summary="The run's TensorBoard event files",
    description="A .tar.gz with one folder named for the job: unpack it and run "
    "`tensorboard --logdir .` to see the run.",
    response_class=FileResponse,
    responses={
        200: {"content": {"application/gzip": {}}, "description": "The archive."},
        **problem_responses(404),
    },
)
def get_tensorboard(job: JobDep, settings: SettingsDep) -> FileResponse:
    folder = settings.jobs_dir / job.id / TENSORBOARD_DIR
    files = sorted(p for p in folder.rglob("*") if p.is_file() and not p.is_symlink())
    if not files:
        raise Problem(
            404, f"job {job.id} has no TensorBoard files yet", code="tensorboard_not_found"
        )
    handle, path = tempfile.mkstemp(suffix=".tar.gz")
    try:
        with os.fdopen(handle, "wb") as out, tarfile.open(fileobj=out, mode="w:gz") as tar:
            for file in files:
                tar.add(file, arcname=f"{job.id}/{file.relative_to(folder)}", recursive=False)
    except BaseException:
        os.unlink(path)
        raise
    return FileResponse(
        path,
        media_type="application/gzip",
        filename=f"{job.id}-tensorboard.tar.gz",
        background=BackgroundTask(os.unlink, path),
    )
