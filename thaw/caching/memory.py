"""How much memory the input caches and the cache fill may take, by setting or by machine."""

from __future__ import annotations

import os

import torch

from thaw.settings import Settings

FILL_BATCH_MAX = 1024
_FILL_MEMORY_SHARE = 16  # on a GPU the fill's activations take at most 1/16 of its memory
_FILL_TEMPORARIES = 3  # a layer's input, its output and one temporary per sample
_CPU_FILL_ACTIVATION = 8 * 2**20
"""On a CPU a fill batch's largest activation is kept to 8 MiB, so a layer's input and
output together stay within a last-level cache (32 MiB here). Measured on resnet18 at
64 px after a training run in the same process: batches of 32 fill in 1.29 s, of 64 in
1.38 s (and fault in four times the pages), of 128 in 1.43 s, of 16 in 1.34 s."""


def available_memory() -> int:
    """Bytes of physical memory free now (4 GiB where the system does not say)."""
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError):
        return 4 * 1024**3


def total_memory(device: torch.device) -> int:
    """Bytes of memory of ``device``: the GPU's, or the host's physical memory."""
    if device.type == "cuda":
        return int(torch.cuda.get_device_properties(device).total_memory)
    try:
        return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError):
        return 16 * 1024**3


def feature_cache_memory_cap(settings: Settings) -> int:
    """The most of a job's feature cache kept in memory (the worker never keeps more)."""
    if settings.feature_cache_bytes is not None:
        return settings.feature_cache_bytes
    return settings.max_job_host_memory_bytes // 4


def decoded_cache_memory_cap(settings: Settings) -> int:
    if settings.decoded_cache_bytes is not None:
        return settings.decoded_cache_bytes
    return settings.max_job_host_memory_bytes // 8


def feature_budget(settings: Settings) -> int:
    """The feature cache's host memory: the plan's share, and no more than a quarter of what
    the host has free when the run starts."""
    if settings.feature_cache_bytes is not None:
        return settings.feature_cache_bytes
    return min(available_memory() // 4, feature_cache_memory_cap(settings))


def decoded_budget(settings: Settings) -> int:
    if settings.decoded_cache_bytes is not None:
        return settings.decoded_cache_bytes
    return min(available_memory() // 8, decoded_cache_memory_cap(settings))


def gpu_budget(settings: Settings, device: torch.device) -> int:
    """The feature cache's share of GPU memory (0 on the CPU: features stay on the host)."""
    if device.type != "cuda":
        return 0
    if settings.feature_cache_gpu_bytes is not None:
        return settings.feature_cache_gpu_bytes
    return total_memory(device) // 4


def fill_batch_size(
    settings: Settings, device: torch.device, activation_bytes: int, batch_size: int
) -> int:
    """Samples per batch of the cache fill: THAW_CACHE_FILL_BATCH_SIZE, or as many as the
    prefix's largest activation lets fit in a sixteenth of the GPU's memory, or on a CPU in
    8 MiB (never fewer than the training batch). It depends on the machine, not on what
    is free, so a resumed run fills with the same batches as an unbroken one."""
    if settings.cache_fill_batch_size is not None:
        return settings.cache_fill_batch_size
    if device.type == "cuda":
        room = total_memory(device) // _FILL_MEMORY_SHARE
        fits = room // max(activation_bytes * _FILL_TEMPORARIES, 1)
    else:
        fits = _CPU_FILL_ACTIVATION // max(activation_bytes, 1)
    return max(batch_size, min(FILL_BATCH_MAX, fits))
