"""Per-layer trainable status: one row shape for plans, live models and recorded epochs.

A layer is a module that owns parameters directly; a parameter owned by the model
itself (ViT's ``class_token``) is its own row.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from thaw.model_index import ModelIndex


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
        flag: bool | str = True if count == total else False if count == 0 else "partial"
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
    }


def _layers(index: ModelIndex) -> list[tuple[str, list[str]]]:
    layers: dict[str, list[str]] = {}
    for param, owner in index.param_owner.items():
        layers.setdefault(owner or param, []).append(param)
    return list(layers.items())
