"""A job's resource budget, read off its plan: memory, cache and checkpoint bytes, each
checked against its setting before the job is accepted."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from thaw.caching.memory import decoded_cache_memory_cap, feature_cache_memory_cap
from thaw.caching.planning import PhaseCache, plan_cache, traced
from thaw.data.shape import DataShape
from thaw.errors import SpecError
from thaw.freezing.resolve import Resolved
from thaw.settings import Settings

RUNTIME_BYTES = 768 * 1024**2
"""A worker process's own footprint: Python, torch and the libraries, before any job."""

ACTIVATION_FACTOR = 4
"""Tensors kept for the backward pass per traced group output (convolutions, norms and
activations inside a block each keep their own)."""

_PER_EXAMPLE_BYTES = 256
"""Bookkeeping of one example: its label, path or row, index entries."""

_CHECKPOINT_EXTRA = 64 * 1024  # config.json, meta.json, random states
_UNTRACED_FACTOR = 64
_TRACE_TOKENS = 8  # the traced text input's length (prefix.example_inputs)
_OPTIMIZER_SLOTS = {"adamw": 2, "sgd": 1}


@dataclass(frozen=True)
class CacheBytes:
    """One input cache of the job: held in memory up to its share, the rest in a file."""

    total: int
    memory: int

    @property
    def disk(self) -> int:
        return self.total - self.memory

    def to_dict(self) -> dict[str, int]:
        return {"bytes": self.total, "memory_bytes": self.memory, "disk_bytes": self.disk}


@dataclass(frozen=True)
class Budget:
    """What a job is expected to take; ``host_memory`` counts the training state too (a CPU
    worker holds it; on a GPU worker it sits on the device and the host figure is an upper
    bound). ``host_memory_limit`` is what the worker holds the run's growth to."""

    host_memory: int
    host_memory_limit: int
    gpu_memory: int
    feature_cache: CacheBytes
    decoded_cache: CacheBytes
    checkpoint_per_save: int
    checkpoint_saves_kept: int
    checkpoint_writes: int

    @property
    def checkpoint_total(self) -> int:
        return self.checkpoint_per_save * self.checkpoint_saves_kept

    @property
    def disk(self) -> int:
        return self.feature_cache.disk + self.decoded_cache.disk + self.checkpoint_total

    def to_dict(self) -> dict[str, Any]:
        return {
            "host_memory_bytes": self.host_memory,
            "host_memory_limit": self.host_memory_limit,
            "gpu_memory_bytes": self.gpu_memory,
            "feature_cache": self.feature_cache.to_dict(),
            "decoded_cache": self.decoded_cache.to_dict(),
            "checkpoints": {
                "bytes_per_save": self.checkpoint_per_save,
                "saves_kept": self.checkpoint_saves_kept,
                "bytes": self.checkpoint_total,
                "saves_written": self.checkpoint_writes,
            },
            "disk_bytes": self.disk,
        }


def job_budget(resolved: Resolved, shape: DataShape, settings: Settings) -> Budget:
    spec, index = resolved.spec, resolved.index
    hp = spec.hyperparameters
    modality = resolved.built.modality
    element = 2 if hp.precision in ("bf16", "fp16") else 4
    examples = shape.num_train + shape.num_val

    params = sum(p.numel() for p in index.params.values())
    buffers = sum(b.numel() for b in index.model.buffers())
    model_bytes = (params + buffers) * 4
    if spec.freeze.method == "zero_lr":
        trainable = params
    else:
        trainable = max(
            (
                sum(index.params[n].numel() for n in p.trainable_names)
                for p in resolved.timeline.phases
            ),
            default=0,
        )
    optimizer_bytes = trainable * 4 * _OPTIMIZER_SLOTS.get(hp.optimizer, 2)
    activations = hp.batch_size * _activation_bytes(resolved, element)
    device = model_bytes + trainable * 4 + optimizer_bytes + activations

    plans = plan_cache(spec, index, resolved.timeline, modality, max(examples, 1))
    feature_total = _feature_cache_bytes(plans, shape)
    feature = CacheBytes(feature_total, min(feature_total, feature_cache_memory_cap(settings)))
    decoded_total = 0
    if modality == "image" and spec.dataset.synthetic is None:
        decoded_total = examples * 3 * hp.image_size**2
    decoded = CacheBytes(decoded_total, min(decoded_total, decoded_cache_memory_cap(settings)))

    host = (
        RUNTIME_BYTES
        + model_bytes  # the base weights the run compares against
        + device
        + _dataset_bytes(modality, examples, hp.max_length)
        + feature.memory
        + decoded.memory
    )
    per_save = model_bytes + optimizer_bytes + _CHECKPOINT_EXTRA
    ck = spec.checkpointing
    epochs = resolved.timeline.epochs
    kept = min(ck.keep_last, math.ceil(epochs / ck.every_epochs)) + 1  # + the best
    steps = epochs * resolved.timeline.steps_per_epoch
    writes = math.ceil(epochs / ck.every_epochs)
    if ck.every_steps:
        kept += 1  # the newest resume point
        writes += steps // ck.every_steps
    return Budget(
        host_memory=host,
        host_memory_limit=settings.max_job_host_memory_bytes,
        gpu_memory=device,
        feature_cache=feature,
        decoded_cache=decoded,
        checkpoint_per_save=per_save,
        checkpoint_saves_kept=kept,
        checkpoint_writes=writes,
    )


