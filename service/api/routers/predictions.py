"""Predictions of a job's checkpoint on a few images or texts, computed on a worker within
a deadline."""

from __future__ import annotations

import math
from typing import Any

from fastapi import Request
from fastapi.concurrency import run_in_threadpool
from pydantic import ValidationError
from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException

from service.api.checkpoint_tasks import checked_checkpoint, task_out, task_router
from service.api.deps import JobDep, SendTaskDep, SettingsDep, StoresDep, TenantDep
from service.api.openapi import problem_responses
from service.api.schemas import CheckpointTaskOut
from service.http.problems import Problem
from thaw.errors import InvalidInput
from thaw.inference.requests import PredictionOptions, TextPredictionRequest
from thaw.inference.task_files import remove_task_files, store_inputs
from thaw.job_status import TaskStatus
from thaw.settings import Settings

router = task_router("prediction")

_MULTIPART = "multipart/form-data"
_REQUEST_BODY = {
    "required": True,
    "content": {
        "application/json": {
            "schema": TextPredictionRequest.model_json_schema(),
            "example": {"checkpoint": "best", "texts": ["great product"], "top_k": 3},
        },
        _MULTIPART: {
            "schema": {
                "type": "object",
                "required": ["files"],
                "properties": {
                    "files": {"type": "array", "items": {"type": "string", "format": "binary"}},
                    "checkpoint": {"type": "string", "default": "best"},
                    "top_k": {"type": "integer", "default": 5, "minimum": 1, "maximum": 100},
                },
            }
        },
    },
}


def _invalid(loc: str, message: str, hint: str) -> InvalidInput:
    return InvalidInput([{"loc": loc, "message": message, "hint": hint, "closest": []}])


async def _image_form(request: Request, settings: Settings) -> tuple[dict[str, Any], list[bytes]]:
    limit = settings.max_prediction_bytes
    length = request.headers.get("content-length")
    if length is None or not length.isdigit():
        raise Problem(411, "send the images with a Content-Length", code="length_required")
    if int(length) > limit:
        raise Problem(
            413,
            f"the request body is larger than {limit} bytes (THAW_MAX_PREDICTION_BYTES); send "
            "fewer or smaller images",
            code="body_too_large",
            limit=limit,
        )
    try:
        form = await request.form(max_files=settings.max_prediction_inputs + 1, max_fields=10)
    except HTTPException as exc:  # starlette's answer to too many parts or a broken body
        raise _invalid(
            "files",
            str(exc.detail),
            f"send at most {settings.max_prediction_inputs} files "
            "(THAW_MAX_PREDICTION_INPUTS) and only the fields files, checkpoint, top_k",
        ) from exc
    try:
        uploads = [f for f in form.getlist("files") if isinstance(f, UploadFile)]
        fields = {k: v for k, v in form.items() if isinstance(v, str)}
        unknown = sorted(set(form.keys()) - {"files", "checkpoint", "top_k"})
        if unknown:
            raise _invalid(unknown[0], "is not a field here", "send files, checkpoint, top_k")
        if not uploads:
            raise _invalid("files", "no image files", "send one or more 'files' parts")
        if len(uploads) > settings.max_prediction_inputs:
            raise _invalid(
                "files",
                f"{len(uploads)} files; at most {settings.max_prediction_inputs}",
                "send fewer (THAW_MAX_PREDICTION_INPUTS)",
            )
        try:
            checked = PredictionOptions.model_validate(fields)
        except ValidationError as exc:
            raise InvalidInput.from_validation(exc.errors()) from exc
        names = [(f.filename or f"file {i + 1}")[:200] for i, f in enumerate(uploads)]
        contents = [await f.read() for f in uploads]
    finally:
        await form.close()
    return {"checkpoint": checked.checkpoint, "top_k": checked.top_k, "files": names}, contents


