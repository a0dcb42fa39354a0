"""Run one claimed job: the body of the Celery task, free of Celery itself."""

from __future__ import annotations

import gc
import logging
import threading
from typing import Any

from thaw.checkpoints.errors import FencedOut
from thaw.checkpoints.remote import store_run
from thaw.disk_space import disk_full, is_disk_full
from thaw.dispatch import Enqueue
from thaw.errors import ThawError
from thaw.run_files import clean_scratch
from thaw.settings import Settings
from thaw.spec import JobSpec, validation_context
from thaw.store import Dataset, DatasetStore, Job, JobStore
from thaw.training.memory import release_memory
from thaw.upload_cache import held_uploads
from thaw.uploads import tenant_uploads
from worker.lease import LeaseKeeper
from worker.registration import activity
from worker.store_link import StoreLink, StoreUnreachable
from worker.store_reporter import StoreReporter

log = logging.getLogger(__name__)


def run_job(
    job_id: str,
    worker_id: str,
    settings: Settings,
    client,
    *,
    enqueue: Enqueue | None = None,
    preempt: threading.Event | None = None,
) -> str:
    """Claim, train and finish ``job_id``; returns what happened, for the worker log.

    ``preempt`` set (the worker shuts down) makes the run save a step checkpoint and hand
    the job back to the queue through ``enqueue``."""
    store = JobStore(client)
    link = StoreLink(settings.store_outage_seconds, settings.store_outbox_max)
    try:
        job = link.must(lambda: store.claim(job_id, worker_id, settings.lease_seconds), "claim")
    except StoreUnreachable as exc:
        log.warning("job %s not claimed (the sweeper sends it again): %s", job_id, exc)
        return "not claimed"
    if job is None:
        return "not claimable"
    try:
        with (
            LeaseKeeper(
                store,
                job_id,
                worker_id,
                job.token,
                settings.lease_seconds,
                settings.heartbeat_seconds,
                link,
                preempt,
            ) as lease,
            activity.running(job_id, job.tenant),
            held_uploads(),  # its uploads stay in this host's cache while it trains
        ):
            reporter = activity.observe(StoreReporter(store, lease, link))
            status, error = _train(job, reporter, settings, DatasetStore(client), link)
            if status != "lost":  # a newer claim holds the run: its files are not ours
                _clean_scratch(settings, job_id, moved=status == "preempted")
            return _settle(store, link, lease, status, error, enqueue)
    except StoreUnreachable as exc:
        log.error("job %s: %s; its lease lapses and another worker resumes it", job_id, exc)
        return "store unreachable"
    finally:
        gc.collect()
        release_memory()


def _train(
    job: Job, reporter: StoreReporter, settings: Settings, datasets: DatasetStore, link: StoreLink
) -> tuple[str, dict[str, str] | None]:
    lookup = tenant_uploads(datasets, job.tenant)

    def uploads(dataset_id: str) -> Dataset | None:
        return link.must(lambda: lookup(dataset_id), "dataset lookup")

    try:
        from thaw.training import train  # the training stack loads with the first job

        spec = JobSpec.model_validate(job.spec, context=validation_context(settings))
        run_dir = settings.jobs_dir / job.id
        remote = store_run(settings, job.id, outage_seconds=settings.artifacts_outage_seconds)
        result = train(
            spec, run_dir, settings, reporter, uploads=uploads, tenant=job.tenant, remote=remote
        )
    except FencedOut:  # the lease, or the run folder's fence, says a newer claim holds it
        return "lost", None
    except StoreUnreachable:
        raise
    except ThawError as exc:
        log.warning("job %s failed: %s", job.id, exc)
        return "failed", {"code": exc.code, "message": str(exc)}
    except Exception as exc:
        if is_disk_full(exc):
            full = disk_full(
                settings.jobs_dir / job.id, "the job", exc, settings.disk_reserve_bytes
            )
            log.warning("job %s failed: %s", job.id, full)
            return "failed", {"code": full.code, "message": str(full)}
        log.exception("job %s crashed", job.id)
        return "failed", {"code": "internal_error", "message": f"{type(exc).__name__}: {exc}"}
    return result.status, None


def _clean_scratch(settings: Settings, job_id: str, *, moved: bool) -> None:
    """Before the job is finished or handed back, while this claim still holds it."""
    try:
        removed = clean_scratch(
            settings.jobs_dir / job_id,
            moved=moved,
            store_backed=bool(settings.artifacts_url.strip()),
        )
    except OSError as exc:
        log.warning("job %s: scratch not cleaned: %s", job_id, exc)
        return
    if removed:
        log.info("job %s: removed %s", job_id, ", ".join(removed))


def _settle(
    store: JobStore,
    link: StoreLink,
    lease: LeaseKeeper,
    status: str,
    error: dict[str, Any] | None,
    enqueue: Enqueue | None,
) -> str:
    job_id, worker_id, token = lease.job_id, lease.worker_id, lease.token
    if status == "lost" or lease.lost:
        log.warning("job %s: claim %d lost the job; stopped without another write", job_id, token)
        return "lease lost"
    if status == "preempted":
        released = link.must(lambda: store.release(job_id, worker_id, token), "release")
        if released == "released" and enqueue is not None:
            try:
                enqueue(job_id)
            except Exception:
                log.exception("job %s released but not sent; the sweeper sends it", job_id)
        return released
    finished = link.must(lambda: store.finish(job_id, worker_id, status, error, token), "finish")
    return status if finished else "lease lost"
