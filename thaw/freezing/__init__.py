"""The freeze engine: which parameters train in which phase, and the optimizer that follows.

Reading order: ``model_index`` (a model's parameters, modules and layer ``groups``),
``selectors`` (names in a spec to parameters), ``state`` (the trainable map and
BatchNorm modes), ``timeline`` (freeze rules and unfreeze events as phases),
``param_options`` (lr and weight decay per parameter and phase), ``lr_curve``,
``engine`` (all of it applied to a live model and optimizer), ``resolve`` (a spec
against its model), ``plan`` and ``status`` (the per-layer rows), ``model_layers``.
"""

from thaw.freezing.engine import FROZEN_GROUP, FreezeEngine, PhaseChange
from thaw.freezing.groups import LayerGroup, derive_groups
from thaw.freezing.lr_curve import GroupLRScheduler, LRCurve
from thaw.freezing.model_index import ModelIndex, index_model
from thaw.freezing.model_layers import describe_model, model_layers
from thaw.freezing.param_options import ParamOptions, base_options, options_by_phase
from thaw.freezing.plan import plan_table
from thaw.freezing.resolve import Resolved, resolve, resolve_built
from thaw.freezing.selectors import select
from thaw.freezing.state import TrainableMap, batchnorm_modes, initial_state
from thaw.freezing.status import (
    PLAN_KEY,
    EpochOutOfRange,
    StateView,
    epoch_entry,
    layer_rows,
    layer_status,
    live_view,
    planned_view,
)
from thaw.freezing.timeline import Phase, Timeline, resolve_timeline

__all__ = [
    "FROZEN_GROUP",
    "PLAN_KEY",
    "EpochOutOfRange",
    "FreezeEngine",
    "GroupLRScheduler",
    "LRCurve",
    "LayerGroup",
    "ModelIndex",
    "ParamOptions",
    "Phase",
    "PhaseChange",
    "Resolved",
    "StateView",
    "Timeline",
    "TrainableMap",
    "base_options",
    "batchnorm_modes",
    "derive_groups",
    "describe_model",
    "epoch_entry",
    "index_model",
    "initial_state",
    "layer_rows",
    "layer_status",
    "live_view",
    "model_layers",
    "options_by_phase",
    "plan_table",
    "planned_view",
    "resolve",
    "resolve_built",
    "resolve_timeline",
    "select",
]
