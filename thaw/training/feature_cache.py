"""The feature cache: a frozen prefix's output per sample, filled in the phase's first epoch
by the normal forward pass and reused in its later epochs.

Features live in memory up to THAW_FEATURE_CACHE_BYTES and in a memory-mapped file in the
run folder beyond that; the files go when the boundary moves and when the run ends.
"""

from __future__ import annotations

import math
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from thaw.data.decoded import available_memory
from thaw.disk_space import require_free
from thaw.freezing.budget import decoded_cache_memory_cap, feature_cache_memory_cap
from thaw.freezing.cache_plan import PhaseCache
from thaw.freezing.prefix import Split, call_model, run_prefix, run_rest
from thaw.freezing.timeline import Timeline
from thaw.settings import Settings

_NUMPY = {torch.float32: np.float32, torch.float16: np.float16, torch.bfloat16: np.uint16}


def cache_budget(settings: Settings) -> int:
    """The feature cache's memory: the plan's share, and no more than a quarter of what the
    host has free when the run starts."""
    if settings.feature_cache_bytes is not None:
        return settings.feature_cache_bytes
    return min(available_memory() // 4, feature_cache_memory_cap(settings))


def decoded_budget(settings: Settings) -> int:
    if settings.decoded_cache_bytes is not None:
        return settings.decoded_cache_bytes
    return min(available_memory() // 8, decoded_cache_memory_cap(settings))


class FeatureStore:
    """Features of ``n`` samples of one shape; ``lengths`` for text (valid tokens)."""

    def __init__(
        self,
        n: int,
        shape: tuple[int, ...],
        dtype: torch.dtype,
        budget: int,
        spill: Path,
        disk_reserve: int = 0,
    ):
        self.nbytes = n * math.prod(shape) * torch.empty((), dtype=dtype).element_size()
        self.file: Path | None = None
        if self.nbytes <= budget:
            self.data = torch.zeros((n, *shape), dtype=dtype)
        else:
            require_free(spill.parent, self.nbytes, disk_reserve, "the feature cache's spill file")
            spill.parent.mkdir(parents=True, exist_ok=True)
            self.file = spill
            raw = np.memmap(spill, dtype=_NUMPY[dtype], mode="w+", shape=(n, *shape))
            self.data = torch.from_numpy(raw).view(dtype)
        self.filled = torch.zeros(n, dtype=torch.bool)
        self.lengths = torch.zeros(n, dtype=torch.long)
        self.labels = torch.zeros(n, dtype=torch.long)

    @property
    def complete(self) -> bool:
        return bool(self.filled.all())

    @property
    def where(self) -> str:
        return "memory" if self.file is None else f"memory-mapped file {self.file.name}"

    def put(
        self,
        indices: torch.Tensor,
        feats: torch.Tensor,
        mask: torch.Tensor | None,
        labels: torch.Tensor,
    ) -> None:
        feats = feats.detach().to("cpu")
        self.labels[indices] = labels.to("cpu")
        if mask is None:
            self.data[indices] = feats.contiguous().to(self.data.dtype)
        else:
            lengths = mask.sum(dim=1).to("cpu")
            width = feats.shape[1]
            self.data[indices, :width] = feats.to(self.data.dtype)
            self.lengths[indices] = lengths
        self.filled[indices] = True

    def get(self, indices: torch.Tensor, text: bool) -> tuple[torch.Tensor, torch.Tensor | None]:
        if not text:
            return self.data[indices], None
        lengths = self.lengths[indices]
        width = int(lengths.max())
        mask = (torch.arange(width) < lengths[:, None]).long()
        return self.data[indices, :width], mask


@dataclass
class CachedBatch:
    """A batch for the cached path: raw inputs to fill from, or stored features."""

    indices: torch.Tensor
    labels: torch.Tensor | None = None
    inputs: Any = None
    features: torch.Tensor | None = None
    mask: torch.Tensor | None = None
    views: torch.Tensor | None = None  # 1 where the sample is seen mirrored

    def to(self, device: torch.device, memory_format: torch.memory_format) -> CachedBatch:
        def move(x: Any) -> Any:
            if x is None:
                return None
            if isinstance(x, dict):
                return {k: v.to(device, non_blocking=True) for k, v in x.items()}
            if x.dim() == 4:
                return x.to(device, non_blocking=True, memory_format=memory_format)
            return x.to(device, non_blocking=True)

        return CachedBatch(
            self.indices,
            self.labels,
            move(self.inputs),
            move(self.features),
            move(self.mask),
            self.views,
        )


class FeatureCache:
    """Per run: which epochs train from the cache, the stores, and the cached forward."""

    def __init__(
        self,
        model: nn.Module,
        plans: list[PhaseCache],
        timeline: Timeline,
        *,
        modality: str,
        sizes: tuple[int, int],
        max_length: int,
        budget: int,
        folder: Path,
        log: Any,
        flips: bool = False,
        disk_reserve: int = 0,
    ):
        self.model = model
        self.flips = flips
        self.plans = plans
        self.timeline = timeline
        self.text = modality == "text"
        self.sizes = sizes
        self.max_length = max_length
        self.budget = budget
        self.disk_reserve = disk_reserve
        self.folder = folder
        self.log = log
        self.split: Split | None = None
        self.boundary: str | None = None
        self.stores: dict[str, FeatureStore] = {}
        self.disabled: str | None = None
        self._verified = False
        self._fill_started: float | None = None
        self.fill_seconds = 0.0
        self.reused_epochs = 0

    @property
    def engages_anywhere(self) -> bool:
        return any(p.engages for p in self.plans)

    # Epoch bookkeeping -----------------------------------------------------------------------

    def begin_epoch(self, epoch: int) -> bool:
        """Whether this epoch trains from the cache (filling it or reading it)."""
        plan = self._plan_for(epoch)
        if self.disabled is not None or plan is None or plan.split is None:
            return False
        if self.split != plan.split:
            self._drop()
            self.split, self.boundary = plan.split, plan.boundary
            self._verified = False
        if self.reading("train"):
            self.reused_epochs += 1
            self.log("info", f"feature cache: epoch {epoch} reuses the features of {self.boundary}")
        else:
            self._fill_started = time.monotonic()
        return True

    def end_fill(self, part: str) -> None:
        if self._fill_started is None or not self.reading(part):
            return
        if part == "val":
            seconds = time.monotonic() - self._fill_started
            self.fill_seconds += seconds
            self._fill_started = None
            total = sum(s.nbytes for s in self.stores.values())
            where = ", ".join(sorted({s.where for s in self.stores.values()}))
            self.log(
                "info",
                f"feature cache: filled the output of {self.boundary} for "
                f"{self.sizes[0] + self.sizes[1]} samples ({total / 2**20:.1f} MiB in {where}) "
                f"in {seconds:.2f} s",
            )

    def reading(self, part: str) -> bool:
        keys = self._keys(part)
        stores = [self.stores.get(k) for k in keys]
        return self.disabled is None and all(s is not None and s.complete for s in stores)

    def _keys(self, part: str) -> tuple[str, ...]:
        """Stores of a part: with flips, training samples keep both views."""
        return (part, f"{part}-flipped") if self.flips and part == "train" else (part,)

    def close(self) -> None:
        self._drop()
        shutil.rmtree(self.folder, ignore_errors=True)

    def _plan_for(self, epoch: int) -> PhaseCache | None:
        spe = self.timeline.steps_per_epoch
        first = self.timeline.phase_at_step((epoch - 1) * spe).index
        last = self.timeline.phase_at_step(epoch * spe - 1).index
        return self.plans[first] if first == last else None

    def _drop(self) -> None:
        for store in self.stores.values():
            if store.file is not None:
                store.file.unlink(missing_ok=True)
        self.stores = {}
        self.split = None

    # The cached forward ----------------------------------------------------------------------

    def forward(self, batch: CachedBatch, part: str) -> torch.Tensor:
        assert self.split is not None
        if batch.features is not None:
            return run_rest(self.model, self.split, batch.features, self._stand_in(batch))
        inputs = batch.inputs
        if self.disabled is not None:
            return call_model(self.model, inputs)
        if not self._verified:
            self._verify(inputs)
            if self.disabled is not None:
                return call_model(self.model, inputs)
        feats = run_prefix(self.model, self.split, inputs)
        mask = inputs["attention_mask"] if self.text else None
        assert batch.labels is not None
        if len(self._keys(part)) == 2:
            self._put_views(part, batch, feats, run_prefix(self.model, self.split, inputs.flip(-1)))
        else:
            self._store(part, part, feats).put(batch.indices, feats, mask, batch.labels)
        stand_in = self._stand_in(CachedBatch(batch.indices, features=feats, mask=mask))
        return run_rest(self.model, self.split, feats, stand_in)

    def _put_views(
        self, part: str, batch: CachedBatch, seen: torch.Tensor, other: torch.Tensor
    ) -> None:
        """Keep the view the batch holds and the mirrored one (the prefix of the flipped
        input, as flipping commutes with the per-channel normalization)."""
        assert batch.views is not None and batch.labels is not None
        mirrored = batch.views.to(seen.device).bool()
        shape = (-1,) + (1,) * (seen.dim() - 1)
        plain = torch.where(mirrored.view(shape), other, seen)
        flipped = torch.where(mirrored.view(shape), seen, other)
        for key, feats in zip(self._keys(part), (plain, flipped), strict=True):
            self._store(key, part, feats).put(batch.indices, feats, None, batch.labels)

    def gather(
        self, part: str, indices: torch.Tensor, views: torch.Tensor
    ) -> tuple[CachedBatch, torch.Tensor]:
        keys = self._keys(part)
        store = self.stores[keys[0]]
        feats, mask = store.get(indices, self.text)
        if len(keys) == 2:
            mirrored, _ = self.stores[keys[1]].get(indices, self.text)
            shape = (-1,) + (1,) * (feats.dim() - 1)
            feats = torch.where(views.bool().view(shape), mirrored, feats)
        labels = store.labels[indices]
        return CachedBatch(indices, labels, features=feats, mask=mask), labels

    def _stand_in(self, batch: CachedBatch) -> Any:
        assert batch.features is not None
        if not self.text:
            return batch.features
        assert batch.mask is not None
        ids = torch.zeros(batch.mask.shape, dtype=torch.long, device=batch.mask.device)
        return {"input_ids": ids, "attention_mask": batch.mask}

    def _store(self, key: str, part: str, feats: torch.Tensor) -> FeatureStore:
        if key not in self.stores:
            shape = tuple(feats.shape[1:])
            n = self.sizes[0] if part == "train" else self.sizes[1]
            if self.text:
                shape = (self.max_length, *shape[1:])
            used = sum(s.nbytes for s in self.stores.values())
            self.stores[key] = FeatureStore(
                n,
                shape,
                feats.dtype,
                max(0, self.budget - used),
                self.folder / f"{key}-{self.boundary}.bin",
                self.disk_reserve,
            )
        return self.stores[key]

    def _verify(self, inputs: Any) -> None:
        """One real batch through the full model and through the split must agree."""
        assert self.split is not None
        probe = {k: v[:2] for k, v in inputs.items()} if isinstance(inputs, dict) else inputs[:2]
        was_training = self.model.training
        self.model.eval()
        try:
            with torch.no_grad():
                full = call_model(self.model, probe)
                feats = run_prefix(self.model, self.split, probe)
                mask = probe["attention_mask"] if self.text else None
                stand_in = self._stand_in(CachedBatch(torch.empty(0), features=feats, mask=mask))
                split = run_rest(self.model, self.split, feats, stand_in)
        except Exception as exc:  # a forward that reaches into the prefix's modules
            self.disabled = (
                f"the model's forward does not run from the cached output of {self.boundary} "
                f"({type(exc).__name__}: {exc}), so the cache is off for this run"
            )
            self.log("warning", f"feature cache: {self.disabled}")
            self._verified = True
            return
        finally:
            self.model.train(was_training)
        if not torch.allclose(full.float(), split.float(), rtol=1e-4, atol=1e-5):
            self.disabled = (
                f"the model's output from the cached output of {self.boundary} differs from "
                "its full forward pass, so the cache is off for this run"
            )
            self.log("warning", f"feature cache: {self.disabled}")
        self._verified = True
