"""Per phase: does the feature cache engage, at which group boundary, at what cost, or why not."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch

from thaw.caching.prefix import (
    Chain,
    Split,
    example_inputs,
    find_split,
    frozen_groups,
    stochastic_module,
    trace,
)
from thaw.freezing.model_index import ModelIndex
from thaw.freezing.timeline import Timeline
from thaw.freezing.trainable import module_modes
from thaw.spec import JobSpec


@dataclass(frozen=True)
class PhaseCache:
    phase: int
    split: Split | None
    boundary: str | None
    bytes_per_sample: int
    num_samples: int
    reason: str | None
    views: int = 1
    activation_bytes: int = 0  # the prefix's largest output per sample: sizes the fill batch

    @property
    def engages(self) -> bool:
        return self.split is not None

    @property
    def bytes(self) -> int:
        """At most: with two views (augment "flip"), validation samples keep one only."""
        return self.bytes_per_sample * self.num_samples * self.views

    def to_dict(self) -> dict[str, Any]:
        return {
            "phase": self.phase,
            "engages": self.engages,
            "boundary": self.boundary,
            "prefix_groups": self.split.groups if self.split else 0,
            "bytes": self.bytes,
            "bytes_per_sample": self.bytes_per_sample,
            "views": self.views,
            "reason": self.reason,
        }


def plan_cache(
    spec: JobSpec,
    index: ModelIndex,
    timeline: Timeline,
    modality: str,
    num_samples: int,
    *,
    device: torch.device | str = "meta",
    element_size: int | None = None,
) -> list[PhaseCache]:
    """One entry per phase; ``num_samples`` counts the examples whose features are kept."""
    hp = spec.hyperparameters
    size = element_size or (2 if hp.precision in ("bf16", "fp16") else 4)
    chain: Chain | None = None
    out: list[PhaseCache] = []
    for phase in timeline.phases:

        def off(reason: str, boundary: str | None = None, phase=phase) -> PhaseCache:
            return PhaseCache(phase.index, None, boundary, 0, num_samples, reason)

        if hp.feature_cache == "off":
            out.append(off("hyperparameters.feature_cache is 'off'"))
            continue
        if modality == "image" and hp.augment == "standard":
            out.append(off("augment 'standard' crops at random every epoch"))
            continue
        k = frozen_groups(index, phase.trainable, spec.freeze.batchnorm)
        if k == 0:
            first = index.groups[0].name
            out.append(off(f"the first layer group ({first}) trains or has BatchNorm training"))
            continue
        if chain is None:
            chain = traced(spec, index, modality, device)
        found: Split | str = "no split"
        first_reason: str | None = None
        while k > 0:
            found = find_split(index, chain, k)
            if isinstance(found, Split):
                break
            first_reason = first_reason or found
            k -= 1
        if not isinstance(found, Split):
            out.append(off(first_reason or "no split could be derived"))
            continue
        boundary = index.groups[found.groups - 1].name
        modes = module_modes(index, phase.trainable, spec.freeze.batchnorm, spec.freeze.dropout)
        random = stochastic_module(index, found.modules, modes)
        if random is not None:
            out.append(
                off(
                    f"{random} draws random numbers in training, so the frozen prefix "
                    "is not deterministic and its output cannot be reused"
                    + (
                        "; freeze.dropout 'follow' runs it in eval mode"
                        if spec.freeze.dropout == "active"
                        else ""
                    ),
                    boundary,
                )
            )
            continue
        per_sample = _sample_elements(chain, found, modality, hp.max_length) * size
        views = 2 if modality == "image" and hp.augment == "flip" else 1
        peak = _peak_elements(chain, found, modality, hp.max_length) * size
        out.append(
            PhaseCache(phase.index, found, boundary, per_sample, num_samples, None, views, peak)
        )
    return out


_TRACES: dict[tuple[Any, ...], Chain] = {}


def traced(spec: JobSpec, index: ModelIndex, modality: str, device: Any) -> Chain:
    """Traces depend on the architecture and input size only; plans reuse them."""
    ref = spec.base_model
    key = (
        ref.source,
        ref.name,
        type(index.model).__name__,
        modality,
        spec.hyperparameters.image_size,
        tuple(g.modules for g in index.groups),
        tuple(index.adapters),
    )
    if ref.source == "job" or key not in _TRACES:
        chain = trace(index, example_inputs(modality, spec.hyperparameters.image_size, device))
        if ref.source == "job":
            return chain
        if len(_TRACES) >= 64:
            _TRACES.clear()
        _TRACES[key] = chain
    return _TRACES[key]


def _sample_elements(chain: Chain, split: Split, modality: str, max_length: int) -> int:
    """Elements per sample of the prefix output, read off the traced one-sample call."""
    last = next(c for c in reversed(chain.calls) if c.name == split.modules[-1])
    assert last.output_shape is not None
    return _per_sample(last.output_shape, modality, max_length)


def _peak_elements(chain: Chain, split: Split, modality: str, max_length: int) -> int:
    """Elements per sample of the largest output a module of the prefix makes."""
    shapes = [c.output_shape for c in chain.calls if c.name in split.modules and c.output_shape]
    return max((_per_sample(s, modality, max_length) for s in shapes), default=0)


def _per_sample(shape: tuple[int, ...], modality: str, max_length: int) -> int:
    sample = list(shape[1:])
    if modality == "text" and sample:
        sample[0] = max_length
    return math.prod(sample)
