"""Per-layer trainable status: one row shape for plans, live models and recorded epochs.

A layer is a module that owns parameters directly; a parameter owned by the model
itself (ViT's ``class_token``) is its own row. A ``StateView`` is read from a live
engine (what is) or from a timeline phase (what will be); a job's stored status
(``JobStore.load_layer_status``) holds the submit-time plan under ``plan`` and each
epoch the worker recorded under ``epoch:<n>``, per state rather than per epoch
(``thaw.freezing.stored_rows``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from thaw.errors import ThawError
from thaw.freezing.adapters import adapter_fields
from thaw.freezing.engine import FROZEN_GROUP
from thaw.freezing.model_index import ModelIndex
from thaw.freezing.param_options import ParamOptions
from thaw.freezing.stored_rows import StoredPlan, recorded_entry
from thaw.freezing.timeline import Timeline
from thaw.freezing.trainable import module_modes, stochastic_modules

if TYPE_CHECKING:
    from thaw.freezing.engine import FreezeEngine


LayerTrainable = Literal["trainable", "frozen", "partial"]
"""A layer's row: all of its parameters train, none does, or some do."""


@dataclass(frozen=True)
class StateView:
    trainable: Mapping[str, bool]
    lr: Mapping[str, float | None]
    training: Mapping[str, bool]
    requires_grad: Mapping[str, bool]
    thawed_in: Mapping[str, int | None]


def layer_rows(index: ModelIndex, view: StateView, *, detail: bool = False) -> list[dict[str, Any]]:
    rows = []
    for name, owned in _layers(index):
        sizes = [index.params[p].numel() for p in owned]
        trained = [p for p in owned if view.trainable[p]]
        count = sum(s for p, s in zip(owned, sizes, strict=True) if view.trainable[p])
        total = sum(sizes)
        flag: LayerTrainable = (
            "trainable" if count == total else "frozen" if count == 0 else "partial"
        )
        first = trained[0] if trained else owned[0]
        module = name if name in index.module_types else ""
        row: dict[str, Any] = {
            "name": name,
            "type": index.module_types.get(name, "Parameter"),
            "group": index.param_group[owned[0]],
            "params": total,
            "trainable_params": count,
            "trainable": flag,
            "lr": view.lr.get(first),
            "mode": "train" if view.training.get(module, True) else "eval",
            "thawed_in": view.thawed_in.get(trained[0]) if trained else None,
            **adapter_fields(index, name, owned, view.trainable),
        }
        if detail:
            row["parameters"] = [
                {
                    "name": p,
                    "shape": list(index.params[p].shape),
                    "requires_grad": view.requires_grad[p],
                    "trainable": view.trainable[p],
                }
                for p in owned
            ]
        rows.append(row)
    return rows


def epoch_entry(
    index: ModelIndex, view: StateView, *, epoch: int, phase: int, detail: bool = False
) -> dict[str, Any]:
    layers = layer_rows(index, view, detail=detail)
    return {
        "epoch": epoch,
        "phase": phase,
        "trainable_params": sum(r["trainable_params"] for r in layers),
        "total_params": sum(r["params"] for r in layers),
        "layers": layers,
        "dropout": dropout_rows(index, view),
    }


def dropout_rows(index: ModelIndex, view: StateView) -> list[dict[str, Any]]:
    """Modules that drop at random in train mode (dropout, stochastic depth): each one's rate
    and mode. They own no parameters, so they are not layers; ``freeze.dropout`` sets them."""
    return [
        {
            "name": unit.name,
            "type": unit.type,
            "group": unit.group,
            "p": unit.p,
            "mode": "train" if view.training.get(unit.name, True) else "eval",
        }
        for unit in stochastic_modules(index)
    ]


def _layers(index: ModelIndex) -> list[tuple[str, list[str]]]:
    layers: dict[str, list[str]] = {}
    for param, owner in index.param_owner.items():
        layers.setdefault(owner or param, []).append(param)
    return list(layers.items())


def live_view(engine: FreezeEngine, thawed_in: dict[str, int | None]) -> StateView:
    """Read the model and optimizer themselves: requires_grad, group membership, module modes."""
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
    options: dict[str, ParamOptions | None],
    thawed_in: dict[str, int | None],
    *,
    method: str,
    policy: str,
    dropout: str = "follow",
) -> StateView:
    trainable = timeline.phases[phase].trainable
    lrs: dict[str, float | None] = {}
    for name, opts in options.items():
        lrs[name] = opts.lr if opts is not None else (0.0 if method == "zero_lr" else None)
    return StateView(
        trainable=trainable,
        lr=lrs,
        training=module_modes(index, trainable, policy, dropout),
        requires_grad={n: method == "zero_lr" or t for n, t in trainable.items()},
        thawed_in=thawed_in,
    )


PLAN_KEY = "plan"


class EpochOutOfRange(ThawError):
    status = 404
    code = "epoch_out_of_range"

    def __init__(self, epoch: int, epochs: int):
        self.epoch = epoch
        self.epochs = epochs
        super().__init__(
            f"epoch {epoch} is not an epoch of this job; give ?epoch= between 1 and {epochs}"
        )


STOPPED_KEY = "stopped_after"
"""Field of a job's ``:layers`` hash: the epoch after which early stopping ended the run."""


def layer_status(
    stored: Mapping[str, Any], *, epoch: int | None = None, detail: bool = False
) -> dict[str, Any]:
    """``{"groups", "epochs", "warnings"}``, or one epoch's entry when ``epoch`` is given.

    Each epoch carries ``source``: ``recorded`` or ``planned``. Rows keep their
    ``parameters`` list only with ``detail``. ``stored`` is the job's hash in the form of
    ``thaw.freezing.stored_rows``: entries are kept per state and expanded here."""
    plan_stored = stored.get(PLAN_KEY) or {}
    plan = StoredPlan(plan_stored)
    recorded = {
        int(key.split(":", 1)[1]): value
        for key, value in stored.items()
        if key.startswith("epoch:") and key.split(":", 1)[1].isdigit()
    }
    total = max(plan.last_epoch, max(recorded, default=0))
    stopped = stored.get(STOPPED_KEY)
    if stopped is not None:  # a run that stopped early has no epochs after its last
        total = min(total, int(stopped))
    if epoch is not None:
        if not 1 <= epoch <= total:
            raise EpochOutOfRange(epoch, total)
        entry = _entry(epoch, plan, recorded, stored, detail)
        if entry is None:
            raise EpochOutOfRange(epoch, total)
        return entry
    entries = (_entry(n, plan, recorded, stored, detail) for n in range(1, total + 1))
    return {
        "groups": plan_stored.get("groups", []),
        "epochs": [entry for entry in entries if entry is not None],
        "warnings": plan_stored.get("warnings", []),
    }


def _entry(
    epoch: int,
    plan: StoredPlan,
    recorded: Mapping[int, Mapping[str, Any]],
    stored: Mapping[str, Any],
    detail: bool,
) -> dict[str, Any] | None:
    base = recorded_entry(recorded[epoch], stored) if epoch in recorded else None
    source = "recorded"
    if base is None:
        base, source = plan.entry(epoch), "planned"
    if base is None:
        return None
    entry = {key: value for key, value in base.items() if key != "layers"}
    entry["source"] = source
    entry["layers"] = [_row(row, detail) for row in base.get("layers", [])]
    return entry


def _row(row: Mapping[str, Any], detail: bool) -> dict[str, Any]:
    if detail:
        return dict(row)
    return {key: value for key, value in row.items() if key != "parameters"}