def _activation_bytes(resolved: Resolved, element: int) -> int:
    """Per sample: the outputs of the traced group calls, times what a block keeps inside."""
    spec = resolved.spec
    modality = resolved.built.modality
    if modality == "text":
        inputs = spec.hyperparameters.max_length * 8 * 2
    else:
        inputs = 3 * spec.hyperparameters.image_size**2 * 4
    try:
        chain = traced(spec, resolved.index, modality, "meta")
    except Exception:  # a forward the tracer cannot follow: the input's size, scaled
        return inputs * _UNTRACED_FACTOR
    elements = sum(math.prod(c.output_shape[1:]) for c in chain.calls if c.output_shape)
    if modality == "text":
        elements = elements * spec.hyperparameters.max_length // _TRACE_TOKENS
    return elements * element * ACTIVATION_FACTOR + inputs


def _feature_cache_bytes(plans: list[PhaseCache], shape: DataShape) -> int:
    """The largest phase's cache: a boundary move drops the old features first. With two
    views only the training examples keep the mirrored one."""
    largest = 0
    for plan in plans:
        if not plan.engages:
            continue
        views = shape.num_train * plan.views + shape.num_val
        largest = max(largest, plan.bytes_per_sample * views)
    return largest


def _dataset_bytes(modality: str, examples: int, max_length: int) -> int:
    per_example = _PER_EXAMPLE_BYTES
    if modality == "text":
        per_example += max_length * 8 * 2  # token ids and attention mask, int64
    return examples * per_example


def check_budget(budget: Budget, resolved: Resolved, settings: Settings) -> None:
    """Raise SpecError naming the field to lower for the first figure past its setting."""
    hp = resolved.spec.hyperparameters
    size_field = (
        "hyperparameters",
        "max_length" if resolved.built.modality == "text" else "image_size",
    )
    size_name = ".".join(size_field)
    checks = [
        (
            budget.host_memory,
            settings.max_job_host_memory_bytes,
            "THAW_MAX_JOB_HOST_MEMORY_BYTES",
            "host memory",
            ("hyperparameters", "batch_size"),
            f"lower hyperparameters.batch_size (now {hp.batch_size}) or {size_name}, "
            "or freeze more layers",
        ),
        (
            budget.gpu_memory,
            settings.max_job_gpu_memory_bytes,
            "THAW_MAX_JOB_GPU_MEMORY_BYTES",
            "GPU memory",
            ("hyperparameters", "batch_size"),
            f"lower hyperparameters.batch_size (now {hp.batch_size}) or {size_name}, "
            "or freeze more layers",
        ),
        (
            budget.feature_cache.total,
            settings.max_job_feature_cache_bytes,
            "THAW_MAX_JOB_FEATURE_CACHE_BYTES",
            "the feature cache",
            size_field,
            f"lower {size_name}, use fewer examples, or set hyperparameters.feature_cache to 'off'",
        ),
        (
            budget.decoded_cache.total,
            settings.max_job_decoded_cache_bytes,
            "THAW_MAX_JOB_DECODED_CACHE_BYTES",
            "the decoded-image cache",
            size_field,
            f"lower {size_name} or use fewer examples",
        ),
        (
            budget.checkpoint_total,
            settings.max_job_checkpoint_bytes,
            "THAW_MAX_JOB_CHECKPOINT_BYTES",
            "kept checkpoints",
            ("checkpointing", "keep_last"),
            "lower checkpointing.keep_last or raise checkpointing.every_epochs",
        ),
    ]
    for used, limit, setting, what, loc, hint in checks:
        if used > limit:
            raise SpecError(
                loc,
                f"{what} would take {_size(used)} ({used} bytes); at most {_size(limit)} "
                f"({setting}={limit})",
                hint,
            )
    if budget.disk > settings.max_job_disk_bytes:
        parts = {
            size_field: budget.feature_cache.disk + budget.decoded_cache.disk,
            ("checkpointing", "keep_last"): budget.checkpoint_total,
        }
        loc = max(parts, key=lambda k: parts[k])
        raise SpecError(
            loc,
            f"the job would write {_size(budget.disk)} ({budget.disk} bytes) to its worker's "
            f"disk (spilled caches {_size(budget.disk - budget.checkpoint_total)}, checkpoints "
            f"{_size(budget.checkpoint_total)}); at most {_size(settings.max_job_disk_bytes)} "
            f"(THAW_MAX_JOB_DISK_BYTES={settings.max_job_disk_bytes})",
            f"lower {'.'.join(loc)}",
        )


def check_checkpointing(resolved: Resolved, settings: Settings) -> None:
    """Step checkpoints no closer than THAW_MIN_CHECKPOINT_EVERY_STEPS, and at most
    THAW_MAX_KEEP_LAST epoch checkpoints kept."""
    ck = resolved.spec.checkpointing
    if ck.keep_last > settings.max_keep_last:
        raise SpecError(
            ("checkpointing", "keep_last"),
            f"keeps {ck.keep_last} checkpoints; at most {settings.max_keep_last} "
            "(THAW_MAX_KEEP_LAST)",
            f"use a keep_last of at most {settings.max_keep_last}",
        )
    least = settings.min_checkpoint_every_steps
    if ck.every_steps is not None and ck.every_steps < least:
        raise SpecError(
            ("checkpointing", "every_steps"),
            f"a resume point every {ck.every_steps} steps is too often; at least every "
            f"{least} steps (THAW_MIN_CHECKPOINT_EVERY_STEPS)",
            f"use every_steps of {least} or more, or leave it out",
        )


def _size(n: int) -> str:
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if value < 1024 or unit == "TiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{n} B"
