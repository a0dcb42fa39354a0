"""Run one claimed job: the body of the Celery task, free of Celery itself."""

from __future__ import annotations

import logging

from thaw.errors import ThawError
from thaw.settings import Settings
from thaw.spec import JobSpec
from thaw.store import DatasetStore, EventLog, JobStore
from thaw.uploads import tenant_uploads
from worker.lease import LeaseKeeper
from worker.registration import activity
from worker.store_reporter import StoreReporter

log = logging.getLogger(__name__)


def run_job(job_id: str, worker_id: str, settings: Settings, client) -> str:
    """Claim, train and finish ``job_id``; returns what happened, for the worker log."""
    store = JobStore(client)
    job = store.claim(job_id, worker_id, settings.lease_seconds)
    if job is None:
        return "not claimable"
    events = EventLog(client)
    uploads = tenant_uploads(DatasetStore(client), job.tenant)
    with (
        LeaseKeeper(
            store, job_id, worker_id, settings.lease_seconds, settings.heartbeat_seconds
        ) as lease,
        activity.running(job_id, job.tenant),
    ):
        reporter = activity.observe(StoreReporter(store, events, job_id, worker_id, lease))
        try:
            from thaw.training import train

            spec = JobSpec.model_validate(job.spec)
            result = train(spec, settings.jobs_dir / job_id, settings, reporter, uploads=uploads)
        except ThawError as exc:
            log.warning("job %s failed: %s", job_id, exc)
            store.finish(job_id, worker_id, "failed", {"code": exc.code, "message": str(exc)})
            return "failed"
        except Exception as exc:
            log.exception("job %s crashed", job_id)
            message = f"{type(exc).__name__}: {exc}"
            store.finish(
                job_id, worker_id, "failed", {"code": "internal_error", "message": message}
            )
            return "failed"
        if lease.lost:
            return "lease lost"
        store.finish(job_id, worker_id, result.status)
        return result.status
