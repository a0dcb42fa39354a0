"""A prediction's uploaded images and an export's files: in the task's folder under
THAW_DATA_DIR, or with an object store under ``runs/<job>/<predictions|exports>/<id>/``
so the API and the workers need no shared folder."""

from __future__ import annotations

import shutil
from pathlib import Path

from thaw.artifacts import ArtifactStore, object_store
from thaw.checkpoints.remote import job_cache_dir, job_prefix, presigned_key
from thaw.settings import Settings
from thaw.store.checkpoint_tasks import CheckpointTask

FOLDERS = {"prediction": "predictions", "export": "exports", "evaluation": "evaluations"}


def task_dir(settings: Settings, task: CheckpointTask) -> Path:
    """A task's files on this host: ``<job>/predictions/<id>`` (inputs) or
    ``<job>/exports/<id>``."""
    return settings.jobs_dir / task.job_id / FOLDERS[task.kind] / task.id


def task_prefix(task: CheckpointTask) -> str:
    """Where a task's files live in the object store."""
    return f"{job_prefix(task.job_id)}/{FOLDERS[task.kind]}/{task.id}"


def _store(settings: Settings, outage_seconds: float = 0.0) -> ArtifactStore | None:
    return object_store(settings, outage_seconds=outage_seconds)


def store_inputs(settings: Settings, task: CheckpointTask, files: dict[str, bytes]) -> None:
    """Keep a prediction's uploaded files where its worker reads them."""
    store = _store(settings)
    if store is not None:
        for name, content in files.items():
            store.put(f"{task_prefix(task)}/{name}", content)
        return
    inputs = task_dir(settings, task)
    inputs.mkdir(parents=True)
    for name, content in files.items():
        (inputs / name).write_bytes(content)


def fetch_inputs(settings: Settings, task: CheckpointTask, names: list[str]) -> Path:
    """The folder holding a prediction's uploaded files on this host, downloaded from the
    object store when there is one."""
    inputs = task_dir(settings, task)
    store = _store(settings, settings.artifacts_outage_seconds)
    if store is not None:
        inputs.mkdir(parents=True, exist_ok=True)
        for name in names:
            store.download_file(f"{task_prefix(task)}/{name}", inputs / name)
    return inputs


def remove_task_files(settings: Settings, task: CheckpointTask) -> None:
    """A task's files on this host and in the object store."""
    shutil.rmtree(task_dir(settings, task), ignore_errors=True)
    store = _store(settings)
    if store is not None:
        store.delete_prefix(f"{task_prefix(task)}/")


def publish_export(settings: Settings, task: CheckpointTask, files: list[str]) -> None:
    """With an object store, upload an export's files there and drop the worker's copy."""
    store = _store(settings, settings.artifacts_outage_seconds)
    if store is None:
        return
    folder = task_dir(settings, task)
    for name in files:
        store.upload_file(f"{task_prefix(task)}/{name}", folder / name)
    shutil.rmtree(folder, ignore_errors=True)


def export_file(settings: Settings, task: CheckpointTask, name: str) -> Path:
    """An export's file on this host: the task's folder, or with an object store a
    read-through copy in the job's cache folder, under ``exports/<id>``."""
    store = _store(settings)
    if store is None:
        return task_dir(settings, task) / name
    path = job_cache_dir(settings, task.job_id) / FOLDERS[task.kind] / task.id / name
    if not path.is_file():
        path.parent.mkdir(parents=True, exist_ok=True)
        store.download_file(f"{task_prefix(task)}/{name}", path)
    return path


def export_url(settings: Settings, task: CheckpointTask, name: str, seconds: int) -> str | None:
    """A presigned URL of an export's file in the object store; None without one (or for a
    store with no such URLs)."""
    store = _store(settings)
    return None if store is None else presigned_key(store, f"{task_prefix(task)}/{name}", seconds)
