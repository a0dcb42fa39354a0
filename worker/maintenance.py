"""Background duties of every worker: its liveness heartbeat, and the sweeper that sends
again every job that would otherwise wait forever: a running job whose worker died (its
lease expired) and a queued job with no message in the broker (lost in a Redis restart,
or taken by a worker that died before claiming it). The store grants one re-dispatch per
job and period across all workers, so N sweepers send one message, not N."""

from __future__ import annotations

import contextlib
import logging
import threading

from thaw.dispatch import Enqueue
from thaw.settings import Settings
from thaw.store import JobStatus, JobStore, WorkerRegistry
from worker.broker_queue import waiting_job_ids
from worker.registration import heartbeat_info
from worker.store_link import OUTAGE_ERRORS

log = logging.getLogger(__name__)


class Maintenance:
    def __init__(self, settings: Settings, client, worker_id: str, enqueue: Enqueue):
        self.settings = settings
        self.client = client
        self.enqueue = enqueue
        self.worker_id = worker_id
        self.jobs = JobStore(client)
        self.registry = WorkerRegistry(client)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="thaw-maintenance", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        with contextlib.suppress(Exception):
            self.registry.remove_worker(self.worker_id)

    def tick(self) -> list[str]:
        interval = self.settings.heartbeat_seconds
        self.registry.record_worker_heartbeat(
            self.worker_id, ttl=3 * interval, info=heartbeat_info()
        )
        return self.sweep()

    def sweep(self) -> list[str]:
        """Send again the jobs that have no live message; returns the ids sent."""
        candidates = [*self.jobs.expired_leases(), *self.jobs.ids_by_status(JobStatus.QUEUED)]
        if not candidates:
            return []
        waiting = waiting_job_ids(self.client, self.settings.queue)
        sent = []
        for job_id in candidates:
            if job_id in waiting:
                continue
            if self.jobs.redispatch(job_id, self.settings.redispatch_period):
                log.info("re-dispatching %s: it has no live message", job_id)
                self.enqueue(job_id)
                sent.append(job_id)
        return sent

    def _run(self) -> None:
        while True:
            try:
                self.tick()
            except OUTAGE_ERRORS as exc:
                log.warning("maintenance skipped a tick: Redis unreachable (%s)", exc)
            except Exception:
                log.exception("maintenance tick failed")
            if self._stop.wait(self.settings.heartbeat_seconds):
                return
