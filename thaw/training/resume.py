"""Snapshot a run's state, save it as an epoch's checkpoint or a step checkpoint, and
restore a run from the newest of them.

Restoring replays the phases first (requires_grad, optimizer groups in their order),
then loads the optimizer state; loading it into the phase-0 groups would fail or,
worse, attach moments to the wrong tensors.

A step checkpoint also keeps the random state at the start of its epoch: the resumed
run seeds that epoch's data iterator the same way, skips the batches already trained,
then restores the random state of the step (see ``_Run._batches``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from thaw.checkpoints import (
    CheckpointNotFound,
    capture_rng_state,
    find_checkpoint,
    load_checkpoint_training_state,
    load_model_state,
    read_meta,
    restore_rng_state,
    save_checkpoint,
)
from thaw.checkpoints.adapter import AdapterExport, has_adapter, load_adapter_state
from thaw.checkpoints.layout import read_step_meta, step_dir
from thaw.checkpoints.step import save_step_checkpoint
from thaw.checkpoints.tensors import cpu_snapshot, model_snapshot
from thaw.errors import ThawError
from thaw.freezing.adapters import Adapters, export_adapter, merged_state
from thaw.freezing.engine import FreezeEngine

if TYPE_CHECKING:
    from thaw.checkpoints.adapter import AdapterExport
    from thaw.checkpoints.remote import StoreRun

Fence = Callable[[], int | None]


class ResumeMismatch(ThawError):
    """A run folder whose checkpoints belong to another spec."""

    status = 409
    code = "resume_mismatch"


@dataclass(frozen=True)
class Resumed:
    epoch: int
    """The last completed epoch."""
    step: int
    metrics: dict[str, float]
    batch: int = 0
    """Batches of epoch ``epoch + 1`` already trained (a step checkpoint)."""
    epoch_rng: dict[str, Any] | None = None
    step_rng: dict[str, Any] | None = None
    steering: dict[str, Any] | None = None
    """Early-stopping and plateau state (``Steering.state_dict``)."""


@dataclass(frozen=True)
class Snapshot:
    """What a save writes, copied off the live run so training can go on while it is
    written: the model's tensors and the resume state, on the CPU. Frozen parameters on
    the CPU are shared with the model (``model_snapshot``), so no phase may thaw them
    while the write lasts."""

    model_state: dict[str, torch.Tensor]
    training_state: dict[str, Any]
    adapter: AdapterExport | None = None
    """With adapters: ``model_state`` merged, and the PEFT adapter (see
    ``thaw.checkpoints.adapter``)."""


def _training_state(
    engine: FreezeEngine,
    epoch: int,
    step: int,
    fingerprint: str,
    metrics: dict[str, float],
    steering: dict[str, Any] | None,
) -> dict[str, Any]:

    return {
        "steering": steering,
        "epoch": epoch,
        "step": step,
        "engine": engine.state_dict(),
        "rng": capture_rng_state(),
        "requires_grad": {n: p.requires_grad for n, p in engine.index.params.items()},
        "group_names": [g["name"] for g in engine.optimizer.param_groups],
        "spec_fingerprint": fingerprint,
        "metrics": dict(metrics),
    }


def snapshot(
    engine: FreezeEngine,
    *,
    epoch: int,
    step: int,
    fingerprint: str,
    metrics: dict[str, float],
    batch: int = 0,
    epoch_rng: dict[str, Any] | None = None,
    adapters: Adapters | None = None,
    saved_modules: Sequence[str] = (),
    steering: dict[str, Any] | None = None,
) -> Snapshot:
    """The run's state after ``epoch`` (``batch`` 0) or after ``batch`` batches of
    ``epoch`` (a step checkpoint, with the random state the epoch started from).

    With ``adapters`` (an epoch's checkpoint of a lora run): the merged weights, and the
    adapter with the ``saved_modules`` beside it; a step checkpoint keeps the model as is."""

    state = _training_state(
        engine, epoch - 1 if batch else epoch, step, fingerprint, metrics, steering
    )
    if batch:
        state["batch"] = batch
        state["epoch_rng"] = epoch_rng
    if adapters is None:
        return Snapshot(model_snapshot(engine.model), cpu_snapshot(state))
    adapter = export_adapter(engine.model, adapters, saved_modules)
    return Snapshot(
        cpu_snapshot(merged_state(engine.model, adapters)),
        cpu_snapshot(state),
        AdapterExport(adapter.config, cpu_snapshot(adapter.tensors)),
    )


def save_epoch(
    run_dir: Path,
    snap: Snapshot,
    *,
    epoch: int,
    step: int,
    config: dict[str, Any],
    metrics: dict[str, float],
    keep_last: int,
    library_config: dict[str, Any] | None = None,
    fence: Fence | None = None,
    reserve_bytes: int = 0,
    monitor: str = "val_loss",
    mode: str = "min",
    remote: StoreRun | None = None,
) -> dict[str, Any]:

    info = save_checkpoint(
        run_dir,
        epoch=epoch,
        step=step,
        model_state=snap.model_state,
        config=config,
        training_state=snap.training_state,
        metrics=metrics,
        keep_last=keep_last,
        library_config=library_config,
        fence=fence,
        reserve_bytes=reserve_bytes,
        adapter=snap.adapter,
        monitor=monitor,
        mode=mode,
        remote=remote,
    )
    return info.to_dict()


def save_step(
    run_dir: Path,
    snap: Snapshot,
    *,
    epoch: int,
    batch: int,
    step: int,
    fence: Fence | None = None,
    reserve_bytes: int = 0,
    remote: StoreRun | None = None,
) -> dict[str, Any]:
    """A resume point after ``batch`` batches of ``epoch`` (in progress); with ``remote``
    also in the artifact store."""

    return save_step_checkpoint(
        run_dir,
        epoch=epoch,
        batch=batch,
        step=step,
        model_state=snap.model_state,
        training_state=snap.training_state,
        fence=fence,
        reserve_bytes=reserve_bytes,
        remote=remote,
    )


def restore(
    run_dir: Path,
    engine: FreezeEngine,
    device: torch.device,
    fingerprint: str,
    adapters: Adapters | None = None,
) -> Resumed | None:
    """Load the newest resume point (an epoch or a step checkpoint) into ``engine``.

    The random state of an epoch checkpoint is restored here; a step checkpoint's is
    returned for the loop to restore once it has re-created the epoch's data order."""

    try:
        folder: Path | None = find_checkpoint(run_dir, "last")
        last_step = read_meta(folder).step
    except CheckpointNotFound:
        folder, last_step = None, -1
    step_meta = read_step_meta(run_dir)
    if step_meta is not None and step_meta["step"] > last_step:
        folder = step_dir(run_dir)
    if folder is None:
        return None
    state = load_checkpoint_training_state(folder)
    if state.get("spec_fingerprint") != fingerprint:
        raise ResumeMismatch(f"{folder.name} was written by another spec; refusing to resume")
    if adapters is not None and has_adapter(folder):
        _load_adapter(engine, folder, adapters, device)
    else:
        engine.model.load_state_dict(load_model_state(folder, device=str(device)), strict=True)
    engine.load_state_dict(state["engine"])
    actual = {n: p.requires_grad for n, p in engine.index.params.items()}
    names = [g["name"] for g in engine.optimizer.param_groups]
    if actual != state["requires_grad"] or names != list(state["group_names"]):
        raise ResumeMismatch(f"{folder.name}: the replayed phase does not match the saved one")
    metrics = dict(state.get("metrics", {}))
    batch = int(state.get("batch", 0))
    steering = state.get("steering")
    if batch == 0:
        restore_rng_state(state["rng"])
        return Resumed(int(state["epoch"]), int(state["step"]), metrics, steering=steering)
    return Resumed(
        int(state["epoch"]),
        int(state["step"]),
        metrics,
        batch=batch,
        epoch_rng=state["epoch_rng"],
        step_rng=state["rng"],
        steering=steering,
    )


def _load_adapter(
    engine: FreezeEngine, folder: Path, adapters: Adapters, device: torch.device
) -> None:
    """An epoch checkpoint of a lora run holds merged weights; the run goes on from its
    adapter (adapters and the base modules that trained), the rest being the frozen base
    the model was built with."""

    state = load_adapter_state(folder, adapters.targets, device=str(device))
    result = engine.model.load_state_dict(state, strict=False)
    missing = [k for k in result.missing_keys if any(f".{p}." in k for p in ("lora_A", "lora_B"))]
    if result.unexpected_keys or missing:
        raise ResumeMismatch(
            f"{folder.name}: its adapter does not fit the model "
            f"({len(result.unexpected_keys)} unexpected, {len(missing)} missing tensors)"
        )
