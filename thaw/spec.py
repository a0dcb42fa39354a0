"""The job spec: what a user submits, validated for shape and filled with defaults.

Checks that need the model (selectors, layer groups, weights) live in
``thaw.freezing.resolve``; everything here is pure data.
"""

from __future__ import annotations

import difflib
import hashlib
import json
import math
from collections.abc import Sequence
from typing import Annotated, Any, Literal, get_args, get_origin

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    Tag,
    ValidationInfo,
    field_validator,
    model_validator,
)

from thaw.settings import DEFAULTS, Settings

SEED_MAX = 2**32 - 1


def validation_context(settings: Settings) -> dict[str, Settings]:
    """The context that validates a spec against these settings' limits."""
    return {"settings": settings}


def limits(info: ValidationInfo) -> Settings:
    """The settings a spec is validated against: the context's, or the built-in defaults."""
    context = info.context
    settings = context.get("settings") if isinstance(context, dict) else None
    return settings if isinstance(settings, Settings) else DEFAULTS


def _bounded_regex(value: str, info: ValidationInfo) -> str:
    limit = limits(info).selector_regex_max_chars
    if value.startswith("re:") and len(value) - 3 > limit:
        raise ValueError(
            f"the re: pattern is {len(value) - 3} characters; at most {limit} "
            "(THAW_SELECTOR_REGEX_MAX_CHARS)"
        )
    return value


