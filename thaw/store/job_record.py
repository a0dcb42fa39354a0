"""The job record as the stores hand it out."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from thaw.job_status import JobStatus
from thaw.store.codec import iso, loads, number


@dataclass(frozen=True, slots=True)
class JobError:
    code: str
    message: str

    def to_dict(self) -> dict[str, str]:
        return {"code": self.code, "message": self.message}


@dataclass(frozen=True, slots=True)
class Job:
    """One job. ``*_at`` are ISO 8601 UTC strings, ``*_ts`` the same instants in epoch seconds."""

    id: str
    tenant: str
    status: JobStatus
    spec: dict[str, Any]
    name: str | None
    progress: dict[str, Any]
    metrics: dict[str, Any]
    trainable: dict[str, Any]
    attempts: int
    max_attempts: int
    error: JobError | None
    cancel_requested: bool
    worker: str | None
    created_ts: float
    updated_ts: float
    started_ts: float | None = None
    finished_ts: float | None = None
    lease_expires_ts: float | None = None
    token: int = 0
    """The fencing token of the latest claim; every write of its holder carries it."""
    stopped_early: dict[str, Any] | None = None
    """``{"epoch", "reason", "monitor", "best"}`` when early stopping ended the run."""
    created_at: str = field(init=False)
    updated_at: str = field(init=False)
    started_at: str | None = field(init=False)
    finished_at: str | None = field(init=False)
    lease_expires_at: str | None = field(init=False)

    def __post_init__(self) -> None:
        for name in ("created", "updated", "started", "finished", "lease_expires"):
            object.__setattr__(self, f"{name}_at", iso(getattr(self, f"{name}_ts")))

    @property
    def terminal(self) -> bool:
        return self.status.terminal

    @classmethod
    def from_hash(cls, h: dict[str, str]) -> Job:
        error = loads(h.get("error"))
        return cls(
            id=h["id"],
            tenant=h["tenant"],
            status=JobStatus(h["status"]),
            spec=loads(h.get("spec"), {}),
            name=h.get("name") or None,
            progress=loads(h.get("progress"), {}),
            metrics=loads(h.get("metrics"), {}),
            trainable=loads(h.get("trainable"), {}),
            attempts=int(h.get("attempts") or 0),
            max_attempts=int(h["max_attempts"]),
            error=JobError(error["code"], error["message"]) if error else None,
            cancel_requested=h.get("cancel_requested") == "1",
            worker=h.get("worker") or None,
            created_ts=float(h["created_at"]),
            updated_ts=float(h["updated_at"]),
            started_ts=number(h.get("started_at")),
            finished_ts=number(h.get("finished_at")),
            lease_expires_ts=number(h.get("lease_expires_at")),
            token=int(h.get("token") or 0),
            stopped_early=loads(h.get("stopped_early")),
        )

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready view with ISO timestamps (the numeric ``*_ts`` are left out)."""
        return {
            "id": self.id,
            "tenant": self.tenant,
            "name": self.name,
            "status": self.status.value,
            "spec": self.spec,
            "progress": self.progress,
            "metrics": self.metrics,
            "trainable": self.trainable,
            "stopped_early": self.stopped_early,
            "attempts": self.attempts,
            "max_attempts": self.max_attempts,
            "error": self.error.to_dict() if self.error else None,
            "cancel_requested": self.cancel_requested,
            "worker": self.worker,
            "lease_expires_at": self.lease_expires_at,
            "created_at": self.created_at,
            "started_at": self.started_at,
            "finished_at": self.finished_at,
            "updated_at": self.updated_at,
        }
