"""Request and response shapes of the API (pydantic v2), as the OpenAPI document shows them."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from thaw.freezing.layer_rows import LayerTrainable
from thaw.job_status import JobStatus, TaskStatus
from thaw.store.checkpoint_tasks import TaskKind
from thaw.webhooks import EVENT_TYPES
from thaw.webhooks.address import MAX_URL_CHARS

EXAMPLE_SPEC: dict[str, Any] = {
    "name": "digits-resnet18",
    "base_model": {"source": "torchvision", "name": "resnet18", "weights": None},
    "dataset": {"synthetic": {"num_classes": 10, "num_examples": 256}},
    "freeze": {
        "default": "frozen",
        "rules": [
            {"match": "layer4", "trainable": True},
            {"match": "fc", "trainable": True},
        ],
        "batchnorm": "follow",
        "method": "requires_grad",
    },
    "schedule": [{"at_epoch": 3, "unfreeze": ["layer3"], "lr": 1e-4}],
    "hyperparameters": {"epochs": 4, "batch_size": 32, "optimizer": "adamw", "lr": 1e-3},
    "checkpointing": {"every_epochs": 1, "keep_last": 2},
}
SPEC_EXAMPLES = {
    "resnet18": {
        "summary": "ResNet-18: train layer4 and fc, thaw layer3 at epoch 3",
        "value": EXAMPLE_SPEC,
    }
}


class _Open(BaseModel):
    model_config = ConfigDict(extra="allow")


class ProblemOut(_Open):
    """RFC 9457 problem details."""

    type: str
    title: str
    status: int
    detail: str
    code: str
    errors: list[FieldError] | None = None


class FieldError(BaseModel):
    loc: str = Field(description="JSON path of the field, such as freeze.rules[0].match.")
    message: str
    hint: str | None = None
    closest: list[str] = Field(default_factory=list)


class JobErrorOut(BaseModel):
    code: str
    message: str


class JobLinks(BaseModel):
    self: str
    events: str
    layers: str
    checkpoints: str
    evaluations: str
    predictions: str
    exports: str
    cancel: str
    metrics: str
    tensorboard: str


class JobOut(BaseModel):
    id: str
    name: str | None
    status: JobStatus
    spec: dict[str, Any] = Field(description="The normalized job spec, every default filled.")
    progress: dict[str, Any]
    metrics: dict[str, Any]
    trainable: dict[str, Any]
    stopped_early: dict[str, Any] | None = Field(
        default=None,
        description="Set when checkpointing.early_stopping ended the run: epoch, reason, "
        "monitor and best value.",
    )
    attempts: int
    max_attempts: int
    error: JobErrorOut | None
    cancel_requested: bool
    worker: str | None
    created_at: str
    started_at: str | None
    finished_at: str | None
    updated_at: str
    links: JobLinks


class JobList(BaseModel):
    data: list[JobOut]
    has_more: bool


class _DatasetBase(BaseModel):
    id: str
    name: str
    format: Literal["image_folder", "csv", "jsonl"]
    num_examples: int
    size_bytes: int = Field(description="Bytes the dataset takes as stored (extracted).")
    upload_bytes: int | None = Field(default=None, description="Bytes of the upload itself.")
    sha256: str = Field(description="Of the upload.")
    created_at: str


class DatasetOut(_DatasetBase):
    classes: list[str]
    class_counts: dict[str, int]


class DatasetSummary(_DatasetBase):
    """A list entry; the classes are on the dataset's own GET."""

    num_classes: int


class DatasetList(BaseModel):
    data: list[DatasetSummary]
    has_more: bool


class DatasetClass(BaseModel):
    name: str
    count: int


class DatasetClassPage(BaseModel):
    data: list[DatasetClass]
    has_more: bool


class DatasetUpload(BaseModel):
    """multipart/form-data body of POST /v1/datasets."""

    file: bytes = Field(
        json_schema_extra={"format": "binary"},
        description=".zip/.tar.gz/.tgz image folder (one subfolder per class), "
        "or .csv/.jsonl with 'text' and 'label'.",
    )
    name: str | None = Field(default=None, max_length=120)


class EventOut(BaseModel):
    id: str
    type: Literal[
        "status", "phase", "metrics", "progress", "checkpoint", "log", "plateau", "stopped_early"
    ]
    level: Literal["debug", "info", "warning", "error"]
    time: str
    data: dict[str, Any]


class EventPage(BaseModel):
    data: list[EventOut]
    has_more: bool


class FileOut(BaseModel):
    name: str
    size: int
    sha256: str


class CheckpointOut(BaseModel):
    name: str
    epoch: int
    step: int
    metrics: dict[str, Any]
    files: list[FileOut]
    created_at: str
    best: bool
    last: bool


class CheckpointList(BaseModel):
    data: list[CheckpointOut]
    has_more: bool = False


class LayerRow(_Open):
    name: str
    type: str
    group: int
    params: int
    trainable_params: int
    trainable: LayerTrainable = Field(
        description="trainable: every parameter of the layer trains; frozen: none does; "
        "partial: some do (trainable_params says how many)."
    )
    lr: float | None
    mode: Literal["train", "eval"]
    changed: bool | None = None
    parameters: list[dict[str, Any]] | None = Field(
        default=None, description="With ?detail=params: name, shape, requires_grad per parameter."
    )

    @field_validator("trainable", mode="before")
    @classmethod
    def _stored_as_bool(cls, value: Any) -> Any:
        """Rows a worker stored before ``trainable`` was a string held true or false."""
        if isinstance(value, bool):
            return "trainable" if value else "frozen"
        return value


class EpochOut(_Open):
    epoch: int
    phase: int
    trainable_params: int
    total_params: int
    layers: list[LayerRow]
    source: Literal["recorded", "planned"] | None = None


