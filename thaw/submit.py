"""Check a job spec against its model, store the job with its plan, and queue it."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from thaw.data.shape import UploadLookup, data_shape
from thaw.dispatch import Enqueue
from thaw.errors import SpecError, ThawError
from thaw.freezing.budget import Budget, check_budget, check_checkpointing, job_budget
from thaw.freezing.layer_rows import PLAN_KEY
from thaw.freezing.plan import plan_table
from thaw.freezing.resolve import Resolved, meta_model, resolve_built
from thaw.freezing.stored_rows import compact_plan
from thaw.integrations import check_integrations
from thaw.spec import JobSpec
from thaw.store import DatasetStore, Job, JobStatus, JobStore
from thaw.uploads import tenant_uploads

if TYPE_CHECKING:
    from thaw.settings import Settings

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Submission:
    job: Job
    created: bool


def resolve_spec(
    spec: JobSpec,
    settings: Settings,
    *,
    uploads: UploadLookup | None = None,
    jobs: JobStore | None = None,
    tenant: str | None = None,
) -> Resolved:
    """Check a spec against its model built on ``meta``; raises SpecError naming the field.

    The one path of ``thaw plan``, POST /v1/plans and POST /v1/jobs: ``uploads`` and ``jobs``
    are the caller's own (the CLI has none, so only path and synthetic datasets resolve)."""
    return _resolve_with_budget(spec, settings, uploads, jobs, tenant)[0]


def _resolve_with_budget(
    spec: JobSpec,
    settings: Settings,
    uploads: UploadLookup | None,
    jobs: JobStore | None,
    tenant: str | None,
) -> tuple[Resolved, Budget]:
    """Resolve, then hold the job's resource budget to the settings (a SpecError naming
    the field to lower when it does not fit)."""
    check_integrations(spec.integrations, settings)
    if spec.base_model.source == "job" and jobs is not None:
        _check_base_job(jobs, spec.base_model.name, tenant)
    shape = data_shape(spec.dataset, settings, uploads)
    built, index = meta_model(spec.base_model, len(shape.classes), settings)
    resolved = resolve_built(spec, shape, built, index, settings)
    _check_table_size(resolved, settings)
    check_checkpointing(resolved, settings)
    budget = job_budget(resolved, shape, settings)
    check_budget(budget, resolved, settings)
    return resolved, budget


def _check_table_size(resolved: Resolved, settings: Settings) -> None:
    """The per-epoch layer table grows as epochs x layers; bound it before building it."""
    layers = len({owner for owner in resolved.index.param_owner.values()})
    epochs = resolved.spec.hyperparameters.epochs
    if epochs * layers > settings.max_plan_rows:
        raise SpecError(
            ("hyperparameters", "epochs"),
            f"{epochs} epochs x {layers} layers is {epochs * layers} rows of layer status; "
            f"at most {settings.max_plan_rows} (THAW_MAX_PLAN_ROWS)",
            f"use at most {settings.max_plan_rows // layers} epochs with this model",
        )


def _check_base_job(jobs: JobStore, job_id: str, tenant: str | None) -> None:
    """Another tenant's job is as absent as a missing one; only a finished job continues."""
    base = jobs.get(job_id, tenant)
    if base is None:
        raise SpecError(("base_model", "name"), f"no job {job_id!r}", "give one of your job ids")
    if base.status != JobStatus.SUCCEEDED:
        raise SpecError(
            ("base_model", "name"),
            f"job {job_id} is {base.status}, not succeeded",
            "continue from a job that finished",
        )


def plan_spec(
    spec: JobSpec,
    settings: Settings,
    *,
    uploads: UploadLookup | None = None,
    jobs: JobStore | None = None,
    tenant: str | None = None,
    detail: bool = False,
) -> dict[str, Any]:
    resolved, budget = _resolve_with_budget(spec, settings, uploads, jobs, tenant)
    return {**plan_table(resolved, detail=detail), "resources": budget.to_dict()}


def trainable_summary(table: dict[str, Any]) -> dict[str, Any]:
    """The job's ``trainable`` field before the worker reports the model's actual state."""
    first = table["epochs"][0] if table["epochs"] else {}
    return {
        "source": "planned",
        "epoch": first.get("epoch"),
        "phase": first.get("phase"),
        "trainable_params": first.get("trainable_params"),
        "total_params": first.get("total_params"),
        "phases": len(table.get("phases", [])),
    }


class QueuedJobsQuota(ThawError):
    """A tenant with THAW_MAX_QUEUED_JOBS_PER_TENANT jobs waiting; each start frees room."""

    status = 429
    code = "too_many_queued_jobs"
    retry_after_s = 30

    def headers(self) -> dict[str, str]:
        return {"Retry-After": str(self.retry_after_s)}


def check_queue_quota(jobs: JobStore, tenant: str, settings: Settings) -> None:
    queued = jobs.count(tenant, JobStatus.QUEUED)
    if queued >= settings.max_queued_jobs_per_tenant:
        raise QueuedJobsQuota(
            f"this key has {queued} queued jobs, the most allowed "
            "(THAW_MAX_QUEUED_JOBS_PER_TENANT); wait for some to start or cancel them"
        )


def submit_job(
    spec: JobSpec,
    *,
    tenant: str,
    settings: Settings,
    jobs: JobStore,
    datasets: DatasetStore,
    idempotency_key: str | None = None,
    enqueue: Enqueue,
) -> Submission:
    """Validate, store and queue a job. A repeated idempotency key with the same normalized
    spec returns the first job (``created`` False) and queues nothing."""
    check_queue_quota(jobs, tenant, settings)
    table = plan_spec(
        spec,
        settings,
        uploads=tenant_uploads(datasets, tenant),
        jobs=jobs,
        tenant=tenant,
        detail=True,
    )
    normalized = spec.normalized()
    job, created = jobs.create(
        tenant,
        normalized,
        name=spec.name,
        max_attempts=settings.max_attempts,
        idempotency_key=idempotency_key,
    )
    if not created:
        return Submission(job, False)
    jobs.save_layer_status(job.id, PLAN_KEY, compact_plan(table))
    jobs.set_trainable(job.id, trainable_summary(table))
    try:
        enqueue(job.id)
    except Exception:
        # Stored and queued without a message: a worker's sweeper sends it again within
        # THAW_REDISPATCH_SECONDS, as for a message lost any other way.
        log.warning("job %s stored but not sent to the queue; the sweeper sends it", job.id)
    return Submission(jobs.get(job.id) or job, True)
