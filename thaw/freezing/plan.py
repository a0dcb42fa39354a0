"""The dry run: the trainable table for every epoch of a spec, with nothing trained."""

from __future__ import annotations

from typing import Any

from thaw.caching.planning import plan_cache
from thaw.freezing.adapters import adapter_params
from thaw.freezing.layer_rows import epoch_entry, planned_view
from thaw.freezing.resolve import Resolved
from thaw.freezing.timeline import Phase


def plan_table(
    resolved: Resolved, *, detail: bool = False, num_samples: int | None = None
) -> dict[str, Any]:
    """``{"groups", "phases", "epochs", "feature_cache", "warnings"}`` in the shared
    plan/status shape. ``num_samples`` (training examples) sizes the feature cache; without
    it, every step's batch is counted full."""
    timeline = resolved.timeline
    freeze = resolved.spec.freeze
    views = [
        planned_view(
            resolved.index,
            timeline,
            phase.index,
            resolved.options[phase.index],
            resolved.thawed_in[phase.index],
            method=freeze.method,
            policy=freeze.batchnorm,
            dropout=freeze.dropout,
        )
        for phase in timeline.phases
    ]
    by_phase: dict[int, dict[str, Any]] = {}
    epochs = []
    for epoch in range(1, timeline.epochs + 1):
        phase = timeline.phase_at_epoch(epoch).index
        if phase not in by_phase:  # epochs of one phase share its rows
            by_phase[phase] = epoch_entry(
                resolved.index, views[phase], epoch=epoch, phase=phase, detail=detail
            )
        epochs.append(dict(by_phase[phase], epoch=epoch))
    return {
        "model": {
            "source": resolved.built.source,
            "name": resolved.built.name,
            "num_classes": resolved.built.num_classes,
            "head": resolved.built.head,
        },
        "groups": [g.to_dict() for g in resolved.index.groups],
        "phases": [_phase(resolved, phase) for phase in timeline.phases],
        "steps_per_epoch": timeline.steps_per_epoch,
        "length": run_length(resolved),
        "epochs": epochs,
        "feature_cache": cache_section(resolved, num_samples),
        "warnings": list(resolved.warnings),
        **adapter_section(resolved),
    }


def adapter_section(resolved: Resolved) -> dict[str, Any]:
    """With method lora: the adapters' shape, where they sit and what is saved beside them."""
    adapters = resolved.adapters
    if adapters is None:
        return {}
    index = resolved.index
    return {
        "adapter": {
            "r": adapters.r,
            "alpha": adapters.alpha,
            "dropout": adapters.dropout,
            "targets": list(adapters.targets),
            "params": sum(index.params[p].numel() for p in adapter_params(index)),
            "saved_modules": list(resolved.saved_modules),
        }
    }


def _phase(resolved: Resolved, phase: Phase) -> dict[str, Any]:
    """A phase of the plan; a conditional (on_plateau) phase starts at its deadline at the
    latest, else only if the plateau comes (``start_step`` null)."""
    never = phase.start_step >= resolved.timeline.total_steps
    out: dict[str, Any] = {
        "index": phase.index,
        "start_step": None if never else phase.start_step,
        "start_epoch": None if never else phase.start_epoch,
        "trainable_params": sum(resolved.index.params[n].numel() for n in phase.trainable_names),
        "events": [e.describe() for e in phase.events],
    }
    if phase.on_plateau is not None:
        out["conditional"] = {
            "on_plateau": phase.on_plateau.model_dump(),
            "monitor": resolved.spec.checkpointing.monitor,
            "latest_epoch": None if never else phase.start_epoch,
        }
    return out


def run_length(resolved: Resolved) -> dict[str, Any]:
    """How long the run is: exactly ``epochs``, or up to them with early stopping."""
    checkpointing = resolved.spec.checkpointing
    epochs = resolved.timeline.epochs
    rule = checkpointing.early_stopping
    return {
        "epochs": epochs,
        "up_to": rule is not None,
        "text": f"up to {epochs} epochs" if rule is not None else f"{epochs} epochs",
        "early_stopping": rule.model_dump() if rule is not None else None,
        "monitor": checkpointing.monitor,
        "mode": checkpointing.mode,
    }


def cache_section(resolved: Resolved, num_samples: int | None) -> list[dict[str, Any]]:
    """Per phase: the cache boundary (the last cached group), whether it engages, the bytes
    it takes for the training set, and the reason when it does not."""
    timeline = resolved.timeline
    hp = resolved.spec.hyperparameters
    count = num_samples or timeline.steps_per_epoch * hp.batch_size
    entries = plan_cache(resolved.spec, resolved.index, timeline, resolved.built.modality, count)
    return [e.to_dict() for e in entries]
