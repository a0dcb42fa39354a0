"""Models: the sources this server offers, and one model's groups, layers and parameters."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Query

from service.api.deps import SettingsDep, SpecPoolDep, TenantDep
from service.api.openapi import V1_RESPONSES, problem_responses
from service.api.schemas import ModelLayersOut, ModelSources
from thaw.errors import SpecError
from thaw.freezing.model_layers import describe_model
from thaw.models import available_sources
from thaw.spec import NAME_MAX_LENGTH

PLAIN_NAME = r"^[^\x00-\x1f\x7f]+$"

router = APIRouter(prefix="/v1/models", tags=["models"], responses=V1_RESPONSES)


@router.get("", response_model=ModelSources, summary="Model sources and builders")
def list_models(_: TenantDep) -> ModelSources:
    return ModelSources.model_validate({"data": available_sources()})


@router.get(
    "/layers",
    response_model=ModelLayersOut,
    summary="A model's layer groups, modules and parameter names",
    description="Built on the meta device (no weights); use the names in selectors.",
    responses=problem_responses(
        422,
        e503="The job store is unreachable, or building the model took longer than "
        "THAW_PLAN_TIMEOUT_SECONDS (`spec_timeout`).",
    ),
)
async def model_layers(
    _: TenantDep,
    settings: SettingsDep,
    pool: SpecPoolDep,
    source: Annotated[Literal["torchvision", "timm", "huggingface"], Query()],
    name: Annotated[str, Query(min_length=1, max_length=NAME_MAX_LENGTH, pattern=PLAIN_NAME)],
    num_classes: Annotated[int, Query(ge=2, le=100_000)] = 10,
) -> ModelLayersOut:
    try:
        described = await pool.run(describe_model, source, name, num_classes, settings)
    except SpecError as exc:
        exc.loc = tuple(part for part in exc.loc if part != "base_model")
        raise
    return ModelLayersOut.model_validate(described)
