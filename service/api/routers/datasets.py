"""Datasets: streamed uploads, listing, reading and deleting."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Request, Response, status
from fastapi.concurrency import run_in_threadpool

from service.api.deps import SettingsDep, StoresDep, TenantDep
from service.api.openapi import V1_RESPONSES, problem_responses
from service.api.schemas import (
    DatasetClass,
    DatasetClassPage,
    DatasetList,
    DatasetOut,
    DatasetSummary,
    DatasetUpload,
)
from service.http.multipart import receive_upload
from service.http.paging import paging
from service.http.problems import not_found
from thaw.artifacts import object_store
from thaw.store.datasets import DATASET_ID, Dataset
from thaw.store.errors import InvalidCursor
from thaw.uploads import (
    check_dataset_quota,
    existing_upload,
    remove_dataset_files,
    store_upload,
)

router = APIRouter(prefix="/v1/datasets", tags=["datasets"], responses=V1_RESPONSES)

DatasetPageDep = paging(DATASET_ID.pattern, "ds_0123456789abcdef01234567", 67)
ClassPageDep = paging(r"^.+$", "cat", 10_000, " Classes come in the dataset's class order.")
DatasetId = Annotated[
    str,
    Path(
        description="A dataset id such as ds_0123456789abcdef01234567; any other form is a 404.",
        json_schema_extra={"pattern": DATASET_ID.pattern},
    ),
]


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    response_model=DatasetOut,
    summary="Upload a dataset",
    description="multipart/form-data with a `file` part: a .zip/.tar.gz/.tgz image folder "
    "(one subfolder per class, optional train/ and val/) or a .csv/.jsonl file with `text` and "
    "`label`; an optional `name` part. Validated before it is stored. A file identical to "
    "one this key already uploaded answers 200 with that dataset instead of storing it again.",
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {"multipart/form-data": {"schema": DatasetUpload.model_json_schema()}},
        }
    },
    responses={
        200: {
            "model": DatasetOut,
            "description": "The same file was uploaded before: that dataset",
        },
        **problem_responses(
            408,
            413,
            415,
            422,
            e429="Over this key's dataset quota; `Retry-After` says when to retry.",
        ),
    },
)
async def upload_dataset(
    request: Request,
    response: Response,
    settings: SettingsDep,
    stores: StoresDep,
    tenant: TenantDep,
) -> DatasetOut:
    await run_in_threadpool(check_dataset_quota, stores.datasets, tenant, settings)
    form = await receive_upload(request, settings)
    assert form.spool is not None and form.filename is not None
    try:
        form.spool.close()
        existing = await run_in_threadpool(
            existing_upload, form.spool, tenant, settings, stores.datasets
        )
        if existing is not None:
            response.status_code = status.HTTP_200_OK
            return await run_in_threadpool(_created, existing, response)
        dataset = await run_in_threadpool(
            store_upload,
            form.spool,
            filename=form.filename,
            name=form.name,
            tenant=tenant,
            settings=settings,
            datasets=stores.datasets,
            store=object_store(settings),
        )
    finally:
        form.spool.discard()
    # Built off the event loop: a dataset carries up to THAW_MAX_CLASSES classes.
    return await run_in_threadpool(_created, dataset, response)


def _created(dataset: Dataset, response: Response) -> DatasetOut:
    response.headers["Location"] = f"/v1/datasets/{dataset.id}"
    return DatasetOut.model_validate(dataset.public_dict())


@router.get(
    "",
    response_model=DatasetList,
    summary="List datasets, newest first",
    description="Each entry is a summary with `num_classes`; the classes and their counts "
    "are on GET /v1/datasets/{id} and, paged, on GET /v1/datasets/{id}/classes.",
    responses=problem_responses(422),
)
def list_datasets(stores: StoresDep, tenant: TenantDep, page: DatasetPageDep) -> DatasetList:
    datasets, has_more = stores.datasets.list(tenant, limit=page.limit, after=page.after)
    summaries = [DatasetSummary.model_validate(d.summary_dict()) for d in datasets]
    return DatasetList(data=summaries, has_more=has_more)


@router.get(
    "/{dataset_id}",
    response_model=DatasetOut,
    summary="Read a dataset",
    responses=problem_responses(404),
)
def get_dataset(dataset_id: DatasetId, stores: StoresDep, tenant: TenantDep) -> DatasetOut:
    dataset = stores.datasets.get(dataset_id, tenant)
    if dataset is None:
        raise not_found("dataset", dataset_id)
    return DatasetOut.model_validate(dataset.public_dict())


@router.get(
    "/{dataset_id}/classes",
    response_model=DatasetClassPage,
    summary="A dataset's classes and their example counts, paged",
    responses=problem_responses(404, 422),
)
def list_dataset_classes(
    dataset_id: DatasetId, stores: StoresDep, tenant: TenantDep, page: ClassPageDep
) -> DatasetClassPage:
    dataset = stores.datasets.get(dataset_id, tenant)
    if dataset is None:
        raise not_found("dataset", dataset_id)
    start = 0
    if page.after is not None:
        try:
            start = dataset.classes.index(page.after) + 1
        except ValueError:
            raise InvalidCursor(page.after, "a class name of this dataset") from None
    names = dataset.classes[start : start + page.limit]
    return DatasetClassPage(
        data=[DatasetClass(name=n, count=dataset.class_counts.get(n, 0)) for n in names],
        has_more=start + page.limit < len(dataset.classes),
    )


@router.delete(
    "/{dataset_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    summary="Delete a dataset and its files",
    responses=problem_responses(404),
)
def delete_dataset(
    dataset_id: DatasetId, stores: StoresDep, tenant: TenantDep, settings: SettingsDep
) -> Response:
    dataset = stores.datasets.delete(dataset_id, tenant)
    if dataset is None:
        raise not_found("dataset", dataset_id)
    remove_dataset_files(settings, dataset, stores.datasets, object_store(settings))
    return Response(status_code=status.HTTP_204_NO_CONTENT)
