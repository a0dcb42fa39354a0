"""Check a spec against its model and turn it into a timeline: the one place both the
planner and the trainer start from."""

from __future__ import annotations

import copy
import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from torch import nn

from thaw.class_weights import check_class_weights
from thaw.data.shape import DataShape
from thaw.errors import SpecError
from thaw.freezing.adapters import (
    Adapters,
    adapted_copy,
    adapter_targets,
    add_adapters,
    saved_modules,
)
from thaw.freezing.model_index import ModelIndex, index_model
from thaw.freezing.param_options import (
    ParamOptions,
    base_options,
    options_by_phase,
    thawed_in_by_phase,
)
from thaw.freezing.timeline import Timeline, build_timeline
from thaw.models import BuiltModel, build_model
from thaw.spec import BaseModelRef, JobSpec

if TYPE_CHECKING:
    from thaw.settings import Settings


@dataclass
class Resolved:
    spec: JobSpec
    built: BuiltModel
    index: ModelIndex
    timeline: Timeline
    options: list[dict[str, ParamOptions | None]]
    thawed_in: list[dict[str, int | None]]
    warnings: list[str] = field(default_factory=list)
    adapters: Adapters | None = None
    saved_modules: list[str] = field(default_factory=list)
    """With adapters: the base modules that train in some phase, saved whole beside them."""


def resolve(spec: JobSpec, settings: Settings, shape: DataShape, *, meta: bool = True) -> Resolved:
    """Build the model (on ``meta`` unless asked) and resolve every selector of the spec."""
    built = build_model(
        spec.base_model, len(shape.classes), settings, meta=meta, classes=shape.classes
    )
    return resolve_built(spec, shape, built, index_model(built.model, built.head), settings)


def meta_model(
    ref: BaseModelRef, num_classes: int, settings: Settings
) -> tuple[BuiltModel, ModelIndex]:
    """The base model built on ``meta`` and indexed; shared, so callers must not change it.

    Models that depend on nothing but their name are kept in one LRU cache; a weights file
    or another job's checkpoint can change under the same name, so those are built anew."""
    if ref.source == "job" or ref.weights_file is not None:
        return _build_meta(ref, num_classes, settings)
    key = (ref.source, ref.name, ref.weights, num_classes, str(settings.models_dir))
    with _META_LOCK:
        hit = _META.get(key)
        if hit is not None:
            _META.move_to_end(key)
            return hit
    entry = _build_meta(ref, num_classes, settings)
    with _META_LOCK:
        _META[key] = entry
        while len(_META) > META_CACHE_SIZE:
            _META.popitem(last=False)
    return entry


META_CACHE_SIZE = 32
_META: OrderedDict[tuple, tuple[BuiltModel, ModelIndex]] = OrderedDict()
_META_LOCK = threading.Lock()


def _build_meta(
    ref: BaseModelRef, num_classes: int, settings: Settings
) -> tuple[BuiltModel, ModelIndex]:
    built = build_model(ref, num_classes, settings, meta=True)
    return built, index_model(built.model, built.head)


def resolve_built(
    spec: JobSpec, shape: DataShape, built: BuiltModel, index: ModelIndex, settings: Settings
) -> Resolved:
    """Resolve the spec against a model built (and indexed) before; ``built`` is not changed."""
    built = copy.copy(built)
    built.classes = list(shape.classes)
    hp = spec.hyperparameters
    if built.modality == "image":
        fixed = built.fixed_image_size
        if fixed is not None and hp.image_size != fixed:
            raise SpecError(
                ("hyperparameters", "image_size"),
                f"{built.name} takes {fixed}x{fixed} images only, not {hp.image_size}",
                f"set image_size to {fixed}",
            )
        built.image_size = hp.image_size
    else:
        built.max_length = hp.max_length
    adapters = None
    if spec.freeze.adapter is not None:
        adapters = adapter_targets(index, spec.freeze.adapter, settings)
        if _on_meta(built.model):
            built.model = adapted_copy(built.model)
        index = add_adapters(built.model, index, adapters)
    check_class_weights(hp.class_weights, shape.classes)
    timeline = build_timeline(
        index,
        spec.freeze,
        spec.schedule,
        settings,
        epochs=hp.epochs,
        steps_per_epoch=shape.optimizer_steps_per_epoch(hp.batch_size, hp.grad_accumulation_steps),
    )
    return Resolved(
        spec=spec,
        built=built,
        index=index,
        timeline=timeline,
        options=options_by_phase(timeline, base_options(index, hp, settings), hp),
        thawed_in=thawed_in_by_phase(timeline),
        warnings=[*built.warnings, *timeline.warnings],
        adapters=adapters,
        saved_modules=saved_modules(index, (p.trainable for p in timeline.phases))
        if adapters
        else [],
    )


def _on_meta(model: nn.Module) -> bool:
    """A model on ``meta`` may be the shared cached one; a real one is the caller's own."""
    return next(model.parameters()).is_meta
