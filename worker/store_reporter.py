"""Report a run into the job store: progress, metrics, phases, layer status, events."""

from __future__ import annotations

from typing import Any

from thaw.store import EventLog, JobStore
from worker.lease import LeaseKeeper

MAX_NAMES_IN_EVENT = 50


class StoreReporter:
    def __init__(
        self, store: JobStore, events: EventLog, job_id: str, worker_id: str, lease: LeaseKeeper
    ):
        self.store = store
        self.events = events
        self.job_id = job_id
        self.worker_id = worker_id
        self.lease = lease
        self._progress: dict[str, Any] = {}
        self._metrics: dict[str, Any] = {}

    def progress(self, progress: dict[str, Any]) -> None:
        self._progress = progress
        self.store.update_progress(self.job_id, self.worker_id, progress, self._metrics)
        self.events.append(self.job_id, "progress", progress, level="debug")

    def metrics(self, epoch: int, metrics: dict[str, float]) -> None:
        self._metrics = dict(metrics)
        self.store.update_progress(self.job_id, self.worker_id, self._progress, self._metrics)
        self.events.append(self.job_id, "metrics", {"epoch": epoch, **metrics})

    def phase(self, phase: int, step: int, thawed: list[str], frozen: list[str]) -> None:
        self.events.append(
            self.job_id,
            "phase",
            {
                "phase": phase,
                "step": step,
                "thawed": thawed[:MAX_NAMES_IN_EVENT],
                "thawed_count": len(thawed),
                "frozen": frozen[:MAX_NAMES_IN_EVENT],
                "frozen_count": len(frozen),
            },
        )

    def layers(self, epoch: int, entry: dict[str, Any]) -> None:
        self.store.save_layer_status(self.job_id, f"epoch:{epoch}", entry)
        self.store.set_trainable(
            self.job_id,
            {
                "epoch": epoch,
                "phase": entry["phase"],
                "trainable_params": entry["trainable_params"],
                "total_params": entry["total_params"],
            },
        )

    def checkpoint(self, info: dict[str, Any]) -> None:
        self.events.append(self.job_id, "checkpoint", info)

    def log(self, level: str, message: str) -> None:
        self.events.append(self.job_id, "log", {"message": message}, level=level)

    def should_stop(self) -> bool:
        return self.lease.lost or self.store.is_cancel_requested(self.job_id)
