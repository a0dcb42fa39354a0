"""Report a run into the job store: progress, metrics, phases, layer status, events.

Every write carries the claim's fencing token, so the store refuses it once another
claim holds the job, and goes through the job's ``StoreLink``, so a Redis outage
delays writes instead of failing the job."""

from __future__ import annotations

from typing import Any

from thaw.freezing.layer_rows import STOPPED_KEY
from thaw.freezing.stored_rows import compact_recorded
from thaw.store import JobStore
from worker.lease import LeaseKeeper
from worker.store_link import StoreLink

MAX_NAMES_IN_EVENT = 50


class StoreReporter:
    def __init__(self, store: JobStore, lease: LeaseKeeper, link: StoreLink):
        self.store = store
        self.lease = lease
        self.link = link
        self.job_id = lease.job_id
        self.worker_id = lease.worker_id
        self.token = lease.token
        self._progress: dict[str, Any] = {}
        self._metrics: dict[str, Any] = {}
        self._blobs_sent: set[str] = set()

    def _event(self, type: str, data: dict[str, Any], level: str = "info") -> None:
        self.link.send(
            lambda: self.store.holder_event(
                self.job_id, self.worker_id, self.token, type, data, level
            )
        )

    def _write_progress(self) -> None:
        progress, metrics = dict(self._progress), dict(self._metrics)
        self.link.send(
            lambda: self.store.update_progress(
                self.job_id, self.worker_id, progress, metrics, token=self.token
            ),
            coalesce="progress",
        )

    def progress(self, progress: dict[str, Any]) -> None:
        self._progress = progress
        self._write_progress()
        data = dict(progress)
        self.link.send(
            lambda: self.store.holder_event(
                self.job_id, self.worker_id, self.token, "progress", data, "debug"
            ),
            coalesce="progress-event",
        )

    def metrics(self, epoch: int, metrics: dict[str, float]) -> None:
        self._metrics = dict(metrics)
        self._write_progress()
        self._event("metrics", {"epoch": epoch, **metrics})

    def phase(self, phase: int, step: int, thawed: list[str], frozen: list[str]) -> None:
        self._event(
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
        """Record an epoch's rows once per distinct state; the epoch itself stays small."""
        summary = {
            "epoch": epoch,
            "phase": entry["phase"],
            "trainable_params": entry["trainable_params"],
            "total_params": entry["total_params"],
        }
        job, worker, token = self.job_id, self.worker_id, self.token
        split = compact_recorded(epoch, entry)
        for field, value in split.blobs.items():
            if field not in self._blobs_sent:
                self._blobs_sent.add(field)
                self._set_layers(field, value)
        self._set_layers(f"epoch:{epoch}", split.record)
        self.link.send(lambda: self.store.holder_set(job, worker, token, "", "trainable", summary))

    def _set_layers(self, field: str, value: Any) -> None:
        job, worker, token = self.job_id, self.worker_id, self.token
        self.link.send(lambda: self.store.holder_set(job, worker, token, ":layers", field, value))

    def checkpoint(self, info: dict[str, Any]) -> None:
        self._event("checkpoint", info)

    def plateau(self, info: dict[str, Any]) -> None:
        self._event("plateau", info)

    def stopped_early(self, info: dict[str, Any]) -> None:
        job, worker, token = self.job_id, self.worker_id, self.token
        value = dict(info)
        self._set_layers(STOPPED_KEY, int(info["epoch"]))
        self.link.send(
            lambda: self.store.holder_set(job, worker, token, "", "stopped_early", value)
        )
        self._event("stopped_early", value)

    def log(self, level: str, message: str) -> None:
        self._event("log", {"message": message}, level)

    def should_stop(self) -> bool:
        return self.stop_reason() is not None

    def stop_reason(self) -> str | None:
        self.link.flush()
        return self.lease.stop_reason()

    def fence(self) -> int:
        return self.lease.fence()
