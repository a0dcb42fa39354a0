"""Build a StateView from a live engine (what is) or from a timeline phase (what will be)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from thaw.freeze import batchnorm_modes
from thaw.param_settings import ParamSetting
from thaw.schedule import Timeline
from thaw.status import StateView

if TYPE_CHECKING:
    from thaw.engine import FreezeEngine
    from thaw.model_index import ModelIndex


def live_view(engine: FreezeEngine, thawed_in: dict[str, int | None]) -> StateView:
    """Read the model and optimizer themselves: requires_grad, group membership, module modes."""
    from thaw.engine import FROZEN_GROUP

    group_of = {id(p): g for g in engine.optimizer.param_groups for p in g["params"]}
    trainable: dict[str, bool] = {}
    lrs: dict[str, float | None] = {}
    for name, param in engine.index.params.items():
        group = group_of.get(id(param))
        in_use = group is not None and group["name"] != FROZEN_GROUP
        trainable[name] = bool(param.requires_grad and in_use)
        lrs[name] = float(group["initial_lr"]) if group is not None else None
    modules = dict(engine.model.named_modules())
    return StateView(
        trainable=trainable,
        lr=lrs,
        training={name: modules[name].training for name in engine.index.module_types},
        requires_grad={n: p.requires_grad for n, p in engine.index.params.items()},
        thawed_in=thawed_in,
    )


def planned_view(
    index: ModelIndex,
    timeline: Timeline,
    phase: int,
    settings: dict[str, ParamSetting | None],
    thawed_in: dict[str, int | None],
    *,
    method: str,
    policy: str,
) -> StateView:
    trainable = timeline.phases[phase].trainable
    lrs: dict[str, float | None] = {}
    for name, setting in settings.items():
        lrs[name] = setting.lr if setting is not None else (0.0 if method == "zero_lr" else None)
    return StateView(
        trainable=trainable,
        lr=lrs,
        training=batchnorm_modes(index, trainable, policy),
        requires_grad={n: method == "zero_lr" or t for n, t in trainable.items()},
        thawed_in=thawed_in,
    )
