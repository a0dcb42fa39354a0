"""What the evaluation, prediction and export routes share: the checked checkpoint, the
record's public shape, and the tenant's record by id."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from service.api.stores import Stores
from service.http.problems import Problem, not_found
from thaw.checkpoints import CheckpointError, list_checkpoints, read_config, resolve_checkpoint
from thaw.settings import Settings
from thaw.store import Job
from thaw.store.checkpoint_tasks import TASK_ID, CheckpointTask, TaskKind

ROUTES = {"evaluation": "evaluations", "prediction": "predictions", "export": "exports"}


def checked_checkpoint(settings: Settings, job: Job, name: str) -> tuple[Path, dict[str, Any]]:
    """The folder of the job's checkpoint ``name`` and its rebuild record; a 422 naming
    ``checkpoint`` and the job's checkpoints when there is none by that name."""
    run_dir = settings.jobs_dir / job.id
    try:
        folder = resolve_checkpoint(run_dir, name)
        return folder, read_config(folder)
    except CheckpointError as exc:
        names = [info.name for info in list_checkpoints(run_dir)]
        has = ", ".join(names) if names else "none yet"
        message = f"job {job.id} has no checkpoint {name!r}"
        hint = f"use best, last or one of: {has}"
        raise Problem(
            422,
            f"checkpoint: {message} ({hint})",
            code="invalid_checkpoint",
            title="Invalid request",
            errors=[{"loc": "checkpoint", "message": message, "hint": hint, "closest": names}],
        ) from exc


def task_out(task: CheckpointTask) -> dict[str, Any]:
    body = task.public_dict()
    self_url = f"/v1/{ROUTES[task.kind]}/{task.id}"
    body["links"] = {"self": self_url, "job": f"/v1/jobs/{task.job_id}"}
    if task.kind == "export" and task.result:
        for f in task.result.get("files", []):
            body["links"][f["name"]] = f"{self_url}/files/{f['name']}"
    return body


def tenant_task(stores: Stores, kind: TaskKind, task_id: str, tenant: str) -> CheckpointTask:
    task = stores.tasks.get(task_id, tenant) if TASK_ID[kind].match(task_id) else None
    if task is None or task.kind != kind:
        raise not_found(kind, task_id)
    return task


def listing(stores: Stores, job: Job, kind: TaskKind) -> dict[str, Any]:
    return {"data": [task_out(t) for t in stores.tasks.list(job.id, kind)], "has_more": False}