async def _text_body(request: Request, settings: Settings) -> dict[str, Any]:
    try:
        body = TextPredictionRequest.model_validate_json(await request.body())
    except ValidationError as exc:
        raise InvalidInput.from_validation(exc.errors()) from exc
    if len(body.texts) > settings.max_prediction_inputs:
        raise _invalid(
            "texts",
            f"{len(body.texts)} texts; at most {settings.max_prediction_inputs}",
            "send fewer (THAW_MAX_PREDICTION_INPUTS)",
        )
    for i, text in enumerate(body.texts):
        if len(text) > settings.max_prediction_text_chars:
            raise _invalid(
                f"texts[{i}]",
                f"{len(text)} characters; at most {settings.max_prediction_text_chars}",
                "shorten it (THAW_MAX_PREDICTION_TEXT_CHARS)",
            )
    return body.model_dump()


@router.post(
    "/v1/jobs/{job_id}/predictions",
    response_model=CheckpointTaskOut,
    summary="Predict on a few images or texts",
    description="A JSON body with `texts`, or multipart `files` (images) with optional "
    "`checkpoint` and `top_k` fields. A worker answers within "
    "THAW_PREDICTION_TIMEOUT_SECONDS, else 503 with `Retry-After` and the prediction's "
    "`Location`.",
    openapi_extra={"requestBody": _REQUEST_BODY},
    responses=problem_responses(
        404,
        413,
        415,
        422,
        e503="No worker answered in time (or the job store is unreachable); retry later.",
    ),
)
async def create_prediction(
    request: Request,
    job: JobDep,
    settings: SettingsDep,
    stores: StoresDep,
    tenant: TenantDep,
    send: SendTaskDep,
) -> CheckpointTaskOut:
    media = request.headers.get("content-type", "").lower()
    images: list[bytes] = []
    if media.startswith(_MULTIPART):
        body, images = await _image_form(request, settings)
    elif media.startswith("application/json"):
        body = await _text_body(request, settings)
    else:
        raise Problem(
            415,
            "send application/json with texts, or multipart/form-data with image files",
            code="unsupported_media_type",
        )
    folder, config = checked_checkpoint(settings, job, body["checkpoint"])
    modality = config.get("modality", "image")
    if (modality == "text") != ("texts" in body):
        field, wants = ("files", "texts") if modality == "text" else ("texts", "image files")
        raise _invalid(field, f"this checkpoint classifies {modality}s", f"send {wants}")
    if images:
        body["stored"] = [f"{i:04d}" for i in range(len(images))]
    task = stores.tasks.create("prediction", tenant, job.id, folder.name, body)
    if images:
        store_inputs(settings, task, dict(zip(body["stored"], images, strict=True)))
    timeout = settings.prediction_timeout_seconds
    send("prediction", task.id, timeout)
    done = await run_in_threadpool(stores.tasks.wait, task.id, timeout)
    location = f"/v1/predictions/{task.id}"
    if done is None:
        if stores.tasks.expire(task.id):
            remove_task_files(settings, task)
        raise Problem(
            503,
            f"no worker answered within {timeout:g} s (THAW_PREDICTION_TIMEOUT_SECONDS); the "
            "workers are busy or down, retry later",
            code="prediction_timeout",
            headers={"Retry-After": str(math.ceil(timeout)), "Location": location},
        )
    if done.status == TaskStatus.FAILED and done.error:
        error = dict(done.error)
        status = int(error.pop("status", 500))
        raise Problem(
            status if 400 <= status < 600 else 500,
            str(error.pop("message", "the prediction failed")),
            code=str(error.pop("code", "prediction_failed")),
            **{k: v for k, v in error.items() if k not in ("type", "title", "detail")},
        )
    if done.status != TaskStatus.SUCCEEDED:
        raise Problem(503, f"prediction {task.id} {done.status}", code="prediction_timeout",
                      headers={"Retry-After": str(math.ceil(timeout))})  # fmt: skip
    return task_out(done)
