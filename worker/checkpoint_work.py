"""Run one evaluation, prediction or export record: the body of its Celery task."""

from __future__ import annotations

import gc
import logging

from thaw.errors import ThawError
from thaw.inference.tasks import run_task
from thaw.settings import Settings
from thaw.store import DatasetStore, JobStore
from thaw.store.checkpoint_tasks import CheckpointTaskStore
from thaw.training.memory import release_memory
from thaw.upload_cache import held_uploads
from thaw.uploads import tenant_uploads

log = logging.getLogger(__name__)


def run_checkpoint_task(task_id: str, worker_id: str, settings: Settings, client) -> str:
    """Take the record (unless it expired or another worker took it), run it and store
    its result or error; returns what happened, for the worker log."""
    store = CheckpointTaskStore(client)
    if not store.start(task_id, worker_id):
        return "not startable"
    task = store.get(task_id)
    job = JobStore(client).get(task.job_id) if task is not None else None
    if task is None or job is None:
        store.finish(task_id, error={"code": "job_not_found", "message": "the job is gone"})
        return "job gone"
    try:
        uploads = tenant_uploads(DatasetStore(client), task.tenant)
        with held_uploads():
            result = run_task(task, job.spec, settings, uploads)
    except ThawError as exc:
        log.warning("%s %s failed: %s", task.kind, task_id, exc)
        store.finish(
            task_id,
            error={"code": exc.code, "message": exc.detail, "status": exc.status,
                   **exc.problem_fields()},
        )  # fmt: skip
        return "failed"
    except Exception as exc:
        log.exception("%s %s crashed", task.kind, task_id)
        store.finish(
            task_id,
            error={"code": "internal_error", "message": f"{type(exc).__name__}: {exc}",
                   "status": 500},
        )  # fmt: skip
        return "failed"
    finally:
        gc.collect()
        release_memory()
    store.finish(task_id, result=result)
    return "succeeded"
