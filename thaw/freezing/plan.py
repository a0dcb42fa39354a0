"""The dry run: the trainable table for every epoch of a spec, with nothing trained."""

from __future__ import annotations

from typing import Any

from thaw.freezing.adapters import adapter_params
from thaw.freezing.cache_plan import plan_cache
from thaw.freezing.resolve import Resolved
from thaw.freezing.status import epoch_entry, planned_view


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
        "phases": [
            {
                "index": phase.index,
                "start_step": phase.start_step,
                "start_epoch": phase.start_epoch,
                "trainable_params": sum(
                    resolved.index.params[n].numel() for n in phase.trainable_names
                ),
                "events": [e.describe() for e in phase.events],
            }
            for phase in timeline.phases
        ],
        "steps_per_epoch": timeline.steps_per_epoch,
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


def cache_section(resolved: Resolved, num_samples: int | None) -> list[dict[str, Any]]:
    """Per phase: the cache boundary (the last cached group), whether it engages, the bytes
    it takes for the training set, and the reason when it does not."""
    timeline = resolved.timeline
    hp = resolved.spec.hyperparameters
    count = num_samples or timeline.steps_per_epoch * hp.batch_size
    entries = plan_cache(resolved.spec, resolved.index, timeline, resolved.built.modality, count)
    return [e.to_dict() for e in entries]
