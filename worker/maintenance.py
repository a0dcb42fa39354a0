"""Background duties of every worker: its liveness heartbeat, and the sweeper that sends
again every job that would otherwise wait forever: a running job whose worker died (its
lease expired) and a queued job with no message in the broker (lost in a Redis restart,
or taken by a worker that died before claiming it). An evaluation or export whose worker
died is failed (``worker_lost``), so nobody waits on it. The store grants one re-dispatch per
job and period across all workers, so N sweepers send one message, not N.

A lease that lapsed while Redis was away (restarted, or out of this worker's reach) may
belong to a holder that is alive and renews it as soon as it can: a running job is sent
again only once Redis has answered for a whole lease since (this worker's view here;
the store's own, since its restart, in the store's scripts)."""

from __future__ import annotations

import contextlib
import logging
import threading
import time

from thaw.dispatch import Enqueue
from thaw.settings import Settings
from thaw.store import JobStatus, JobStore, WorkerRegistry
from thaw.store.checkpoint_tasks import CheckpointTaskStore
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
        self.tasks = CheckpointTaskStore(client)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="thaw-maintenance", daemon=True)
        self._answering_since: float | None = time.monotonic()

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
        answered = self._answered_a_lease()
        if answered:
            for task_id in self.tasks.fail_orphans(set(self.registry.live_workers())):
                log.warning("%s failed: its worker stopped while running it", task_id)
        expired = self.jobs.expired_leases() if answered else []
        candidates = [*expired, *self.jobs.ids_by_status(JobStatus.QUEUED)]
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

    def _answered_a_lease(self) -> bool:
        since = self._answering_since
        return since is not None and time.monotonic() - since >= self.settings.lease_seconds

    def _run(self) -> None:
        while True:
            try:
                self.tick()
                if self._answering_since is None:
                    self._answering_since = time.monotonic()
            except OUTAGE_ERRORS as exc:
                self._answering_since = None
                log.warning("maintenance skipped a tick: Redis unreachable (%s)", exc)
            except Exception:
                log.exception("maintenance tick failed")
            if self._stop.wait(self.settings.heartbeat_seconds):
                return
