"""Keep a claimed job's lease alive from a background thread."""

from __future__ import annotations

import threading

from thaw.store import JobStore


class LeaseKeeper:
    """Renews the lease every ``interval`` seconds; ``lost`` turns true when another
    worker holds the job (our lease expired and it was claimed again)."""

    def __init__(
        self, store: JobStore, job_id: str, worker_id: str, lease_s: float, interval: float
    ):
        self._store = store
        self._job_id = job_id
        self._worker_id = worker_id
        self._lease_s = lease_s
        self._interval = interval
        self._stop = threading.Event()
        self.lost = False
        self._thread = threading.Thread(target=self._run, name=f"lease-{job_id}", daemon=True)

    def __enter__(self) -> LeaseKeeper:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def _run(self) -> None:
        while not self._stop.wait(self._interval):
            try:
                if not self._store.heartbeat(self._job_id, self._worker_id, self._lease_s):
                    self.lost = True
                    return
            except Exception:
                continue
