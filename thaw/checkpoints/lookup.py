"""Where a job's checkpoints are read on this host: the run folder, or with an object store
a read-through copy of the ones its index names."""

from __future__ import annotations

from pathlib import Path

from thaw.checkpoints.remote import cached_checkpoint, store_checkpoints, store_run
from thaw.checkpoints.store import find_checkpoint, list_checkpoints
from thaw.settings import Settings


def checkpoint_copy(
    settings: Settings, job_id: str, name: str, *, outage_seconds: float = 0.0
) -> Path:
    """The folder of the job's checkpoint ``name`` on this host: the run folder's, or with
    an object store the one its index names, fetched read-through into ``data_dir/cache``
    (the run folder's checkpoints belong to the claim that trains the job)."""
    remote = store_run(settings, job_id, outage_seconds=outage_seconds)
    if remote is None:
        return find_checkpoint(settings.jobs_dir / job_id, name)
    return cached_checkpoint(remote, settings, job_id, name)


def checkpoint_names(settings: Settings, job_id: str) -> list[str]:
    """The names of the job's checkpoints, oldest first, where :func:`checkpoint_copy`
    looks for them."""
    remote = store_run(settings, job_id)
    infos = (
        store_checkpoints(remote)
        if remote is not None
        else list_checkpoints(settings.jobs_dir / job_id)
    )
    return [info.name for info in infos]
