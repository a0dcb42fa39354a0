"""A base model's layer groups, modules and parameter names, to write a spec against."""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Any

from thaw.freezing.model_index import ModelIndex

if TYPE_CHECKING:
    from thaw.settings import Settings

_DESCRIBED: dict[tuple[str, str, int, str], dict[str, Any]] = {}
_DESCRIBED_MAX = 32
_LOCK = threading.Lock()


def describe_model(source: str, name: str, num_classes: int, settings: Settings) -> dict[str, Any]:
    """``model_layers`` of a base model built on ``meta``; cached per model and class count."""
    key = (source, name, num_classes, str(settings.models_dir))
    with _LOCK:
        cached = _DESCRIBED.get(key)
    if cached is not None:
        return cached
    from thaw.freezing.model_index import index_model
    from thaw.models import build_model
    from thaw.spec import BaseModelRef

    ref = BaseModelRef(source=source, name=name)  # type: ignore[arg-type]
    built = build_model(ref, num_classes, settings, meta=True)
    described = model_layers(
        index_model(built.model, built.head), source=source, name=name, num_classes=num_classes
    )
    with _LOCK:
        if len(_DESCRIBED) >= _DESCRIBED_MAX:
            _DESCRIBED.pop(next(iter(_DESCRIBED)))
        _DESCRIBED[key] = described
    return described


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
