"""Datasets: streamed uploads, listing, reading and deleting."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request, Response, status
from fastapi.concurrency import run_in_threadpool

from service.deps import PageDep, SettingsDep, StoresDep, TenantDep
from service.multipart import receive_upload
from service.problems import Problem, not_found
from service.schemas import DatasetList, DatasetOut, DatasetUpload, ProblemOut
from thaw.uploads import (
    DatasetQuotaExceeded,
    check_dataset_quota,
    remove_dataset_files,
    store_upload,
)

router = APIRouter(prefix="/v1/datasets", tags=["datasets"])

PROBLEM = {"model": ProblemOut, "content": {"application/problem+json": {}}}


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    response_model=DatasetOut,
    summary="Upload a dataset",
    description="multipart/form-data with a `file` part: a .zip/.tar.gz/.tgz image folder "
    "(one subfolder per class, optional train/ and val/) or a .csv/.jsonl file with `text` and "
    "`label`; an optional `name` part. Validated before it is stored.",
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {"multipart/form-data": {"schema": DatasetUpload.model_json_schema()}},
        }
    },
    responses={413: PROBLEM, 415: PROBLEM, 422: PROBLEM},
)
async def upload_dataset(
    request: Request,
    response: Response,
    settings: SettingsDep,
    stores: StoresDep,
    tenant: TenantDep,
) -> dict[str, Any]:
    try:
        await run_in_threadpool(check_dataset_quota, stores.datasets, tenant, settings)
        form = await receive_upload(request, settings)
        assert form.spool is not None and form.filename is not None
        try:
            dataset = await run_in_threadpool(
                store_upload,
                form.spool,
                filename=form.filename,
                name=form.name,
                tenant=tenant,
                settings=settings,
                datasets=stores.datasets,
            )
        finally:
            form.spool.discard()
    except DatasetQuotaExceeded as exc:
        raise _quota_problem(exc) from exc
    response.headers["Location"] = f"/v1/datasets/{dataset.id}"
    return dataset.public_dict()


def _quota_problem(exc: DatasetQuotaExceeded) -> Problem:
    return Problem(
        exc.status,
        exc.detail,
        code=exc.code,
        headers={"Retry-After": str(exc.retry_after_s)},
    )


@router.get("", response_model=DatasetList, summary="List datasets, newest first")
def list_datasets(stores: StoresDep, tenant: TenantDep, page: PageDep) -> dict[str, Any]:
    datasets, has_more = stores.datasets.list(tenant, limit=page.limit, after=page.after)
    return {"data": [d.public_dict() for d in datasets], "has_more": has_more}


@router.get(
    "/{dataset_id}", response_model=DatasetOut, summary="Read a dataset", responses={404: PROBLEM}
)
def get_dataset(dataset_id: str, stores: StoresDep, tenant: TenantDep) -> dict[str, Any]:
    dataset = stores.datasets.get(dataset_id, tenant)
    if dataset is None:
        raise not_found("dataset", dataset_id)
    return dataset.public_dict()


@router.delete(
    "/{dataset_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    summary="Delete a dataset and its files",
    responses={404: PROBLEM},
)
def delete_dataset(
    dataset_id: str, stores: StoresDep, tenant: TenantDep, settings: SettingsDep
) -> Response:
    dataset = stores.datasets.delete(dataset_id, tenant)
    if dataset is None:
        raise not_found("dataset", dataset_id)
    remove_dataset_files(settings, dataset.id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)
