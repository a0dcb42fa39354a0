"""The seam between the training loop and the input caches: the loop asks a ``RunInputs`` for
its datasets, each epoch's batches, moving a batch to the device and the forward pass, and
never looks at a cache itself. ``build_inputs`` wires the decoded-image cache into every
image run and, where a phase can train from cached features, the feature cache."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any, Protocol

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from thaw.caching.decoded import DECODED_FOLDER, DecodedImages
from thaw.caching.feature_cache import FeatureCache, FillOptions, Progress
from thaw.caching.features import CachedBatch
from thaw.caching.memory import decoded_budget, feature_budget, fill_batch_size, gpu_budget
from thaw.caching.planning import PhaseCache, plan_cache
from thaw.caching.prefix import call_model
from thaw.data.images import ImageFolderDataset
from thaw.freezing.resolve import Resolved
from thaw.settings import Settings
from thaw.spec import JobSpec

FEATURE_FOLDER = "feature_cache"

Log = Callable[[str, str], None]


class Placed(Protocol):
    """Where a run trains (``thaw.training.device.Placement``)."""

    device: torch.device
    autocast_dtype: torch.dtype | None
    channels_last: bool

    def autocast(self) -> AbstractContextManager[object]: ...


class RunInputs:
    """A run's inputs without the feature cache: every batch runs every layer. Once a part's
    images are all decoded (``decoded``: the decoded-image caches by part), its batches are
    read in this process: what is left per sample is a flip and a normalization."""

    def __init__(
        self, data: Any, placement: Placed, decoded: dict[str, DecodedImages] | None = None
    ):
        self.data = data
        self.placement = placement
        self.decoded = decoded or {}
        self.memory_format = (
            torch.channels_last if placement.channels_last else torch.contiguous_format
        )

    def datasets(self) -> tuple[Dataset[Any], Dataset[Any], Any]:
        """Training and validation datasets and the collate function for the loaders."""
        return self.data.train, self.data.val, self.data.collate_fn

    def workers(self, requested: int) -> int:
        """DataLoader worker processes the run needs (``requested`` unless caches serve)."""
        return requested

    def persistent_workers(self) -> bool:
        """Whether loader workers outlive an epoch: not when the decoded-image cache will
        serve the later ones."""
        return not self.decoded

    def begin_epoch(self, epoch: int, progress: Progress) -> None:
        """Called after the epoch's phase is entered and before its first batch."""

    def batches(self, loader: DataLoader[Any], sampler: Any, part: str) -> Iterator[Any]:
        """``(inputs, labels)`` of the epoch's ``part`` ("train" or "val") in loader order."""
        decoded = self.decoded.get(part)
        if loader.num_workers and decoded is not None and decoded.complete:
            return iter(in_process(loader, sampler))
        return iter(loader)

    def to_device(self, inputs: Any) -> Any:
        device = self.placement.device
        if isinstance(inputs, dict):
            return {k: v.to(device, non_blocking=True) for k, v in inputs.items()}
        return inputs.to(device, non_blocking=True, memory_format=self.memory_format)

    def forward(self, model: nn.Module, inputs: Any) -> torch.Tensor:
        return call_model(model, inputs)

    def close(self) -> None:
        """Remove what the caches wrote."""


class CachedInputs(RunInputs):
    """A run some of whose epochs train from the feature cache."""

    def __init__(
        self,
        data: Any,
        placement: Placed,
        decoded: dict[str, DecodedImages],
        cache: FeatureCache,
    ):
        super().__init__(data, placement, decoded)
        self.cache = cache
        self.cached = False

    def workers(self, requested: int) -> int:
        return 0 if self.cache.every_epoch else requested

    def begin_epoch(self, epoch: int, progress: Progress) -> None:
        self.cached = self.cache.begin_epoch(epoch, progress)

    def batches(self, loader: DataLoader[Any], sampler: Any, part: str) -> Iterator[Any]:
        if not self.cached:
            return super().batches(loader, sampler, part)
        return (
            (self.cache.gather(part, indices, views), self.cache.labels(part, indices))
            for indices, views in index_loader(loader, sampler)
        )

    def to_device(self, inputs: Any) -> Any:
        if isinstance(inputs, CachedBatch):
            return inputs.to(self.placement.device, self.memory_format)
        return super().to_device(inputs)

    def forward(self, model: nn.Module, inputs: Any) -> torch.Tensor:
        if isinstance(inputs, CachedBatch):
            return self.cache.forward(inputs)
        return super().forward(model, inputs)

    def close(self) -> None:
        self.cache.close()


