"""The run's step checkpoint: a resume point inside an epoch (a worker preempted mid-epoch,
or ``checkpointing.every_steps``). It is not a user-facing checkpoint: it lives in
``R/resume/`` beside ``R/checkpoints/``, is never listed in ``index.json``, and is
replaced by each newer one. Saved like an epoch checkpoint: staged in a temp folder, then
renamed into place by a fenced publish, then (with an artifact store) uploaded and made
the store index's ``resume`` under the same fence.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import torch

from thaw.atomic import atomic_path, atomic_write_json, fsync_dir, remove_tree
from thaw.checkpoints.commit import check_fence, publish
from thaw.checkpoints.index import read_index
from thaw.checkpoints.layout import META_FILE, MODEL_FILE, STEP_DIR, TRAINING_STATE_FILE, step_dir
from thaw.checkpoints.remote import StoreRun, publish_step_to_store
from thaw.checkpoints.resume_state import save_training_state
from thaw.checkpoints.tensor_file import save_tensors
from thaw.checkpoints.tensors import tensor_bytes
from thaw.disk_space import disk_full, is_disk_full, require_free

Fence = Callable[[], int | None]


def save_step_checkpoint(
    run_dir: str | Path,
    *,
    epoch: int,
    batch: int,
    step: int,
    model_state: Mapping[str, torch.Tensor],
    training_state: Any,
    fence: Fence | None = None,
    reserve_bytes: int = 0,
    remote: StoreRun | None = None,
) -> dict[str, Any]:
    """Write the resume point after ``batch`` batches of ``epoch`` (``step`` in all).

    ``fence`` is called before anything is written and again by the publish, under its lock;
    it raises when the caller no longer holds the run, and returns its fencing token,
    recorded in ``meta.json`` and compared with the run's fence by the publish. With
    ``remote``, the published resume point then goes to the artifact store."""
    token = fence() if fence is not None else None
    run = Path(run_dir)
    run.mkdir(parents=True, exist_ok=True)
    check_fence(run, read_index(run), token)
    _clean_debris(run)
    needed = tensor_bytes(model_state) + tensor_bytes(training_state)
    require_free(run, needed, reserve_bytes, "a step checkpoint")
    tmp = run / f".{STEP_DIR}.tmp-{secrets.token_hex(6)}"
    tmp.mkdir()
    meta = {
        "epoch": epoch,
        "batch": batch,
        "step": step,
        "token": token,
        "created_at": datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z"),
    }
    try:
        with atomic_path(tmp / MODEL_FILE) as path:
            save_tensors(path, model_state, {"format": "pt"})
        save_training_state(tmp / TRAINING_STATE_FILE, training_state)
        atomic_write_json(tmp / META_FILE, meta)
        fsync_dir(tmp)
    except BaseException as exc:
        remove_tree(tmp)
        if is_disk_full(exc):
            raise disk_full(run, "a step checkpoint", exc, reserve_bytes) from exc
        if isinstance(exc, OSError):  # a newer claim may have cleared this staged folder
            check_fence(run, read_index(run), token)
        raise
    publish(run, token, {step_dir(run): tmp}, confirm=fence)
    if remote is not None:
        publish_step_to_store(remote.store, remote.prefix, token, step_dir(run), confirm=fence)
    return meta


def _clean_debris(run: Path) -> None:
    for child in run.iterdir():
        if child.name.startswith((f".{STEP_DIR}.tmp-", f".{STEP_DIR}.old-")):
            remove_tree(child)
