"""Learning rate and weight decay of every parameter in every phase."""

from __future__ import annotations

from dataclasses import dataclass

from thaw.freezing.model_index import ModelIndex
from thaw.freezing.selectors import select
from thaw.freezing.timeline import Event, Timeline
from thaw.settings import Settings
from thaw.spec import Hyperparameters


@dataclass(frozen=True)
class ParamOptions:
    lr: float
    weight_decay: float


def base_options(
    index: ModelIndex, hp: Hyperparameters, settings: Settings
) -> dict[str, ParamOptions]:
    """Per parameter: base lr, layer-wise decay from the top group, ``param_groups`` rules,
    and no weight decay on biases and normalization weights."""
    top = len(index.groups) - 1
    lr: dict[str, float] = {}
    wd: dict[str, float] = {}
    for name, param in index.params.items():
        depth = top - index.param_group[name]
        lr[name] = hp.lr * hp.layer_lr_decay**depth if hp.layer_lr_decay else hp.lr
        is_norm = index.param_owner[name] in index.norm_modules
        no_decay = param.ndim <= 1 or is_norm or name in index.no_decay
        wd[name] = 0.0 if no_decay else hp.weight_decay
    for i, rule in enumerate(hp.param_groups):
        loc = ("hyperparameters", "param_groups", i, "match")
        for name in select(index, rule.match, loc, settings):
            if rule.lr is not None:
                lr[name] = rule.lr
            elif rule.lr_mult is not None:
                lr[name] = hp.lr * rule.lr_mult
            if rule.weight_decay is not None:
                wd[name] = rule.weight_decay
    return {name: ParamOptions(lr[name], wd[name]) for name in index.params}


def thawed_options(base: ParamOptions, event: Event, hp: Hyperparameters) -> ParamOptions:
    """What a parameter thawed by ``event`` trains with: the event's lr, if it names one."""
    if event.lr is not None:
        return ParamOptions(event.lr, base.weight_decay)
    if event.lr_mult is not None:
        return ParamOptions(hp.lr * event.lr_mult, base.weight_decay)
    return base


def thawed_in_by_phase(timeline: Timeline) -> list[dict[str, int | None]]:
    """For each phase, the phase in which each trainable parameter last thawed (None when
    frozen): the one walk through the thaw history that options are derived from."""
    out: list[dict[str, int | None]] = []
    current: dict[str, int | None] = {}
    for phase in timeline.phases:
        for name, trainable in phase.trainable.items():
            if not trainable:
                current[name] = None
            elif name in phase.thawed or current.get(name) is None:
                current[name] = phase.index
        out.append(dict(current))
    return out


def options_by_phase(
    timeline: Timeline, base: dict[str, ParamOptions], hp: Hyperparameters
) -> list[dict[str, ParamOptions | None]]:
    """For each phase, the opts of every trainable parameter (None when frozen): the
    event that thawed it decides, else the base opts."""
    out: list[dict[str, ParamOptions | None]] = []
    for thawed_in in thawed_in_by_phase(timeline):
        options: dict[str, ParamOptions | None] = {}
        for name, since in thawed_in.items():
            if since is None:
                options[name] = None
                continue
            event = timeline.phases[since].thawed.get(name)
            options[name] = base[name] if event is None else thawed_options(base[name], event, hp)
        out.append(options)
    return out
