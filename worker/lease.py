"""Hold a claimed job: renew its lease from a background thread, and answer, before each
optimizer step and each checkpoint commit, whether this claim still holds it."""

from __future__ import annotations

import logging
import threading

from thaw.store import JobStore
from thaw.training.reporter import LeaseLost
from worker.store_link import OUTAGE_ERRORS, StoreLink

log = logging.getLogger(__name__)


class LeaseKeeper:
    """Renews the lease every ``interval`` seconds. ``lost`` turns true only when Redis
    answers that the claim ``token`` no longer holds the job; an unreachable Redis is
    "unknown", and training goes on."""

    def __init__(
        self,
        store: JobStore,
        job_id: str,
        worker_id: str,
        token: int,
        lease_s: float,
        interval: float,
        link: StoreLink,
        preempt: threading.Event | None = None,
    ):
        self._store = store
        self.job_id = job_id
        self.worker_id = worker_id
        self.token = token
        self._lease_s = lease_s
        self._interval = interval
        self._link = link
        self._preempt = preempt or threading.Event()
        self._stop = threading.Event()
        self.lost = False
        self._thread = threading.Thread(target=self._run, name=f"lease-{job_id}", daemon=True)

    def __enter__(self) -> LeaseKeeper:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def _renew(self) -> bool:
        return self._store.heartbeat(self.job_id, self.worker_id, self._lease_s, self.token)

    def _run(self) -> None:
        while not self._stop.wait(self._interval):
            try:
                if not self._renew():
                    self._mark_lost()
                    return
            except OUTAGE_ERRORS:
                continue
            except Exception:
                log.exception("lease renewal of %s failed", self.job_id)

    def _mark_lost(self) -> None:
        if not self.lost:
            log.warning("job %s: claim %d lost its lease to another claim", self.job_id, self.token)
        self.lost = True

    def stop_reason(self) -> str | None:
        """``lost``, ``cancel``, ``preempt`` or None (go on); one Redis round trip."""
        if self.lost:
            return "lost"
        check = self._link.read(
            lambda: self._store.check(self.job_id, self.worker_id, self.token), None
        )
        if check is not None:
            if check.state == "lost":
                self._mark_lost()
                return "lost"
            if check.state == "expired" and not self._link.read(self._renew, True):
                self._mark_lost()
                return "lost"
            if check.cancel_requested:
                return "cancel"
        return "preempt" if self._preempt.is_set() else None

    def fence(self) -> int:
        """The claim's token once Redis confirms it still holds the job (waiting out an
        outage); raises LeaseLost otherwise. Called before every checkpoint commit."""
        if self.lost:
            raise LeaseLost(self.job_id, self.token)
        check = self._link.must(
            lambda: self._store.check(self.job_id, self.worker_id, self.token), "lease check"
        )
        if check.state == "expired" and self._link.must(self._renew, "lease renewal"):
            return self.token
        if check.state != "held":
            self._mark_lost()
            raise LeaseLost(self.job_id, self.token)
        return self.token
