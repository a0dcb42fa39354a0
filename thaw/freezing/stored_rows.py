"""The stored form of a job's per-layer status, sized by phases rather than epochs.

A job's ``:layers`` hash holds:

- ``plan``: the submit-time plan with each distinct epoch entry once (``entries``, without
  ``epoch``) and ``runs`` of ``[first_epoch, last_epoch, entry_index]``;
- ``epoch:<n>``: what the worker recorded for epoch ``n``: its counts, the field of its rows
  and, after a checkpoint, the field of the names of the layers that changed;
- ``blob:<digest>``: a JSON value named by its content (a rows list, a list of names), so
  epochs in the same state share one.

Older hashes (a plan with every epoch under ``epochs``, an ``epoch:<n>`` with its
``layers``) read the same.
"""

from __future__ import annotations

import bisect
import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

BLOB_PREFIX = "blob:"
ENTRY_COUNTS = ("phase", "trainable_params", "total_params")


def blob_field(value: Any) -> str:
    canonical = json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return BLOB_PREFIX + hashlib.sha256(canonical.encode()).hexdigest()[:32]


def compact_plan(table: Mapping[str, Any]) -> dict[str, Any]:
    """The plan table to store: every key but ``epochs``, whose entries are kept once per
    phase (a planned entry is a function of its phase)."""
    stored = {key: value for key, value in table.items() if key != "epochs"}
    entries: list[dict[str, Any]] = []
    seen: dict[int, int] = {}
    runs: list[list[int]] = []
    for epoch_entry in table.get("epochs", []):
        phase = int(epoch_entry["phase"])
        if phase not in seen:
            seen[phase] = len(entries)
            entries.append({key: value for key, value in epoch_entry.items() if key != "epoch"})
        epoch, index = int(epoch_entry["epoch"]), seen[phase]
        if runs and runs[-1][2] == index and runs[-1][1] == epoch - 1:
            runs[-1][1] = epoch
        else:
            runs.append([epoch, epoch, index])
    stored["entries"] = entries
    stored["runs"] = runs
    return stored


@dataclass(frozen=True)
class RecordedEpoch:
    """One recorded epoch split for storage: ``blobs`` (field -> value) and the small
    ``record`` stored under ``epoch:<n>`` that names them."""

    blobs: dict[str, Any]
    record: dict[str, Any]


def compact_recorded(epoch: int, entry: Mapping[str, Any]) -> RecordedEpoch:
    """Rows without their ``changed`` flags go to a shared blob; the flags become the list
    of changed names (absent when the entry carries none)."""
    layers = entry.get("layers", [])
    rows = [{key: value for key, value in row.items() if key != "changed"} for row in layers]
    rows_field = blob_field(rows)
    blobs: dict[str, Any] = {rows_field: rows}
    record: dict[str, Any] = {"epoch": epoch, **{key: entry[key] for key in ENTRY_COUNTS}}
    record["rows"] = rows_field
    if "dropout" in entry:
        dropout_field = blob_field(entry["dropout"])
        blobs[dropout_field] = entry["dropout"]
        record["dropout"] = dropout_field
    if any("changed" in row for row in layers):
        changed = [row["name"] for row in layers if row.get("changed")]
        changed_field = blob_field(changed)
        blobs[changed_field] = changed
        record["changed"] = changed_field
    return RecordedEpoch(blobs, record)


class StoredPlan:
    """The planned entry of any epoch, read from either stored form."""

    def __init__(self, plan: Mapping[str, Any]):
        if "runs" in plan:
            self._runs = [tuple(int(v) for v in run) for run in plan["runs"]]
            self._entries = list(plan.get("entries", []))
        else:
            self._entries = [
                {k: v for k, v in e.items() if k != "epoch"} for e in plan.get("epochs", [])
            ]
            self._runs = [
                (int(e["epoch"]), int(e["epoch"]), i) for i, e in enumerate(plan.get("epochs", []))
            ]
        self._firsts = [run[0] for run in self._runs]

    @property
    def last_epoch(self) -> int:
        return max((run[1] for run in self._runs), default=0)

    def entry(self, epoch: int) -> dict[str, Any] | None:
        at = bisect.bisect_right(self._firsts, epoch) - 1
        if at < 0 or epoch > self._runs[at][1]:
            return None
        return {"epoch": epoch, **self._entries[self._runs[at][2]]}


def recorded_entry(record: Mapping[str, Any], stored: Mapping[str, Any]) -> dict[str, Any] | None:
    """A recorded epoch's full entry, rows with their ``changed`` flags when it has them;
    ``None`` when the blob of its rows is missing."""
    if "rows" not in record:
        return dict(record)
    rows = stored.get(str(record["rows"]))
    if rows is None:
        return None
    entry: dict[str, Any] = {key: record[key] for key in ("epoch", *ENTRY_COUNTS)}
    changed_field = record.get("changed")
    if changed_field is None:
        entry["layers"] = rows
    else:
        changed = set(stored.get(str(changed_field)) or [])
        entry["layers"] = [{**row, "changed": row["name"] in changed} for row in rows]
    if "dropout" in record:
        entry["dropout"] = stored.get(str(record["dropout"])) or []
    return entry
