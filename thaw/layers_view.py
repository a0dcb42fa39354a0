"""A job's per-layer status: what the worker recorded per epoch, else what was planned.

Stored blobs (``JobStore.load_layer_status``): ``plan`` is the submit-time plan table
(with parameter detail); ``epoch:<n>`` is one element of its ``epochs`` as recorded by the
worker from the live model.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from thaw.errors import ThawError

if TYPE_CHECKING:
    from thaw.model_index import ModelIndex
    from thaw.settings import Settings

PLAN_KEY = "plan"


class EpochOutOfRange(ThawError):
    code = "epoch_out_of_range"

    def __init__(self, epoch: int, epochs: int):
        self.epoch = epoch
        self.epochs = epochs
        super().__init__(
            f"epoch {epoch} is not an epoch of this job; give ?epoch= between 1 and {epochs}"
        )


def epoch_key(epoch: int) -> str:
    return f"epoch:{epoch}"


def layer_status(
    stored: Mapping[str, Any], *, epoch: int | None = None, detail: bool = False
) -> dict[str, Any]:
    """``{"groups", "epochs", "warnings"}``, or one epoch's entry when ``epoch`` is given.

    Each epoch carries ``source``: ``recorded`` or ``planned``. Rows keep their
    ``parameters`` list only with ``detail``."""
    plan = stored.get(PLAN_KEY) or {}
    planned = {int(e["epoch"]): e for e in plan.get("epochs", [])}
    recorded = {
        int(key.split(":", 1)[1]): value
        for key, value in stored.items()
        if key.startswith("epoch:") and key.split(":", 1)[1].isdigit()
    }
    total = max([*planned, *recorded], default=0)
    if epoch is not None:
        if not 1 <= epoch <= total:
            raise EpochOutOfRange(epoch, total)
        return _entry(epoch, planned, recorded, detail)
    return {
        "groups": plan.get("groups", []),
        "epochs": [
            _entry(n, planned, recorded, detail)
            for n in range(1, total + 1)
            if n in planned or n in recorded
        ],
        "warnings": plan.get("warnings", []),
    }


def _entry(
    epoch: int,
    planned: Mapping[int, dict[str, Any]],
    recorded: Mapping[int, dict[str, Any]],
    detail: bool,
) -> dict[str, Any]:
    if epoch in recorded:
        base, source = recorded[epoch], "recorded"
    elif epoch in planned:
        base, source = planned[epoch], "planned"
    else:
        raise EpochOutOfRange(epoch, max([*planned, *recorded], default=0))
    entry = {key: value for key, value in base.items() if key != "layers"}
    entry["source"] = source
    entry["layers"] = [_row(row, detail) for row in base.get("layers", [])]
    return entry


def _row(row: Mapping[str, Any], detail: bool) -> dict[str, Any]:
    if detail:
        return dict(row)
    return {key: value for key, value in row.items() if key != "parameters"}


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
    from thaw.model_index import index_model
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
