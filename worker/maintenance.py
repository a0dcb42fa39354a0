"""Background duties of every worker: its liveness heartbeat and re-queueing of jobs
whose worker died (their lease expired)."""

from __future__ import annotations

import contextlib
import logging
import threading

from thaw.dispatch import Enqueue
from thaw.settings import Settings
from thaw.store import JobStore, WorkerRegistry
from worker.registration import heartbeat_info

log = logging.getLogger(__name__)


class Maintenance:
    def __init__(self, settings: Settings, client, worker_id: str, enqueue: Enqueue):
        self.settings = settings
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
        stale = self.jobs.expired_leases()
        for job_id in stale:
            log.info("re-queueing %s: its worker's lease expired", job_id)
            self.enqueue(job_id)
        return stale

    def _run(self) -> None:
        while True:
            try:
                self.tick()
            except Exception:
                log.exception("maintenance tick failed")
            if self._stop.wait(self.settings.heartbeat_seconds):
                return
