"""What a caller asks of a checkpoint: the bodies of evaluations, predictions and exports."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from thaw.checkpoints.layout import NAME_PATTERN
from thaw.store.datasets import DATASET_ID

CheckpointName = Annotated[
    str,
    Field(
        pattern=NAME_PATTERN,
        max_length=20,
        description="`best`, `last` or `epoch-<k>` such as `epoch-3`.",
    ),
]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class DatasetChoice(_Strict):
    """An uploaded dataset (`id`), or the job's own validation part (`split`)."""

    id: str | None = Field(default=None, pattern=DATASET_ID.pattern, max_length=67)
    split: Literal["validation"] | None = None

    @model_validator(mode="after")
    def _one(self) -> DatasetChoice:
        if (self.id is None) == (self.split is None):
            raise ValueError('give either {"id": "ds_..."} or {"split": "validation"}')
        return self


class EvaluationRequest(_Strict):
    checkpoint: CheckpointName = "best"
    dataset: DatasetChoice = Field(default_factory=lambda: DatasetChoice(split="validation"))


class ExportRequest(_Strict):
    checkpoint: CheckpointName = "best"
    format: Literal["onnx"] = "onnx"


class PredictionOptions(_Strict):
    """The fields of an image prediction's form beside its files."""

    checkpoint: CheckpointName = "best"
    top_k: int = Field(default=5, ge=1, le=100)


class TextPredictionRequest(PredictionOptions):
    texts: list[str] = Field(min_length=1, description="At most THAW_MAX_PREDICTION_INPUTS.")
