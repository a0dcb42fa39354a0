"""The feature cache of a run: before the first step of a phase whose frozen prefix is
cacheable, one inference pass stores the prefix's output for every sample; every epoch of
the phase, the first included, then trains the rest of the model from the stored output.

Features live on the GPU or in host memory up to their budgets and in a memory-mapped file
in the run folder beyond that; the files go when the boundary moves and when the run ends.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from thaw.caching.features import CachedBatch, FeatureStore
from thaw.caching.planning import PhaseCache
from thaw.caching.prefix import Split, run_capturing, run_prefix, run_rest
from thaw.freezing.timeline import Timeline

Progress = Callable[[int, int], bool]
"""Called with samples done and in all during a fill; False stops the fill (the run is stopping)."""


@dataclass(frozen=True)
class FillOptions:
    """Where and how the fill runs: its device, batch size and autocast."""

    device: torch.device
    batch_size: int
    autocast: Callable[[], AbstractContextManager[object]]
    memory_format: torch.memory_format = torch.contiguous_format


class FeatureCache:
    """Per run: which epochs train from the cache, the stores, the fill and the forward."""

    def __init__(
        self,
        model: nn.Module,
        plans: list[PhaseCache],
        timeline: Timeline,
        data: Any,
        fill: FillOptions,
        *,
        max_length: int,
        budget: int,
        gpu_budget: int,
        folder: Path,
        log: Callable[[str, str], None],
        flips: bool = False,
        disk_reserve: int = 0,
    ):
        self.model = model
        self.plans = plans
        self.timeline = timeline
        self.data = data
        self.fill = fill
        self.text = data.modality == "text"
        self.flips = flips
        self.max_length = max_length
        self.budget = budget
        self.gpu_budget = gpu_budget
        self.disk_reserve = disk_reserve
        self.folder = folder
        self.log = log
        self.split: Split | None = None
        self.boundary: str | None = None
        self.stores: dict[str, FeatureStore] = {}
        self.ready = False
        self.disabled: str | None = None

    @property
    def every_epoch(self) -> bool:
        """Whether every epoch's plan trains from the cache (so no epoch reads raw inputs
        unless the cache turns itself off)."""
        epochs = range(1, self.timeline.epochs + 1)
        return all((p := self._plan_for(e)) is not None and p.engages for e in epochs)

    def begin_epoch(self, epoch: int, progress: Progress) -> bool:
        """Whether this epoch trains from the cache; fills it first when the phase's prefix
        has not been run yet."""
        plan = self._plan_for(epoch)
        if self.disabled is not None or plan is None or plan.split is None:
            return False
        if self.split != plan.split:
            self._drop()
            self.split, self.boundary = plan.split, plan.boundary
        if self.ready:
            self.log("info", f"feature cache: epoch {epoch} reuses the features of {self.boundary}")
            return True
        self._fill(progress)
        return self.ready and self.disabled is None

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
        self.ready = False

    # The fill ------------------------------------------------------------------------------

    def _fill(self, progress: Progress) -> None:
        """Run the prefix once over every sample (both views of a training sample with
        flips), in eval mode, without autograd, at the fill batch size. The global random
        state is left as it was, so the run draws the same numbers as an uncached one."""
        parts = [(p, getattr(self.data, p)) for p in ("train", "val")]
        total, done, step = sum(len(d) for _, d in parts), 0, self.fill.batch_size
        started = time.monotonic()
        was_training = self.model.training
        self.model.eval()
        try:
            with torch.random.fork_rng(devices=self._rng_devices()), torch.inference_mode():
                for part, dataset in parts:
                    for start in range(0, len(dataset), step):
                        indices = torch.arange(start, min(start + step, len(dataset)))
                        if not self._fill_batch(part, dataset, indices):
                            return
                        done += len(indices)
                        if not progress(done, total):
                            self._drop()
                            return
        finally:
            self.model.train(was_training)
        self.ready = True
        seconds = time.monotonic() - started
        size = sum(s.nbytes for s in self.stores.values())
        where = ", ".join(sorted({s.where for s in self.stores.values()}))
        self.log(
            "info",
            f"feature cache: filled the output of {self.boundary} for {total} samples "
            f"({size / 2**20:.1f} MiB in {where}) in {seconds:.2f} s",
        )

    def _fill_batch(self, part: str, dataset: Any, indices: torch.Tensor) -> bool:
        """Store one batch's features; False when the split turns out not to hold. The
        first batch's first samples are the split's check, and their prefix output is kept."""
        assert self.split is not None
        mirrored = self.flips and part == "train"
        items = [dataset[(i, False) if mirrored else i] for i in indices.tolist()]
        inputs, labels = (self.data.collate_fn or torch.utils.data.default_collate)(items)
        inputs = self._to_device(inputs)
        mask = inputs["attention_mask"] if self.text else None

        def keep(start: int, feats: torch.Tensor) -> int:
            stop = start + len(feats)
            rows = slice(start, stop)
            self._store(part, part, feats).put(
                indices[rows], feats, _rows(mask, start, stop), labels[rows]
            )
            return stop

        done = 0
        if not self.stores:
            checked = self._verify(_rows(inputs, 0, _PROBE))
            if checked is None:
                return False
            done = keep(0, checked)
        with self.fill.autocast():
            if done < len(indices):
                keep(done, run_prefix(self.model, self.split, _rows(inputs, done, len(indices))))
            flipped = run_prefix(self.model, self.split, inputs.flip(-1)) if mirrored else None
        if flipped is not None:
            self._store(f"{part}-flipped", part, flipped).put(indices, flipped, None, labels)
        return True

    def _to_device(self, inputs: Any) -> Any:
        device = self.fill.device
        if isinstance(inputs, dict):
            return {k: v.to(device, non_blocking=True) for k, v in inputs.items()}
        return inputs.to(device, non_blocking=True, memory_format=self.fill.memory_format)

    def _rng_devices(self) -> list[int]:
        device = self.fill.device
        return [device.index or 0] if device.type == "cuda" else []

    def _store(self, key: str, part: str, feats: torch.Tensor) -> FeatureStore:
        if key not in self.stores:
            shape = tuple(feats.shape[1:])
            n = len(getattr(self.data, part))
            if self.text:
                shape = (self.max_length, *shape[1:])
            host = sum(s.nbytes for s in self.stores.values() if s.device.type == "cpu")
            gpu = sum(s.nbytes for s in self.stores.values() if s.device.type == "cuda")
            with torch.inference_mode(False):  # the stores outlive the fill
                self.stores[key] = FeatureStore(
                    n,
                    shape,
                    feats.dtype,
                    max(0, self.budget - host),
                    self.folder / f"{key}-{self.boundary}.bin",
                    self.disk_reserve,
                    device=self.fill.device,
                    gpu_budget=max(0, self.gpu_budget - gpu),
                )
        return self.stores[key]

    def _verify(self, probe: Any) -> torch.Tensor | None:
        """A few real samples through the full model and through the split must agree; the
        prefix's output for them when they do, None (and the cache off) when not."""
        assert self.split is not None
        try:
            with self.fill.autocast():
                full, boundary = run_capturing(self.model, self.split, probe)
                split = self._rest(boundary.clone(), probe)  # the rest may work in place
        except Exception as exc:  # a forward that reaches into the prefix's modules
            self._disable(
                f"the model's forward does not run from the cached output of {self.boundary} "
                f"({type(exc).__name__}: {exc}), so the cache is off for this run"
            )
            return None
        if not torch.allclose(full.float(), split.float(), rtol=1e-4, atol=1e-5):
            self._disable(
                f"the model's output from the cached output of {self.boundary} differs from "
                "its full forward pass, so the cache is off for this run"
            )
            return None
        return boundary

    def _disable(self, reason: str) -> None:
        self.disabled = reason
        self.log("warning", f"feature cache: {reason}")
        self._drop()

    def _rest(self, feats: torch.Tensor, inputs: Any) -> torch.Tensor:
        mask = inputs["attention_mask"] if self.text else None
        return self.forward(CachedBatch(torch.empty(0), feats, mask))

    # Training from the cache ---------------------------------------------------------------

    def gather(self, part: str, indices: torch.Tensor, views: torch.Tensor) -> CachedBatch:
        """The stored features of ``indices``; with flips, the view each sample is seen in."""
        store = self.stores[part]
        feats, mask = store.get(indices, self.text)
        flipped = self.stores.get(f"{part}-flipped")
        if flipped is not None:
            mirrored, _ = flipped.get(indices, self.text)
            shape = (-1,) + (1,) * (feats.dim() - 1)
            feats = torch.where(views.to(feats.device).bool().view(shape), mirrored, feats)
        return CachedBatch(indices, feats, mask)

    def labels(self, part: str, indices: torch.Tensor) -> torch.Tensor:
        return self.stores[part].labels[indices]

    def forward(self, batch: CachedBatch) -> torch.Tensor:
        """The model's forward from the stored features on."""
        assert self.split is not None
        return run_rest(self.model, self.split, batch.features, self._stand_in(batch))

    def _stand_in(self, batch: CachedBatch) -> Any:
        if not self.text:
            return batch.features
        assert batch.mask is not None
        ids = torch.zeros(batch.mask.shape, dtype=torch.long, device=batch.mask.device)
        return {"input_ids": ids, "attention_mask": batch.mask}


_PROBE = 2
"""Samples of the first fill batch the split's check runs through the full model."""


def _rows(inputs: Any, start: int, stop: int) -> Any:
    """Samples ``start:stop`` of a batch (a tensor, or a dict of them for text); None stays."""
    if isinstance(inputs, dict):
        return {k: v[start:stop] for k, v in inputs.items()}
    return None if inputs is None else inputs[start:stop]
