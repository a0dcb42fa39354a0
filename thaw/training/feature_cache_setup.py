"""Wire the input caches into a run: decoded images for every run, and the feature cache:
decide per phase, announce it, and feed batches."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch

from thaw.data.decoded import DECODED_FOLDER, attach_decoded_cache
from thaw.freezing.cache_plan import plan_cache
from thaw.freezing.resolve import Resolved
from thaw.settings import Settings
from thaw.spec import JobSpec
from thaw.training.feature_cache import CachedBatch, FeatureCache, cache_budget, decoded_budget
from thaw.training.loaders import index_loader
from thaw.training.reporter import Reporter

CACHE_FOLDER = "feature_cache"


def build_feature_cache(
    spec: JobSpec,
    resolved: Resolved,
    data: Any,
    settings: Settings,
    run_dir: Path,
    reporter: Reporter,
    autocast_dtype: torch.dtype | None = None,
) -> FeatureCache | None:
    """The run's cache, or None when no phase can train from cached features.

    Logs one line per phase: the boundary and size when it engages, the reason otherwise.
    First, whatever the feature cache does, image datasets get their decoded-input cache.
    """
    hp = spec.hyperparameters
    for decoded in attach_decoded_cache(
        data, decoded_budget(settings), run_dir / DECODED_FOLDER, settings.disk_reserve_bytes
    ):
        reporter.log(
            "info",
            f"decoded-input cache: {decoded.shape[0]} images of {decoded.shape[2]} px, decoded "
            f"once per job ({decoded.nbytes / 2**20:.1f} MiB in {decoded.where})",
        )
    sizes = (len(data.train), len(data.val))
    element = torch.empty((), dtype=autocast_dtype or torch.float32).element_size()
    plans = plan_cache(
        spec,
        resolved.index,
        resolved.timeline,
        data.modality,
        sum(sizes),
        device=next(resolved.index.model.parameters()).device,
        element_size=element,
    )
    for plan in plans:
        if plan.engages:
            mib = plan.bytes / 2**20
            reporter.log(
                "info",
                f"feature cache: phase {plan.phase} trains past {plan.boundary} from its "
                f"cached output ({mib:.1f} MiB)",
            )
        else:
            reporter.log(
                "info", f"feature cache: phase {plan.phase} runs every layer: {plan.reason}"
            )
    if not any(p.engages for p in plans):
        return None
    return FeatureCache(
        resolved.index.model,
        plans,
        resolved.timeline,
        modality=data.modality,
        sizes=sizes,
        max_length=hp.max_length,
        budget=cache_budget(settings),
        folder=run_dir / CACHE_FOLDER,
        log=reporter.log,
        flips=data.modality == "image" and hp.augment == "flip",
        disk_reserve=settings.disk_reserve_bytes,
    )


def cached_batches(
    cache: FeatureCache, loader: Any, sampler: Any, part: str, cached: bool
) -> Iterator[tuple[Any, torch.Tensor]]:
    """``(inputs, labels)`` for the trainer: stored features when the cache is full, raw
    inputs wrapped to fill it when it is not, plain inputs in epochs it sits out."""
    if cached and cache.reading(part):
        for indices, views in index_loader(loader, sampler):
            yield cache.gather(part, indices, views)
        return
    for inputs, labels, indices, views in loader:
        if cached:
            yield CachedBatch(indices, labels, inputs=inputs, views=views), labels
        else:
            yield inputs, labels
