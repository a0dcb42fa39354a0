"""Plans: the dry run of a job spec, with nothing stored or trained."""

from __future__ import annotations

from fastapi import APIRouter

from service.api.deps import SettingsDep, SpecDep, SpecPoolDep, StoresDep, TenantDep
from service.api.openapi import V1_RESPONSES, problem_responses
from service.api.schemas import PlanOut
from service.api.stores import Stores
from thaw.data.shape import UploadLookup
from thaw.settings import Settings
from thaw.spec import JobSpec
from thaw.submit import plan_spec
from thaw.uploads import tenant_uploads

router = APIRouter(prefix="/v1/plans", tags=["plans"], responses=V1_RESPONSES)


@router.post(
    "",
    response_model=PlanOut,
    response_model_exclude_unset=True,
    summary="Plan a job spec",
    description="The resolved trainable table for every epoch, the layer groups and any "
    "warnings; the same row shape as GET /v1/jobs/{id}/layers.",
    responses=problem_responses(
        413,
        422,
        e503="The job store is unreachable, or resolving the spec took longer than "
        "THAW_PLAN_TIMEOUT_SECONDS (`spec_timeout`).",
    ),
)
async def create_plan(
    spec: SpecDep,
    settings: SettingsDep,
    stores: StoresDep,
    tenant: TenantDep,
    pool: SpecPoolDep,
) -> PlanOut:
    uploads = tenant_uploads(stores.datasets, tenant)
    return await pool.run(_plan, spec, settings, uploads, stores, tenant)


def _plan(
    spec: JobSpec, settings: Settings, uploads: UploadLookup, stores: Stores, tenant: str
) -> PlanOut:
    table = plan_spec(spec, settings, uploads=uploads, jobs=stores.jobs, tenant=tenant)
    return PlanOut.model_validate(table)
