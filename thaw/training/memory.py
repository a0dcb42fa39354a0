"""Out of memory as a job error, and handing memory back after a job."""

from __future__ import annotations

import ctypes
import ctypes.util
import gc
import threading
from functools import lru_cache
from pathlib import Path
from types import TracebackType

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


class HostMemoryBudget(OutOfMemory):
    """The run's host memory grew past the job's budget; stopped before the kernel's OOM
    killer takes the worker (and whatever else runs on the host) down."""

    status = 507
    code = "out_of_memory"

    def __init__(self, grown: int, limit: int, batch_size: int):
        ThawError.__init__(
            self,
            f"out of memory: the run's host memory grew by {grown / 2**20:.1f} MiB, past the "
            f"job's budget of {limit} bytes (THAW_MAX_JOB_HOST_MEMORY_BYTES), at "
            f"hyperparameters.batch_size={batch_size}: lower hyperparameters.batch_size (or "
            "image_size / max_length), or freeze more layers",
        )


_STATUS = Path("/proc/self/status")


def resident_bytes() -> int | None:
    """Anonymous and shared-memory pages the process holds (what the OOM killer weighs;
    file-backed pages such as a spilled cache's are not counted), or None off Linux."""
    try:
        text = _STATUS.read_text()
    except OSError:
        return None
    total = 0
    for line in text.splitlines():
        if line.startswith(("RssAnon:", "RssShmem:")):
            total += int(line.split()[1]) * 1024
    return total


class MemoryWatch:
    """Samples the process's memory on a thread while a run lasts; ``check()`` (called by
    the run between steps) raises HostMemoryBudget once the growth since the start passed
    ``limit``. Off where /proc does not say."""

    def __init__(self, limit: int, batch_size: int, interval: float = 0.05):
        self.limit = limit
        self.batch_size = batch_size
        self.interval = interval
        self.baseline = resident_bytes()
        self.peak = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def sample(self) -> int:
        now = resident_bytes()
        if now is not None and self.baseline is not None:
            self.peak = max(self.peak, now - self.baseline)
        return self.peak

    def check(self) -> None:
        if self.sample() > self.limit:
            raise HostMemoryBudget(self.peak, self.limit, self.batch_size)

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self.sample()

    def __enter__(self) -> MemoryWatch:
        if self.baseline is not None:
            self._thread = threading.Thread(target=self._run, name="thaw-memory", daemon=True)
            self._thread.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()


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
