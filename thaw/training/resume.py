"""Save an epoch's checkpoint with its resume state, and restore a run from the last one.

Restoring replays the phases first (requires_grad, optimizer groups in their order),
then loads the optimizer state; loading it into the phase-0 groups would fail or,
worse, attach moments to the wrong tensors.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from thaw.errors import ThawError
from thaw.freezing.engine import FreezeEngine


class ResumeMismatch(ThawError):
    """A run folder whose checkpoints belong to another spec."""

    status = 409
    code = "resume_mismatch"


@dataclass(frozen=True)
class Resumed:
    epoch: int
    step: int
    metrics: dict[str, float]


def save_epoch(
    run_dir: Path,
    *,
    engine: FreezeEngine,
    epoch: int,
    step: int,
    config: dict[str, Any],
    metrics: dict[str, float],
    keep_last: int,
    library_config: dict[str, Any] | None = None,
) -> dict[str, Any]:
    from thaw.checkpoints import capture_rng_state, save_checkpoint

    state = {
        "epoch": epoch,
        "step": step,
        "engine": engine.state_dict(),
        "rng": capture_rng_state(),
        "requires_grad": {n: p.requires_grad for n, p in engine.index.params.items()},
        "group_names": [g["name"] for g in engine.optimizer.param_groups],
        "spec_fingerprint": config["spec_fingerprint"],
        "metrics": dict(metrics),
    }
    info = save_checkpoint(
        run_dir,
        epoch=epoch,
        step=step,
        model_state=engine.model.state_dict(),
        config=config,
        training_state=state,
        metrics=metrics,
        keep_last=keep_last,
        library_config=library_config,
    )
    return info.to_dict()


def restore(
    run_dir: Path, engine: FreezeEngine, device: torch.device, fingerprint: str
) -> Resumed | None:
    from thaw.checkpoints import (
        CheckpointNotFound,
        load_checkpoint_training_state,
        load_model_state,
        resolve_checkpoint,
        restore_rng_state,
    )

    try:
        folder = resolve_checkpoint(run_dir, "last")
    except CheckpointNotFound:
        return None
    state = load_checkpoint_training_state(folder)
    if state.get("spec_fingerprint") != fingerprint:
        raise ResumeMismatch(f"{folder.name} was written by another spec; refusing to resume")
    engine.model.load_state_dict(load_model_state(folder, device=str(device)), strict=True)
    engine.load_state_dict(state["engine"])
    actual = {n: p.requires_grad for n, p in engine.index.params.items()}
    names = [g["name"] for g in engine.optimizer.param_groups]
    if actual != state["requires_grad"] or names != list(state["group_names"]):
        raise ResumeMismatch(f"{folder.name}: the replayed phase does not match the saved one")
    restore_rng_state(state["rng"])
    return Resumed(int(state["epoch"]), int(state["step"]), dict(state.get("metrics", {})))