def build_inputs(
    spec: JobSpec,
    resolved: Resolved,
    data: Any,
    settings: Settings,
    run_dir: Path,
    placement: Placed,
    log: Log,
) -> RunInputs:
    """The run's inputs: image datasets get their decoded-image cache; the feature cache
    joins when a phase can train from cached features. Logs one line per phase: the
    boundary and size when the feature cache engages, the reason otherwise."""
    hp = spec.hyperparameters
    decoded = attach_decoded_cache(
        data, decoded_budget(settings), run_dir / DECODED_FOLDER, settings.disk_reserve_bytes
    )
    for images in decoded.values():
        log(
            "info",
            f"decoded-input cache: {images.shape[0]} images of {images.shape[2]} px, decoded "
            f"once per job ({images.nbytes / 2**20:.1f} MiB in {images.where})",
        )
    element = torch.empty((), dtype=placement.autocast_dtype or torch.float32).element_size()
    plans = plan_cache(
        spec,
        resolved.index,
        resolved.timeline,
        data.modality,
        len(data.train) + len(data.val),
        device=next(resolved.index.model.parameters()).device,
        element_size=element,
    )
    _log_plans(plans, log)
    if not any(p.engages for p in plans):
        return RunInputs(data, placement, _served(decoded, hp.augment))
    peak = max(p.activation_bytes for p in plans)
    fill = FillOptions(
        placement.device,
        fill_batch_size(settings, placement.device, peak, hp.batch_size),
        placement.autocast,
        torch.channels_last if placement.channels_last else torch.contiguous_format,
    )
    cache = FeatureCache(
        resolved.index.model,
        plans,
        resolved.timeline,
        data,
        fill,
        max_length=hp.max_length,
        budget=feature_budget(settings),
        gpu_budget=gpu_budget(settings, placement.device),
        folder=run_dir / FEATURE_FOLDER,
        log=log,
        flips=data.modality == "image" and hp.augment == "flip",
        disk_reserve=settings.disk_reserve_bytes,
    )
    return CachedInputs(data, placement, _served(decoded, hp.augment), cache)


def _served(decoded: dict[str, DecodedImages], augment: str) -> dict[str, DecodedImages]:
    """The parts whose batches the decoded images serve in process once full: not training
    images cropped at random every epoch (augment "standard" keeps its loader workers)."""
    return {p: d for p, d in decoded.items() if p != "train" or augment != "standard"}


def _log_plans(plans: list[PhaseCache], log: Log) -> None:
    for plan in plans:
        if plan.engages:
            mib = plan.bytes / 2**20
            log(
                "info",
                f"feature cache: phase {plan.phase} trains past {plan.boundary} from its "
                f"cached output ({mib:.1f} MiB)",
            )
        else:
            log("info", f"feature cache: phase {plan.phase} runs every layer: {plan.reason}")


def attach_decoded_cache(
    data: Any, budget: int, folder: Path, disk_reserve: int = 0
) -> dict[str, DecodedImages]:
    """Give the image datasets of ``data`` (train, then validation) their decoded caches,
    sharing ``budget`` bytes of memory; other datasets are left as they are."""
    caches = {}
    for part in ("train", "val"):
        dataset = getattr(data, part)
        if not isinstance(dataset, ImageFolderDataset) or len(dataset) == 0:
            continue
        cache = DecodedImages(
            len(dataset),
            dataset.image_size,
            budget=budget,
            spill=folder / f"{part}.u8",
            disk_reserve=disk_reserve,
        )
        budget = max(0, budget - cache.nbytes)
        dataset.decoded = cache
        caches[part] = cache
    return caches


# Batches of sample indices -----------------------------------------------------------------


Key = int | tuple[int, bool]


def split_keys(keys: list[Key]) -> tuple[torch.Tensor, torch.Tensor]:
    """Sample indices and views (1: mirrored) of a batch's sampler keys."""
    indices = [k[0] if isinstance(k, tuple) else k for k in keys]
    views = [int(k[1]) if isinstance(k, tuple) else 0 for k in keys]
    return torch.tensor(indices, dtype=torch.long), torch.tensor(views, dtype=torch.long)


class _Range(Dataset[Key]):
    def __init__(self, n: int):
        self.n = n

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, key: Key) -> Key:
        return key


def in_process(like: DataLoader[Any], sampler: Any) -> DataLoader[Any]:
    """``like`` read in this process: the same batches in the same order, and the same
    random draw (from ``like``'s generator) when an epoch starts."""
    return DataLoader(
        like.dataset,
        batch_size=like.batch_size,
        sampler=sampler,
        shuffle=False if sampler is None else None,
        generator=like.generator,
        collate_fn=like.collate_fn,
        pin_memory=like.pin_memory,
    )


def index_loader(like: DataLoader[Any], sampler: Any) -> DataLoader[Any]:
    """Batches of ``(indices, views)`` in the order ``like`` yields its samples, read in
    this process.

    It shares ``like``'s generator, so starting an epoch draws the same random number
    (from that generator, or the global one) as starting ``like`` would.
    """
    return DataLoader(
        _Range(len(like.dataset)),  # type: ignore[arg-type]
        batch_size=like.batch_size,
        sampler=sampler,
        shuffle=False if sampler is None else None,
        generator=like.generator,
        collate_fn=split_keys,
    )
