"""A job's curves from its stored events: per reported step loss and lr per optimizer
group, per epoch validation metrics with the phase and trainable counts, and each thaw;
as JSON or as one CSV."""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from thaw.store import Event, EventLog

READ_PAGE = 1000
STEP_KEYS = ("step", "epoch", "phase", "loss")
PHASE_KEYS = ("phase", "step", "thawed_count", "frozen_count")
COUNT_KEYS = ("phase", "trainable_params", "total_params")


@dataclass
class MetricsExport:
    steps: list[dict[str, Any]] = field(default_factory=list)
    epochs: list[dict[str, Any]] = field(default_factory=list)
    phases: list[dict[str, Any]] = field(default_factory=list)

    def to_dict(self, job_id: str) -> dict[str, Any]:
        return {"job_id": job_id, "steps": self.steps, "epochs": self.epochs, "phases": self.phases}


def read_all(events: EventLog, job_id: str) -> list[Event]:
    """Every stored event of the job, oldest first."""
    out: list[Event] = []
    after: str | None = None
    while True:
        page = events.read(job_id, after=after, limit=READ_PAGE)
        out.extend(page)
        if len(page) < READ_PAGE:
            return out
        after = page[-1].id


def _finite(value: Any) -> Any:
    return None if isinstance(value, float) and not math.isfinite(value) else value


def collect(events: Iterable[Event], layers: Mapping[str, Any] | None = None) -> MetricsExport:
    """The export of ``events``; ``layers`` (the stored layer status) adds each epoch's
    trainable and total parameter counts."""
    export = MetricsExport()
    for event in events:
        data = event.data
        if event.type == "progress" and "loss" in data:
            row = {key: data.get(key) for key in STEP_KEYS}
            row["lr"] = [_finite(v) for v in data.get("lr", [])]
            row["time"] = event.time
            export.steps.append(row)
        elif event.type == "metrics":
            row = {key: _finite(v) for key, v in data.items()}
            counts = (layers or {}).get(f"epoch:{data.get('epoch')}") or {}
            row.update({key: counts[key] for key in COUNT_KEYS if key in counts})
            row["time"] = event.time
            export.epochs.append(row)
        elif event.type == "phase":
            row = {key: data.get(key) for key in PHASE_KEYS}
            row["time"] = event.time
            export.phases.append(row)
    return export


def to_csv(export: MetricsExport) -> str:
    """One row per step, epoch and thaw, in stream order within each kind; ``kind`` says
    which; lr columns ``lr_group_<k>``, validation columns as the metrics events name them."""
    lr_width = max((len(r["lr"]) for r in export.steps), default=0)
    metric_keys: list[str] = []
    for row in export.epochs:
        for key in row:
            if key not in metric_keys and key not in (*STEP_KEYS, *COUNT_KEYS, "time"):
                metric_keys.append(key)
    columns = [
        "kind",
        "time",
        *STEP_KEYS,
        *[f"lr_group_{k}" for k in range(lr_width)],
        *metric_keys,
        "trainable_params",
        "total_params",
        "thawed_count",
        "frozen_count",
    ]
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, columns, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    for row in export.steps:
        lrs = {f"lr_group_{k}": v for k, v in enumerate(row["lr"])}
        writer.writerow({"kind": "step", **row, **lrs})
    for row in export.epochs:
        writer.writerow({"kind": "epoch", **row})
    for row in export.phases:
        writer.writerow({"kind": "phase", **row})
    return buffer.getvalue()