Selector = Annotated[str, Field(min_length=1, max_length=500), AfterValidator(_bounded_regex)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


ModelSource = Literal["torchvision", "timm", "huggingface", "job"]
NAME_MAX_LENGTH = 300


def plain_text(value: str | None) -> str | None:
    """Refuse control characters (NUL above all): names become paths and hub ids."""
    if value is not None and any(ord(c) < 32 or ord(c) == 127 for c in value):
        raise ValueError("must not contain control characters such as NUL; give a plain name")
    return value


class BaseModelRef(_Strict):
    source: ModelSource = Field(description="Where the architecture and weights come from.")
    name: str = Field(
        min_length=1,
        max_length=NAME_MAX_LENGTH,
        description="torchvision builder (resnet18); timm architecture (convnext_tiny) or "
        "hub-layout folder under THAW_MODELS_DIR; Hugging Face folder under THAW_MODELS_DIR "
        "(a hub id only with THAW_ALLOW_HUB_DOWNLOADS); or a finished job's id for 'job'.",
    )
    weights: str | None = Field(
        default=None,
        max_length=100,
        description="torchvision weights enum member (DEFAULT, IMAGENET1K_V1); for timm "
        "'pretrained' (hub download); or null.",
    )
    weights_file: str | None = Field(
        default=None,
        min_length=1,
        max_length=NAME_MAX_LENGTH,
        description="safetensors file under THAW_MODELS_DIR to initialize from.",
    )

    _plain = field_validator("name", "weights", "weights_file")(plain_text)
    checkpoint: Literal["best", "last"] = Field(
        default="best", description="For source 'job': which checkpoint to continue from."
    )

    @model_validator(mode="after")
    def _weights_exclusive(self) -> BaseModelRef:
        if self.weights is not None and self.weights_file is not None:
            raise ValueError("give either 'weights' or 'weights_file', not both")
        if self.source == "timm" and self.weights not in (None, "pretrained"):
            raise ValueError("for source 'timm', 'weights' is 'pretrained' or null")
        if self.source not in ("torchvision", "timm") and self.weights is not None:
            raise ValueError(
                "'weights' is a torchvision enum name; use it with source 'torchvision'"
            )
        return self


class SyntheticData(_Strict):
    num_classes: int = Field(default=10, ge=2, le=1000)
    num_examples: int = Field(default=256, ge=4, le=1_000_000)


class ValidationSplit(_Strict):
    split: float = Field(gt=0.0, lt=1.0, description="Seeded, stratified holdout fraction.")


class DatasetSource(_Strict):
    id: str | None = Field(
        default=None, min_length=1, max_length=100, description="An uploaded dataset's id."
    )
    path: str | None = Field(
        default=None,
        min_length=1,
        max_length=1024,
        description="Folder or file under THAW_DATASETS_DIR.",
    )
    format: Literal["image_folder", "csv", "jsonl"] | None = None
    synthetic: SyntheticData | None = None

    _plain = field_validator("id", "path")(plain_text)

    @model_validator(mode="after")
    def _one_source(self) -> DatasetSource:
        given = [k for k in ("id", "path", "synthetic") if getattr(self, k) is not None]
        if len(given) != 1:
            raise ValueError("give exactly one of 'id', 'path' or 'synthetic'")
        if self.format is not None and self.path is None:
            raise ValueError("'format' goes with 'path' only")
        return self


class DatasetRef(DatasetSource):
    validation: ValidationSplit | DatasetSource | None = Field(
        default=None,
        description="Holdout split or another dataset; null uses a val/ folder if present, "
        "else a 0.2 split.",
    )


class FreezeRule(_Strict):
    match: Selector
    trainable: bool


def _bounded_rank(value: int, info: ValidationInfo) -> int:
    limit = limits(info).lora_max_rank
    if value > limit:
        raise ValueError(f"r is {value}; at most {limit} (THAW_LORA_MAX_RANK)")
    return value


class AdapterSpec(_Strict):
    """LoRA adapters beside the Linear and Conv2d layers the targets select."""

    r: Annotated[int, Field(ge=1), AfterValidator(_bounded_rank)] = Field(
        default=8, description="Rank of each adapter."
    )
    alpha: float = Field(default=16.0, gt=0.0, le=1e6, description="Scale: alpha / r.")
    dropout: float = Field(default=0.0, ge=0.0, lt=1.0, description="Dropout on adapter inputs.")
    targets: list[Selector] = Field(
        min_length=1,
        max_length=100,
        description="Selectors of the layers that carry adapters; the Linear and Conv2d "
        "layers among what each one selects.",
    )

    @field_validator("targets", mode="before")
    @classmethod
    def _one_or_many(cls, value: Any) -> Any:
        return [value] if isinstance(value, str) else value


class FreezeSpec(_Strict):
    default: Literal["frozen", "trainable"] = Field(
        default="frozen",
        description="The starting state; with method 'lora' it is the adapters' (base "
        "parameters start frozen) and defaults to 'trainable'.",
    )
    rules: list[FreezeRule] = Field(default_factory=list, max_length=200)
    batchnorm: Literal["follow", "frozen", "trainable"] = "follow"
    adapter: AdapterSpec | None = Field(
        default=None,
        description="With method 'lora': rank, alpha, dropout and targets.",
        exclude_if=lambda value: value is None,  # specs without adapters normalize as before
    )
    method: Literal["requires_grad", "zero_lr", "lora"] = Field(
        default="requires_grad",
        validate_default=True,
        description="requires_grad: frozen parameters get no gradient; zero_lr: they sit in "
        "a group with lr 0; lora: base parameters stay frozen and low-rank adapters train "
        "beside the layers freeze.adapter.targets selects.",
    )
    dropout: Literal["follow", "active"] = Field(
        default="follow",
        description="follow: dropout and stochastic depth inside a layer group whose "
        "parameters are all frozen run in eval mode (a frozen part in eval, as a hand-written "
        "loop does); active: they stay in train mode wherever the model trains.",
    )

    @model_validator(mode="before")
    @classmethod
    def _lora_default(cls, value: Any) -> Any:
        if isinstance(value, dict) and value.get("method") == "lora" and "default" not in value:
            return {**value, "default": "trainable"}
        return value

    @field_validator("method")
    @classmethod
    def _adapter_with_lora(cls, method: str, info: ValidationInfo) -> str:
        if "adapter" not in info.data:
            return method  # the adapter itself failed; its own error says why
        adapter = info.data["adapter"]
        if method == "lora" and adapter is None:
            raise ValueError(
                "method 'lora' needs freeze.adapter with its targets, e.g. "
                '{"r": 8, "alpha": 16, "targets": ["re:.*(query|value)"]}'
            )
        if method != "lora" and adapter is not None:
            raise ValueError(
                f"freeze.adapter goes with method 'lora', not {method!r} (zero_lr cannot be "
                "combined with adapters); set freeze.method to 'lora' or drop freeze.adapter"
            )
        return method


def _as_list(value: Any) -> Any:
    return [value] if isinstance(value, str) else value


class Plateau(_Strict):
    patience: int = Field(
        default=2, ge=1, le=10_000, description="Epochs without improvement of the monitor."
    )
    min_delta: float = Field(default=0.0, ge=0.0, description="The least change that counts.")


class ScheduleEvent(_Strict):
    at_epoch: int | None = Field(
        default=None,
        ge=1,
        description="1-based; before its first step. With on_plateau: the latest epoch.",
    )
    at_step: int | None = Field(default=None, ge=1, description="After this many optimizer steps.")
    unfreeze: list[Selector] = Field(default_factory=list, max_length=100)
    freeze: list[Selector] = Field(default_factory=list, max_length=100)
    lr: float | None = Field(default=None, ge=0.0)
    lr_mult: float | None = Field(default=None, ge=0.0)
    on_plateau: Plateau | None = Field(
        default=None,
        description="Fire when checkpointing.monitor stops improving (events in order).",
    )

    _lists = field_validator("unfreeze", "freeze", mode="before")(_as_list)

    @model_validator(mode="after")
    def _consistent(self) -> ScheduleEvent:
        if self.on_plateau is not None:
            if self.at_step is not None:
                raise ValueError("on_plateau takes 'at_epoch' as its deadline, not 'at_step'")
        elif (self.at_epoch is None) == (self.at_step is None):
            raise ValueError("give exactly one of 'at_epoch' or 'at_step'")
        if not self.unfreeze and not self.freeze:
            raise ValueError("an event needs 'unfreeze' or 'freeze' selectors")
        if self.lr is not None and self.lr_mult is not None:
            raise ValueError("give either 'lr' or 'lr_mult', not both")
        if (self.lr is not None or self.lr_mult is not None) and not self.unfreeze:
            raise ValueError("'lr' and 'lr_mult' set the learning rate of unfrozen parameters")
        return self


class GradualPreset(_Strict):
    preset: Literal["gradual"]
    every_epochs: int = Field(default=1, ge=1)
    lr_mult: float | None = Field(default=None, ge=0.0)


class FineTunePreset(_Strict):
    preset: Literal["fine_tune"]
    freeze_epochs: int = Field(default=1, ge=1)
    lr_mult: float | None = Field(default=None, ge=0.0)


class RotatePreset(_Strict):
    preset: Literal["rotate"]
    groups: Selector = Field(
        default="group:1:-1", description="Layer groups to rotate through (a group: selector)."
    )
    active: int = Field(default=2, ge=1, le=10_000, description="Groups trained at a time.")
    every_steps: int = Field(default=50, ge=1, description="Optimizer steps per interval.")
    always: list[Selector] = Field(
        default_factory=lambda: ["group:-1"], max_length=100, description="Trained throughout."
    )
    seed: int = Field(default=0, ge=0, le=SEED_MAX)

    _lists = field_validator("always", mode="before")(_as_list)


def _schedule_tag(value: Any) -> str:
    if isinstance(value, dict):
        return str(value.get("preset", "event"))
    return getattr(value, "preset", "event")


ScheduleItem = Annotated[
    Annotated[ScheduleEvent, Tag("event")]
    | Annotated[GradualPreset, Tag("gradual")]
    | Annotated[FineTunePreset, Tag("fine_tune")]
    | Annotated[RotatePreset, Tag("rotate")],
    Discriminator(_schedule_tag),
]


class ParamGroupRule(_Strict):
    match: Selector
    lr: float | None = Field(default=None, ge=0.0)
    lr_mult: float | None = Field(default=None, ge=0.0)
    weight_decay: float | None = Field(default=None, ge=0.0)

    @model_validator(mode="after")
    def _something_set(self) -> ParamGroupRule:
        if self.lr is not None and self.lr_mult is not None:
            raise ValueError("give either 'lr' or 'lr_mult', not both")
        if self.lr is None and self.lr_mult is None and self.weight_decay is None:
            raise ValueError("a param group sets 'lr', 'lr_mult' or 'weight_decay'")
        return self


MAX_CLASS_WEIGHTS = 10_000
ClassName = Annotated[
    str, Field(min_length=1, max_length=NAME_MAX_LENGTH), AfterValidator(plain_text)
]
ClassWeight = Annotated[float, Field(ge=0.0, le=1e6)]


class Hyperparameters(_Strict):
    epochs: int = Field(default=3, ge=1, le=10_000, strict=True)
    batch_size: int = Field(default=32, ge=1, le=65_536, strict=True)
    optimizer: Literal["adamw", "sgd"] = "adamw"
    lr: float = Field(default=1e-3, gt=0.0, le=10.0)
    weight_decay: float = Field(default=0.01, ge=0.0)
    momentum: float = Field(default=0.9, ge=0.0, lt=1.0, description="SGD only.")
    lr_scheduler: Literal["constant", "cosine", "step", "onecycle"] = "cosine"
    warmup_steps: int = Field(default=0, ge=0)
    step_size_epochs: int = Field(default=1, ge=1, description="For 'step': decay period.")
    gamma: float = Field(default=0.1, gt=0.0, le=1.0, description="For 'step': decay factor.")
    layer_lr_decay: float | None = Field(default=None, gt=0.0, le=1.0)
    param_groups: list[ParamGroupRule] = Field(default_factory=list, max_length=100)
    grad_clip_norm: float | None = Field(default=None, gt=0.0)
    image_size: int = Field(default=224, ge=16, le=1024)
    max_length: int = Field(default=128, ge=8, le=4096, description="Text models: tokens.")
    precision: Literal["auto", "fp32", "bf16", "fp16"] = "auto"
    num_workers: int | None = Field(default=None, ge=0, le=64, description="null: automatic.")
    seed: int = Field(default=0, ge=0, le=SEED_MAX, strict=True)
    feature_cache: Literal["auto", "off"] = Field(
        default="auto",
        description="auto: a phase whose input-side layer groups are wholly frozen trains "
        "from their cached output; off: run every layer on every step.",
    )
    augment: Literal["none", "flip", "standard"] = Field(
        default="none",
        description="Training images only: flip (random horizontal flip) or standard "
        "(random resized crop and flip).",
    )
    class_weights: Literal["balanced"] | dict[ClassName, ClassWeight] | None = Field(
        default=None,
        description="Training loss weight per class: 'balanced' (n / (classes * count) from "
        "the training split) or {class: weight} (unlisted classes weigh 1).",
    )
    label_smoothing: float = Field(default=0.0, ge=0.0, lt=1.0)
    grad_accumulation_steps: int = Field(
        default=1,
        ge=1,
        le=1024,
        description="Batches per optimizer step; at_step, every_steps and the LR curve count "
        "optimizer steps.",
    )

    @field_validator("class_weights")
    @classmethod
    def _class_weights_size(cls, value: Any) -> Any:
        if isinstance(value, dict) and len(value) > MAX_CLASS_WEIGHTS:
            raise ValueError(f"{len(value)} class weights; at most {MAX_CLASS_WEIGHTS}")
        return value


Monitor = Literal["val_loss", "val_accuracy", "val_f1_macro", "train_loss"]
"""The per-epoch metrics a run reports, any of which ``checkpointing.monitor`` may follow."""
MONITORS: tuple[str, ...] = get_args(Monitor)


def default_mode(monitor: str) -> Literal["min", "max"]:
    """Losses fall as a model improves; every other metric rises."""
    return "min" if monitor.endswith("loss") else "max"


class EarlyStopping(_Strict):
    patience: int = Field(
        default=3, ge=1, le=10_000, description="Epochs without improvement before stopping."
    )
    min_delta: float = Field(default=0.0, ge=0.0, description="The least change that counts.")
    warmup_epochs: int = Field(
        default=1, ge=0, le=10_000, description="First epochs not judged at all."
    )


class Checkpointing(_Strict):
    monitor: Monitor = Field(
        default="val_loss",
        description="The metric that picks 'best' and drives early stopping and on_plateau.",
    )
    mode: Literal["min", "max"] | None = Field(
        default=None, description="min or max; null: min for losses, max otherwise."
    )
    early_stopping: EarlyStopping | None = None
    every_epochs: int = Field(default=1, ge=1)
    keep_last: int = Field(default=2, ge=1, le=1000)
    every_steps: int | None = Field(
        default=None,
        ge=1,
        description="Also write a resume point every this many optimizer steps (long "
        "epochs); not listed among the checkpoints.",
    )

    @model_validator(mode="before")
    @classmethod
    def _default_mode(cls, data: Any) -> Any:
        if isinstance(data, dict) and data.get("mode") is None:
            return {**data, "mode": default_mode(str(data.get("monitor", "val_loss")))}
        return data


class MlflowIntegration(_Strict):
    """Send the run's curves to an MLflow tracking server; credentials come from the
    server's settings for the caller's tenant, never from here."""

    type: Literal["mlflow"]
    tracking_uri: str = Field(
        min_length=1,
        max_length=2048,
        description="One of the URIs the server allows (THAW_INTEGRATION_URIS).",
    )
    experiment: str = Field(default="thaw", min_length=1, max_length=250)


class JobSpec(_Strict):
    name: str = Field(default="job", min_length=1, max_length=120)
    base_model: BaseModelRef
    dataset: DatasetRef = Field(default_factory=lambda: DatasetRef(synthetic=SyntheticData()))
    freeze: FreezeSpec = Field(default_factory=FreezeSpec)
    schedule: list[ScheduleItem] = Field(default_factory=list, max_length=200)
    hyperparameters: Hyperparameters = Field(default_factory=Hyperparameters)
    checkpointing: Checkpointing = Field(default_factory=Checkpointing)
    metadata: dict[Annotated[str, Field(max_length=100)], str | int | float | bool | None] = Field(
        default_factory=dict, max_length=50
    )
    integrations: list[MlflowIntegration] = Field(
        default_factory=list,
        max_length=4,
        description="Where else the run reports; a failing integration is a warning event, "
        "never a failed job.",
    )

    _plain_name = field_validator("name")(plain_text)

    @field_validator("metadata", mode="before")
    @classmethod
    def _metadata_finite(cls, value: Any) -> Any:
        if isinstance(value, dict):
            for key, item in value.items():
                if isinstance(item, float) and not math.isfinite(item):
                    raise ValueError(f"{key!r} is {item}; only finite numbers are allowed")
        return value

    @field_validator("metadata")
    @classmethod
    def _metadata_size(cls, value: dict[str, Any], info: ValidationInfo) -> dict[str, Any]:
        size = len(json.dumps(value, separators=(",", ":")).encode())
        limit = limits(info).max_metadata_bytes
        if size > limit:
            raise ValueError(
                f"metadata is {size} bytes as JSON; at most {limit} (THAW_MAX_METADATA_BYTES)"
            )
        return value

    @model_validator(mode="after")
    def _selector_count(self, info: ValidationInfo) -> JobSpec:
        count = len(self.freeze.rules) + len(self.hyperparameters.param_groups)
        count += len(self.freeze.adapter.targets) if self.freeze.adapter else 0
        count += sum(
            len(e.unfreeze) + len(e.freeze) for e in self.schedule if isinstance(e, ScheduleEvent)
        )
        limit = limits(info).max_selectors
        if count > limit:
            raise ValueError(
                f"the spec holds {count} selectors; at most {limit} (THAW_MAX_SELECTORS)"
            )
        return self

    def normalized(self) -> dict[str, Any]:
        """The spec with every default filled, as stored and shown back."""
        return self.model_dump(mode="json")

    def fingerprint(self) -> str:
        """sha256 of the normalized spec, stable across key order; integrations report the
        run without changing it, so they are left out."""
        normalized = self.normalized()
        normalized.pop("integrations", None)
        body = json.dumps(normalized, sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(body.encode()).hexdigest()


def _models_in(annotation: Any, tag: str | None = None) -> list[tuple[type[BaseModel], str | None]]:
    """The models an annotation holds (through lists, unions and Annotated), each with the
    union tag it goes by."""
    if get_origin(annotation) is Annotated:
        base, *meta = get_args(annotation)
        tags = [m.tag for m in meta if isinstance(m, Tag)]
        return _models_in(base, tags[0] if tags else tag)
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [(annotation, tag)]
    return [found for arg in get_args(annotation) for found in _models_in(arg, tag)]


def field_names_at(loc: Sequence[str | int]) -> list[str]:
    """The job spec's field names at a validation error's location (pydantic's, with the
    union tags and class names it puts in), sorted."""
    candidates: list[tuple[type[BaseModel], str | None]] = [(JobSpec, None)]
    for part in loc:
        if isinstance(part, int):
            continue
        owners = [model for model, _ in candidates if part in model.model_fields]
        if owners:
            candidates = [
                found
                for model in owners
                for found in _models_in(model.model_fields[part].annotation)
            ]
        else:  # a union member: its tag, or its class name inside pydantic's label
            picked = [(m, t) for m, t in candidates if part == t or m.__name__ in part]
            candidates = picked or candidates
    return sorted({name for model, _ in candidates for name in model.model_fields})


def closest_fields(loc: Sequence[str | int], name: str) -> list[str]:
    """Valid spec fields at ``loc`` that ``name`` is probably a misspelling of, best first."""
    return difflib.get_close_matches(name, field_names_at(loc), n=3, cutoff=0.6)