class LayerEpochOut(EpochOut):
    """GET /v1/jobs/{id}/layers?epoch=N: one element of `epochs`, and where it comes from."""

    source: Literal["recorded", "planned"]


class GroupOut(BaseModel):
    index: int
    name: str
    modules: list[str]


class CacheBytesOut(BaseModel):
    bytes: int
    memory_bytes: int
    disk_bytes: int


class CheckpointBytesOut(BaseModel):
    bytes_per_save: int
    saves_kept: int
    bytes: int
    saves_written: int


class ResourcesOut(BaseModel):
    """What the job is expected to take; each figure is held to a THAW_MAX_JOB_* setting."""

    host_memory_bytes: int
    host_memory_limit: int
    gpu_memory_bytes: int
    feature_cache: CacheBytesOut
    decoded_cache: CacheBytesOut
    checkpoints: CheckpointBytesOut
    disk_bytes: int


class PlanOut(_Open):
    groups: list[GroupOut]
    epochs: list[EpochOut]
    warnings: list[str]
    resources: ResourcesOut | None = None


class LayerStatusOut(BaseModel):
    groups: list[GroupOut]
    epochs: list[EpochOut]
    warnings: list[str]


class ModelSourceOut(_Open):
    source: str
    builders: list[str]
    weights: str


class ModelSources(BaseModel):
    data: list[ModelSourceOut]


class ModuleOut(BaseModel):
    name: str
    type: str
    group: int | None
    params: int
    parameters: list[dict[str, Any]]


class ModelLayersOut(BaseModel):
    source: str
    name: str
    num_classes: int
    head: str
    total_params: int
    groups: list[GroupOut]
    layers: list[ModuleOut]


class HealthOut(BaseModel):
    status: Literal["ok"]
    redis: bool | None = None
    workers: int | None = Field(default=None, description="How many workers heartbeat.")
    worker_ids: list[str] | None = Field(
        default=None, description="Their ids (host and pid), only with a valid API key."
    )


class DeviceOut(_Open):
    type: str = Field(description="cuda or cpu.")
    name: str
    total_memory: int | None = Field(default=None, description="Bytes (GPU).")
    capability: str | None = Field(default=None, description="CUDA compute capability.")


class WorkerOut(BaseModel):
    id: str
    name: str | None = Field(description="Celery node name, such as gpu0@host.")
    host: str | None
    pid: int | None
    gpu: str | None = Field(description="The CUDA_VISIBLE_DEVICES pin; null when unpinned.")
    device: DeviceOut | None
    torch: str | None
    cuda: str | None
    busy: bool
    job: str | None = Field(description="The job it trains, shown to that job's tenant only.")
    jobs_done: int
    samples_per_s: float | None
    step_time_s: float | None
    memory: dict[str, int | None] = Field(
        description="Bytes in use: allocated and reserved on a GPU, rss on the CPU."
    )
    started_at: str | None
    heartbeat_at: str | None


class WorkerList(BaseModel):
    data: list[WorkerOut]
    has_more: bool = False


ProblemOut.model_rebuild()


class CheckpointTaskOut(BaseModel):
    """An evaluation, prediction or export of a job's checkpoint."""

    id: str
    kind: TaskKind
    job_id: str
    status: TaskStatus
    checkpoint: str = Field(description="The checkpoint folder it ran on, such as epoch-3.")
    request: dict[str, Any]
    result: dict[str, Any] | None = Field(
        description="Evaluations: accuracy, f1_macro, f1_weighted, per_class, "
        "confusion_matrix (rows: true class), most_confused, worst_examples. Predictions: "
        "predictions (top classes per input). Exports: files (size, sha256), max_abs_diff."
    )
    error: dict[str, Any] | None
    created_at: str
    started_at: str | None
    finished_at: str | None
    links: dict[str, str]


class CheckpointTaskList(BaseModel):
    data: list[CheckpointTaskOut]
    has_more: bool = False


WebhookEvent = Literal[EVENT_TYPES]  # type: ignore[valid-type]


class WebhookIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    url: str = Field(
        min_length=1,
        max_length=MAX_URL_CHARS,
        description="An http(s) URL; its host must resolve to public addresses unless "
        "THAW_WEBHOOKS_ALLOW_PRIVATE is set. Redirects are not followed.",
        examples=["https://ci.example.com/hooks/thaw"],
    )
    events: list[WebhookEvent] = Field(
        default_factory=lambda: list(EVENT_TYPES),
        min_length=1,
        max_length=20,
        description="The event types to send (default: all of them).",
    )
    description: str = Field(default="", max_length=200)


class WebhookLinks(BaseModel):
    deliveries: str


class WebhookOut(BaseModel):
    id: str
    url: str
    events: list[str]
    description: str
    created_at: str
    links: WebhookLinks


class WebhookCreated(WebhookOut):
    secret: str = Field(
        description="The signing secret (whsec_...), shown only in this answer: verify the "
        "webhook-signature header with it."
    )


class WebhookList(BaseModel):
    data: list[WebhookOut]
    has_more: bool


class DeliveryTryOut(BaseModel):
    attempt: int | None
    at: str | None
    status_code: int | None
    error: str | None


class DeliveryOut(BaseModel):
    id: str = Field(description="The event id, sent as webhook-id on every try.")
    webhook_id: str
    type: str
    job_id: str
    status: Literal["pending", "succeeded", "failed"]
    attempts: int
    response_status: int | None
    error: str | None
    created_at: str | None
    last_attempt_at: str | None
    next_attempt_at: str | None
    tries: list[DeliveryTryOut]
    payload: dict[str, Any]


class DeliveryList(BaseModel):
    data: list[DeliveryOut]
    has_more: bool
