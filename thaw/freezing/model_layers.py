"""A base model's layer groups, modules and parameter names, to write a spec against."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from thaw.freezing.model_index import ModelIndex
from thaw.freezing.resolve import meta_model
from thaw.spec import BaseModelRef

if TYPE_CHECKING:
    from thaw.settings import Settings


def describe_model(source: str, name: str, num_classes: int, settings: Settings) -> dict[str, Any]:
    """``model_layers`` of a base model built on ``meta`` (through the shared model cache)."""
    ref = BaseModelRef(source=source, name=name)  # type: ignore[arg-type]
    _, index = meta_model(ref, num_classes, settings)
    return model_layers(index, source=source, name=name, num_classes=num_classes)


def model_layers(index: ModelIndex, *, source: str, name: str, num_classes: int) -> dict[str, Any]:
    """A model's layer groups and its parameter-owning modules, to write a spec against."""
    rows: dict[str, dict[str, Any]] = {}
    for param, owner in index.param_owner.items():
        key = owner or param
        row = rows.setdefault(
            key,
            {
                "name": key,
                "type": index.module_types.get(key, "Parameter"),
                "group": index.param_group.get(param),
                "params": 0,
                "parameters": [],
            },
        )
        tensor = index.params[param]
        row["params"] += tensor.numel()
        row["parameters"].append({"name": param, "shape": list(tensor.shape)})
    return {
        "source": source,
        "name": name,
        "num_classes": num_classes,
        "head": index.head,
        "total_params": sum(p.numel() for p in index.params.values()),
        "groups": [g.to_dict() for g in index.groups],
        "layers": list(rows.values()),
    }
