"""Out of memory as a job error, and handing memory back after a job."""

from __future__ import annotations

import ctypes
import ctypes.util
import gc
from functools import lru_cache

import torch

from thaw.errors import ThawError

OOM_ERRORS: tuple[type[BaseException], ...] = (torch.OutOfMemoryError, MemoryError)


class OutOfMemory(ThawError):
    status = 507
    code = "out_of_memory"

    def __init__(self, where: str, device: str, batch_size: int):
        super().__init__(
            f"out of memory on {device} while {where} at hyperparameters.batch_size="
            f"{batch_size}: lower hyperparameters.batch_size (or image_size / max_length), "
            "or freeze more layers"
        )


def release_memory() -> None:
    """Collect garbage and hand cached memory back: the CUDA caching allocator's blocks
    and, on glibc, the heap's free pages, so an idle worker returns to its baseline."""
    gc.collect()
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        torch.cuda.synchronize()
        torch.cuda.empty_cache()
    trim = _malloc_trim()
    if trim is not None:
        trim(0)


@lru_cache(maxsize=1)
def _malloc_trim():
    name = ctypes.util.find_library("c")
    if name is None:
        return None
    try:
        return ctypes.CDLL(name).malloc_trim
    except (OSError, AttributeError):
        return None


def is_cpu_oom(exc: BaseException) -> bool:
    """torch's CPU allocator reports a failed allocation as a RuntimeError."""
    return isinstance(exc, RuntimeError) and "can't allocate memory" in str(exc)
