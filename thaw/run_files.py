"""A run's files beyond its record: the scratch a worker leaves when a job ends or moves, and
everything a deleted job leaves, on this host and in the object store."""

from __future__ import annotations

from pathlib import Path

from thaw.artifacts import object_store
from thaw.atomic import remove_tree
from thaw.caching.decoded import DECODED_FOLDER
from thaw.caching.inputs import FEATURE_FOLDER
from thaw.checkpoints.layout import STEP_DIR
from thaw.checkpoints.remote import job_cache_dir, job_prefix
from thaw.settings import Settings

SCRATCH = (FEATURE_FOLDER, DECODED_FOLDER)


def clean_scratch(run_dir: Path, *, moved: bool, store_backed: bool) -> list[str]:
    """Remove what only the run in progress needed: the feature and decoded-input caches and
    interrupted saves; with an object store also the resume point, which the store holds.
    A job that ``moved`` to another worker (with an object store) leaves nothing here: the
    next holder resumes from the store. Returns the names removed."""
    if not run_dir.is_dir():
        return []
    if moved and store_backed:
        remove_tree(run_dir)
        return [run_dir.name]
    names = [*SCRATCH, STEP_DIR] if store_backed else list(SCRATCH)
    removed = [n for n in names if (run_dir / n).exists()]
    for name in removed:
        remove_tree(run_dir / name)
    for child in run_dir.iterdir():
        if child.name.startswith(f".{STEP_DIR}.tmp-"):
            remove_tree(child)
            removed.append(child.name)
    return removed


def remove_job_files(settings: Settings, job_id: str) -> None:
    """A deleted job's run folder, this host's read-through copies of its files, and its
    objects in the store."""
    remove_tree(settings.jobs_dir / job_id)
    remove_tree(job_cache_dir(settings, job_id))
    store = object_store(settings)
    if store is not None:
        store.delete_prefix(f"{job_prefix(job_id)}/")
