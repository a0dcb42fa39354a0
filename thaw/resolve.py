"""Check a spec against its model and turn it into a timeline: the one place both the
planner and the trainer start from."""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from thaw.model_index import ModelIndex, index_model
from thaw.models import BuiltModel, build_model
from thaw.param_settings import ParamSetting, base_settings, settings_by_phase, thawed_in_by_phase
from thaw.schedule import Timeline, resolve_timeline
from thaw.spec import JobSpec

if TYPE_CHECKING:
    from thaw.settings import Settings


@dataclass(frozen=True)
class DataShape:
    """What the planner needs to know of a dataset: its classes and its training size."""

    classes: list[str]
    num_train: int

    def steps_per_epoch(self, batch_size: int) -> int:
        return max(1, math.ceil(self.num_train / batch_size))


@dataclass
class Resolved:
    spec: JobSpec
    built: BuiltModel
    index: ModelIndex
    timeline: Timeline
    settings: list[dict[str, ParamSetting | None]]
    thawed_in: list[dict[str, int | None]]
    warnings: list[str] = field(default_factory=list)


def resolve(spec: JobSpec, settings: Settings, shape: DataShape, *, meta: bool = True) -> Resolved:
    """Build the model (on ``meta`` unless asked) and resolve every selector of the spec."""
    built = build_model(
        spec.base_model, len(shape.classes), settings, meta=meta, classes=shape.classes
    )
    return resolve_built(spec, shape, built, index_model(built.model, built.head))


def resolve_built(
    spec: JobSpec, shape: DataShape, built: BuiltModel, index: ModelIndex
) -> Resolved:
    """Resolve the spec against a model built (and indexed) before; ``built`` is not changed."""
    built = copy.copy(built)
    built.classes = list(shape.classes)
    hp = spec.hyperparameters
    if built.modality == "image":
        built.image_size = hp.image_size
    else:
        built.max_length = hp.max_length
    timeline = resolve_timeline(
        index,
        spec.freeze,
        spec.schedule,
        epochs=hp.epochs,
        steps_per_epoch=shape.steps_per_epoch(hp.batch_size),
    )
    return Resolved(
        spec=spec,
        built=built,
        index=index,
        timeline=timeline,
        settings=settings_by_phase(timeline, base_settings(index, hp), hp),
        thawed_in=thawed_in_by_phase(timeline),
        warnings=[*built.warnings, *timeline.warnings],
    )
