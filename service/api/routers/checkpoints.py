"""A job's checkpoints: the list, and file downloads with ETag and Range."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Header, Response, status
from fastapi import Path as PathParam
from fastapi.responses import RedirectResponse, StreamingResponse

from service.api.deps import JobDep, SettingsDep
from service.api.openapi import V1_RESPONSES, problem_responses
from service.api.schemas import CheckpointList
from service.http.problems import Problem
from service.http.ranges import RangeNotSatisfiable, parse_range
from thaw.checkpoints import find_checkpoint_file, list_checkpoints, read_meta
from thaw.checkpoints.adapter import ADAPTER_DIR
from thaw.checkpoints.layout import NAME_PATTERN
from thaw.checkpoints.remote import (
    cached_checkpoint,
    presigned_file,
    store_checkpoints,
    store_run,
)
from thaw.checkpoints.store import checkpoint_file

router = APIRouter(prefix="/v1/jobs", tags=["checkpoints"], responses=V1_RESPONSES)

# A printable ASCII name with no slash or backslash, not starting with a dot.
FILE_PATTERN = r"^[\x20-\x2d\x30-\x5b\x5d-\x7e][\x20-\x2e\x30-\x5b\x5d-\x7e]*$"
_CHUNK = 1024 * 1024
_FILE_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {"content": {"application/octet-stream": {}}},
    206: {"description": "Partial content", "content": {"application/octet-stream": {}}},
    302: {"description": "With THAW_ARTIFACTS_PRESIGN_SECONDS: a presigned store URL"},
    304: {"description": "Not modified"},
    **problem_responses(
        404, 416, e400="A checkpoint or file name that is not one of the accepted forms."
    ),
}
CheckpointName = Annotated[
    str,
    PathParam(
        description="best, last or epoch-<k>; other forms are a 400.",
        json_schema_extra={"pattern": NAME_PATTERN},
    ),
]


@dataclass(frozen=True)
class Conditions:
    """What a download request asks for beyond the file: one byte range, and whether its
    copy (by ETag) is still current."""

    range: str | None
    if_none_match: str | None
    if_range: str | None


def download_conditions(
    range_: Annotated[str | None, Header(alias="range")] = None,
    if_none_match: Annotated[str | None, Header()] = None,
    if_range: Annotated[str | None, Header()] = None,
) -> Conditions:
    return Conditions(range_, if_none_match, if_range)


ConditionsDep = Annotated[Conditions, Depends(download_conditions)]


@router.get(
    "/{job_id}/checkpoints",
    response_model=CheckpointList,
    summary="List a job's checkpoints",
    responses=problem_responses(404),
)
def get_checkpoints(job: JobDep, settings: SettingsDep) -> CheckpointList:
    remote = store_run(settings, job.id)
    if remote is not None:
        infos = store_checkpoints(remote)
    else:
        infos = list_checkpoints(settings.jobs_dir / job.id)
    return CheckpointList.model_validate({"data": [info.to_dict() for info in reversed(infos)]})


@router.get(
    "/{job_id}/checkpoints/{name}/{file}",
    summary="Download a checkpoint file",
    description="`name` is `best`, `last` or `epoch-<k>`. The ETag is the file's sha256; "
    "`If-None-Match` answers 304 and a single `Range` answers 206.",
    response_class=Response,
    responses=_FILE_RESPONSES,
)
def download_checkpoint_file(
    job: JobDep,
    settings: SettingsDep,
    name: CheckpointName,
    file: Annotated[
        str,
        PathParam(
            description="A file the checkpoint lists: model.safetensors, config.json, ...",
            json_schema_extra={"pattern": FILE_PATTERN},
        ),
    ],
    asked: ConditionsDep,
) -> Response:
    remote = store_run(settings, job.id)
    if remote is not None and settings.artifacts_presign_seconds:
        signed = presigned_file(remote, name, file, settings.artifacts_presign_seconds)
        if signed is not None:
            url, sha256 = signed
            return RedirectResponse(url, status.HTTP_302_FOUND, headers={"ETag": f'"{sha256}"'})
    if remote is None:
        path = find_checkpoint_file(settings.jobs_dir / job.id, name, file)
    else:
        path = checkpoint_file(cached_checkpoint(remote, settings, job.id, name), name, file)
    folder = path.parents[file.count("/")]  # the checkpoint's own, above adapter/
    listed = {f.name: f for f in read_meta(folder).files}
    etag = f'"{listed[file].sha256}"'
    headers = {"ETag": etag, "Accept-Ranges": "bytes", "Cache-Control": "private, no-cache"}
    if asked.if_none_match and _matches(asked.if_none_match, etag):
        return Response(status_code=status.HTTP_304_NOT_MODIFIED, headers=headers)
    size = path.stat().st_size
    media = "application/json" if file.endswith(".json") else "application/octet-stream"
    use_range = asked.if_range is None or asked.if_range.strip() == etag
    try:
        span = parse_range(asked.range, size) if use_range else None
    except RangeNotSatisfiable as exc:
        raise Problem(
            416,
            f"the range {asked.range!r} is outside the file's {exc.size} bytes",
            code="range_not_satisfiable",
            headers={"Content-Range": f"bytes */{exc.size}", **headers},
        ) from exc
    headers["Content-Disposition"] = f'attachment; filename="{file.rpartition("/")[2]}"'
    if span is None:
        headers["Content-Length"] = str(size)
        return StreamingResponse(_read_span(path, 0, size - 1), media_type=media, headers=headers)
    start, end = span
    headers["Content-Range"] = f"bytes {start}-{end}/{size}"
    headers["Content-Length"] = str(end - start + 1)
    return StreamingResponse(
        _read_span(path, start, end),
        status_code=status.HTTP_206_PARTIAL_CONTENT,
        media_type=media,
        headers=headers,
    )


@router.get(
    "/{job_id}/checkpoints/{name}/adapter/{file}",
    summary="Download a file of a lora checkpoint's adapter",
    description="The files of `adapter/` (PEFT's layout: adapter_config.json, "
    "adapter_model.safetensors) of a job trained with freeze.method lora; as for any "
    "checkpoint file, with ETag and Range.",
    response_class=Response,
    responses=_FILE_RESPONSES,
)
def download_adapter_file(
    job: JobDep,
    settings: SettingsDep,
    name: CheckpointName,
    file: Annotated[
        str,
        PathParam(
            description="adapter_config.json or adapter_model.safetensors",
            json_schema_extra={"pattern": FILE_PATTERN},
        ),
    ],
    asked: ConditionsDep,
) -> Response:
    return download_checkpoint_file(job, settings, name, f"{ADAPTER_DIR}/{file}", asked)


def _matches(header: str, etag: str) -> bool:
    if header.strip() == "*":
        return True
    tags = (tag.strip().removeprefix("W/") for tag in header.split(","))
    return etag in tags


def _read_span(path: Path, start: int, end: int) -> Iterator[bytes]:
    with open(path, "rb") as f:
        f.seek(start)
        left = end - start + 1
        while left > 0:
            chunk = f.read(min(_CHUNK, left))
            if not chunk:
                return
            left -= len(chunk)
            yield chunk
