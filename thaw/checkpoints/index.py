"""The checkpoint index: which checkpoints exist, which is ``best``, which is ``last``.

A checkpoint exists only once the index lists it; folders the index does not
list (interrupted saves) are invisible to readers.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from thaw.atomic import atomic_write_json
from thaw.checkpoints.errors import CorruptCheckpoint
from thaw.checkpoints.layout import epoch_of, index_path

INDEX_VERSION = 1


@dataclass(frozen=True)
class FileInfo:
    name: str
    size: int
    sha256: str

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "size": self.size, "sha256": self.sha256}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> FileInfo:
        return cls(name=str(data["name"]), size=int(data["size"]), sha256=str(data["sha256"]))


@dataclass(frozen=True)
class CheckpointInfo:
    name: str
    epoch: int
    step: int
    metrics: dict[str, Any]
    files: list[FileInfo]
    created_at: str
    path: Path
    best: bool = False
    last: bool = False

    def to_dict(self) -> dict[str, Any]:
        """The JSON shape the API lists (no server path)."""
        return {
            "name": self.name,
            "epoch": self.epoch,
            "step": self.step,
            "metrics": dict(self.metrics),
            "files": [f.to_dict() for f in self.files],
            "created_at": self.created_at,
            "best": self.best,
            "last": self.last,
        }


@dataclass(frozen=True)
class Entry:
    """One checkpoint as recorded in meta.json and in the index."""

    name: str
    epoch: int
    step: int
    metrics: dict[str, Any]
    files: list[FileInfo]
    created_at: str

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "epoch": self.epoch,
            "step": self.step,
            "metrics": self.metrics,
            "files": [f.to_dict() for f in self.files],
            "created_at": self.created_at,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Entry:
        name = str(data["name"])
        epoch = int(data["epoch"])
        if epoch_of(name) != epoch:
            raise ValueError(f"entry {name!r} does not match epoch {epoch}")
        return cls(
            name=name,
            epoch=epoch,
            step=int(data["step"]),
            metrics=dict(data.get("metrics") or {}),
            files=[FileInfo.from_dict(f) for f in data.get("files", [])],
            created_at=str(data.get("created_at", "")),
        )

    def score(self, monitor: str) -> float | None:
        value = self.metrics.get(monitor)
        if isinstance(value, bool) or not isinstance(value, int | float):
            return None
        return float(value) if math.isfinite(value) else None


@dataclass
class Index:
    """Entries in save order (oldest first) plus the two aliases."""

    entries: list[Entry] = field(default_factory=list)
    best: str | None = None
    last: str | None = None
    monitor: str = "val_loss"
    mode: str = "min"
    token: int | None = None
    """The highest fencing token that claimed the run folder; a commit with a lower one is
    refused (see ``thaw.checkpoints.commit``)."""
    resume: dict[str, Any] | None = None
    """In an artifact store's index only: the run's step resume point (its meta.json fields
    and ``files``), published under the same fence as the checkpoints."""

    def get(self, name: str) -> Entry | None:
        return next((e for e in self.entries if e.name == name), None)

    def names(self) -> list[str]:
        return [e.name for e in self.entries]

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "version": INDEX_VERSION,
            "monitor": self.monitor,
            "mode": self.mode,
            "best": self.best,
            "last": self.last,
            "checkpoints": [e.to_dict() for e in self.entries],
        }
        if self.token is not None:
            out["token"] = self.token
        if self.resume is not None:
            out["resume"] = self.resume
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Index:
        entries = [Entry.from_dict(e) for e in data.get("checkpoints", [])]
        names = {e.name for e in entries}
        best, last = data.get("best"), data.get("last")
        for alias in (best, last):
            if alias is not None and alias not in names:
                raise ValueError(f"alias points to unlisted checkpoint {alias!r}")
        return cls(
            entries=entries,
            best=best,
            last=last,
            monitor=str(data.get("monitor", "val_loss")),
            mode=str(data.get("mode", "min")),
            token=_token(data.get("token")),
            resume=_resume(data.get("resume")),
        )


def _token(value: Any) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"token {value!r} is not a non-negative int")
    return value


def _resume(value: Any) -> dict[str, Any] | None:
    if value is None:
        return None
    if not isinstance(value, dict) or not isinstance(value.get("step"), int):
        raise ValueError("resume is not a step resume point")
    for info in value.get("files", []):
        FileInfo.from_dict(info)  # raises for a malformed file record
    return value


def read_index(run_dir: str | Path) -> Index:
    """The run's index; an empty one if nothing was saved yet."""
    path = index_path(run_dir)
    try:
        raw = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return Index()
    try:
        data = json.loads(raw)
        if not isinstance(data, dict) or data.get("version") != INDEX_VERSION:
            raise ValueError("unknown index version")
        return Index.from_dict(data)
    except (ValueError, KeyError, TypeError) as exc:
        raise CorruptCheckpoint(f"checkpoint index {path} is unreadable: {exc}") from exc


def write_index(run_dir: str | Path, index: Index) -> None:
    atomic_write_json(index_path(run_dir), index.to_dict())


def choose_best(entries: list[Entry], monitor: str, mode: str) -> str | None:
    """The entry with the best finite ``monitor`` value, the earliest on ties.

    With no entry carrying the metric, the newest entry is best.
    """
    best: Entry | None = None
    best_score: float | None = None
    for entry in entries:
        score = entry.score(monitor)
        if score is None:
            continue
        if best_score is None or (score < best_score if mode == "min" else score > best_score):
            best, best_score = entry, score
    if best is not None:
        return best.name
    return entries[-1].name if entries else None


def index_checkpoints(index: Index, root: Path) -> list[CheckpointInfo]:
    """The checkpoints ``index`` lists, as if their folders were under ``root``."""
    return [checkpoint_info(root, entry, index) for entry in index.entries]


def checkpoint_info(root: Path, entry: Entry, index: Index) -> CheckpointInfo:
    return CheckpointInfo(
        name=entry.name,
        epoch=entry.epoch,
        step=entry.step,
        metrics=dict(entry.metrics),
        files=list(entry.files),
        created_at=entry.created_at,
        path=root / entry.name,
        best=entry.name == index.best,
        last=entry.name == index.last,
    )
